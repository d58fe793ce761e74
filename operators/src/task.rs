//! The task operator: everything one source partition contributes, between two flushes.
//!
//! A task takes the partition's messages in offset order and decides, deterministically from
//! its checkpointed state, what each one is: a new valid event (counted into its windows and
//! archived), a resend of an event already counted, a late event (archived for the correction
//! of its day, ADR 0016), or a rejected message (dead-lettered with its reason). [`Task::flush`] hands over everything the sinks must make
//! durable in one block, with the checkpoint that goes in the same atomic insert; a restarted
//! task is rebuilt from what those flushes stored by [`Task::resume`]
//! (`docs/adr/0004-exact-metrics-without-two-phase-commit.md`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use salestalk_contracts::{
    Event, EventType, Json, OVERFLOW_VALUE, Violation, ViolationKind, check, other_tenant, parse,
    reason_for, validate,
};

use crate::aggregate::{Aggregates, Durable, Family, ReadMessage};
use crate::dead_letter::DeadLetterReason;
use crate::dedup::{FirstContent, SeenIds, content_fingerprint};
use crate::flush::{
    Address, ArchivedEvent, Checkpoint, DeadLetter, Flush, Readable, Rejection, Seal, StateRow,
    TaskState, consumers,
};
use crate::message::{PublishPath, RawMessage};
use crate::new_values::{NewValueBudget, SOURCE_FIELD};
use crate::routing::RoutingTable;
use crate::time::epoch::{generation_start, next_generation};
use crate::versions::VersionEnds;
use crate::windows::{Span, Symbol, WindowSet, WindowValue, first_open_window, window_start};

/// Time rules of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSettings {
    /// How far behind the watermark an event may be and still correct its window.
    pub allowed_lateness_ms: i64,
    /// How far before its broker time a later event may be stamped and still be archived for
    /// the correction of its day; older ones are dead-lettered as `too_late`.
    pub correction_horizon_ms: i64,
    /// How far ahead of its broker timestamp an event may be stamped and still be trusted.
    pub max_future_skew_ms: i64,
    /// How long (event time) an `eventId` is remembered for dedup.
    pub dedup_horizon_ms: i64,
    /// Most `eventId`s remembered; past it the oldest minutes are forgotten early.
    pub dedup_max_ids: usize,
    /// Most `eventId`s of one tenant remembered; past it that tenant's oldest minutes are
    /// forgotten early (nobody else's).
    pub dedup_max_ids_per_tenant: usize,
    /// Largest message inspected.
    pub max_message_bytes: usize,
    /// Distinct new enum values admitted per tenant, field and day; the rest are counted
    /// under `_overflow` ([`NewValueBudget`]).
    pub max_new_enum_values: usize,
    /// Distinct producer `source`s a tenant's rows may name per UTC day; the rest are counted
    /// under `_overflow` (the events themselves keep theirs: archive, routing, delivery).
    pub max_sources_per_day: usize,
    /// When each deprecated event version's support ends (`[[contracts.versions]]`).
    pub version_ends: VersionEnds,
}

/// An output waiting for its flush, whose latency is known only once it is durable.
#[derive(Debug, Clone, Copy)]
struct PendingLatency {
    tenant: Symbol,
    event_type: &'static str,
    at_ms: i64,
    consumers: &'static [&'static str],
}

/// One message as the task sees it: where it was and the minute its read is counted in.
#[derive(Debug, Clone, Copy)]
struct Arrival<'a> {
    address: Address,
    /// The broker-time minute, never one that is already final.
    broker_window: i64,
    payload: &'a [u8],
    path: PublishPath,
}

/// Size of the chunks archived events' bytes are copied into: a few hundred events each, and
/// at most one partly used chunk per task outlives the flush that holds the rest.
const RAW_CHUNK_BYTES: usize = 256 * 1024;

/// One source partition's state and the outputs it has not flushed yet.
#[derive(Debug)]
pub struct Task {
    topic: String,
    partition: i32,
    settings: TaskSettings,
    checkpoint: Checkpoint,
    seen: SeenIds,
    /// Open minute windows; hours and days are sealed from what is durable (ADR 0023).
    windows: WindowSet,
    aggregates: Aggregates,
    archive: Vec<ArchivedEvent>,
    dead_letters: Vec<DeadLetter>,
    pending_latency: Vec<PendingLatency>,
    pending_bytes: usize,
    refused: BTreeMap<i64, Rejection>,
    messages: u64,
    duplicates: u64,
    /// Where archived events' bytes are copied: one chunk for many events, handed out as
    /// shared slices, so archiving an event allocates nothing of its own.
    raw_chunk: BytesMut,
    /// The first open minutes (event time, broker time) at the last eviction: rows become
    /// final only when one of them moves, so flushes in between skip the scan of every row
    /// (which, with 100,000 tenants' rows open, cost more than the rest of the flush).
    evicted_at: (i64, i64),
    /// The routing table, when some events are not routed to the metrics (`None`: all are).
    metrics_routing: Option<Arc<RoutingTable>>,
    /// Most window rows one flush writes (`pipeline.max_flush_rows`; no limit unless set):
    /// processing stops while half of it is taken by changed rows, so the next flush stays
    /// one insert (ADR 0004).
    flush_rows: usize,
    /// Whether processing stopped at [`Task::flush_rows`]'s half: the rest of the batch waits
    /// for the next flush.
    full: bool,
    /// Latency rows the pending outputs will touch at the flush (a consumer each).
    pending_latency_rows: usize,
    /// New enum values admitted per tenant, field and day.
    new_values: NewValueBudget,
    /// The producer sources each tenant's rows may name per day (`max_sources_per_day`).
    sources: NewValueBudget,
    /// Since when the task has read nothing: this machine's time then (ms) and the broker
    /// watermark then. Set by the last flush that carried messages, or by the first idle
    /// check after a restore (see [`Task::idle_watermark`]).
    idle_since: Option<(i64, i64)>,
    /// Whether the checkpoint changed without a message (the clocks moved on while idle, or a
    /// seal landed): the next flush writes it though nothing else changed, so an idle task's
    /// seals are recorded too.
    checkpoint_changed: bool,
}

/// Most window rows one flush writes by default: far below ClickHouse's
/// `max_insert_block_size` (1,048,576), so the state insert is one block, one part, atomic.
pub const MAX_FLUSH_ROWS: usize = 500_000;

impl Task {
    /// A task resuming at `checkpoint` with nothing else restored (use
    /// `Checkpoint::default()` for a new partition).
    pub fn new(
        topic: &str,
        partition: i32,
        settings: TaskSettings,
        checkpoint: Checkpoint,
    ) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            settings,
            checkpoint,
            seen: SeenIds::with_caps(settings.dedup_max_ids, settings.dedup_max_ids_per_tenant),
            windows: WindowSet::default(),
            aggregates: Aggregates::default(),
            archive: Vec::new(),
            dead_letters: Vec::new(),
            pending_latency: Vec::new(),
            pending_bytes: 0,
            refused: BTreeMap::new(),
            messages: 0,
            duplicates: 0,
            evicted_at: (i64::MIN, i64::MIN),
            raw_chunk: BytesMut::new(),
            metrics_routing: None,
            flush_rows: usize::MAX,
            full: false,
            pending_latency_rows: 0,
            new_values: NewValueBudget::new(settings.max_new_enum_values),
            sources: NewValueBudget::new(settings.max_sources_per_day),
            idle_since: None,
            checkpoint_changed: false,
        }
    }

    /// The task as its earlier flushes left it: their last checkpoint, the rows that may
    /// still change, the ids counted within the dedup horizon, and the offsets a sink refused.
    /// Its flushes are epochs of a new generation: the one its owner claimed, or else the one
    /// after the checkpoint's (see [`next_generation`]).
    pub fn resume(topic: &str, partition: i32, settings: TaskSettings, state: TaskState) -> Self {
        let epoch = match state.generation {
            Some(generation) => {
                generation_start(generation).max(next_generation(state.checkpoint.epoch))
            }
            None => next_generation(state.checkpoint.epoch),
        };
        let checkpoint = Checkpoint {
            epoch,
            ..state.checkpoint
        };
        let mut task = Self::new(topic, partition, settings, checkpoint);
        // Stored before sealing: what is final was rolled up by the task itself, and nothing
        // from the first open minute on is sealed yet.
        let lateness = task.settings.allowed_lateness_ms;
        let checkpoint = &mut task.checkpoint;
        if checkpoint.sealed_hours_before.is_none()
            && checkpoint.event_watermark_ms.is_some()
            && checkpoint.broker_watermark_ms.is_some()
        {
            checkpoint.seals_start_at(checkpoint.first_open_window(lateness));
        }
        for admission in &state.admitted {
            let budget = if admission.field == SOURCE_FIELD {
                &mut task.sources
            } else {
                &mut task.new_values
            };
            budget.admit(
                &admission.tenant_id,
                admission.field,
                admission.day,
                &admission.value,
            );
        }
        // Hours and days are sealed from durable minutes, not held (ADR 0023).
        for row in state.rows.into_iter().filter(|r| r.span == Span::Minute) {
            let [d1, d2, d3] = &row.dims;
            let key = task
                .windows
                .key(row.family, row.window_start, &row.tenant_id, [d1, d2, d3]);
            task.windows.restore(key, row.value);
        }
        for (tenant, id, at_ms, fingerprint) in state.seen.iter() {
            let key = task.seen.key(tenant, id).with_fingerprint(fingerprint);
            task.seen.first_sighting(key, at_ms);
        }
        for (offset, rejection) in state.refused {
            // Refusals below the checkpoint are history: those messages are never read again.
            if offset >= task.checkpoint.next_offset {
                task.refused.insert(offset, rejection);
            }
        }
        task
    }

    /// Runs `aggregates` instead of all of them (the configured `graph.aggregates`).
    pub fn with_aggregates(mut self, aggregates: Aggregates) -> Self {
        self.aggregates = aggregates;
        self
    }

    /// Counts in the metrics only the events `routing` sends to them (`None`: every valid
    /// event); the others are still deduplicated, archived and delivered.
    pub fn with_routing(mut self, routing: Option<Arc<RoutingTable>>) -> Self {
        self.metrics_routing = routing.filter(|table| !table.always_counts_in_metrics());
        self
    }

    /// Writes at most `rows` window rows a flush (`pipeline.max_flush_rows`, at least 2); a
    /// task without it never stops processing for its flush's size.
    pub fn with_flush_rows(mut self, rows: usize) -> Self {
        self.flush_rows = rows.max(2);
        self
    }

    /// Whether processing stopped because half a flush's rows are changed: flush, then give
    /// the task its messages again (those it processed are skipped).
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Bytes of raw messages waiting for the next flush (archive and dead letters).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Where the task is.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Open window rows and remembered ids, for memory accounting.
    pub fn state_size(&self) -> (usize, usize) {
        (self.windows.len(), self.seen.len())
    }

    /// Changes the dedup caps (the instance's budget shared again among the tasks it owns):
    /// past a smaller cap the oldest minutes are forgotten at once ([`SeenIds::set_caps`]).
    pub fn set_dedup_caps(&mut self, cap: usize, tenant_cap: usize) {
        self.seen.set_caps(cap, tenant_cap);
    }

    /// The dedup caps in force: most ids, most of one tenant.
    pub fn dedup_caps(&self) -> (usize, usize) {
        self.seen.caps()
    }

    /// Ids the dedup cap forgot early, and events counted without a dedup check because of it
    /// (since the task was built).
    pub fn dedup_capped(&self) -> (u64, u64) {
        self.seen.capped()
    }

    /// Whether anything awaits a flush: messages, or restored rows to write again.
    pub fn has_pending(&self) -> bool {
        self.messages > 0 || self.windows.to_rewrite() > 0 || self.checkpoint_changed
    }

    /// Where an idle task's clocks would move at `now_ms` (this machine's time), when that
    /// makes an hour final (ADR 0023). A partition that stops receiving messages would
    /// otherwise keep its last hours open forever, never seal them, and hold every rollup
    /// view's minute branch back to them. After `idle_after_ms` without a message, the clocks
    /// run on with this machine's: the broker watermark when it went quiet, plus the time
    /// since, less `idle_after_ms` (as idle sources do in Flink). An event that comes after
    /// all and is older than that is late, and its day's correction counts it (ADR 0016).
    /// Only a move that seals something is offered: an idle task flushes once an hour. The
    /// caller checks the partition is read to its end before [`Task::move_while_idle`].
    pub fn idle_watermark(&mut self, now_ms: i64, idle_after_ms: i64) -> Option<i64> {
        if self.messages > 0 || self.full {
            return None;
        }
        let broker = self.checkpoint.broker_watermark_ms?;
        self.checkpoint.event_watermark_ms?;
        let (since_ms, broker_then) = *self.idle_since.get_or_insert((now_ms, broker));
        let idle_for = now_ms.saturating_sub(since_ms);
        if idle_for <= idle_after_ms {
            return None;
        }
        let to = broker_then.saturating_add(idle_for - idle_after_ms);
        let lateness = self.settings.allowed_lateness_ms;
        let moved = |clock: Option<i64>| first_open_window(clock.max(Some(to)), lateness);
        let open = moved(self.checkpoint.event_watermark_ms)
            .min(moved(self.checkpoint.broker_watermark_ms));
        (Span::Hour.start(open) > self.checkpoint.sealed_hours_before?).then_some(to)
    }

    /// Moves both clocks to at least `to_ms` (from [`Task::idle_watermark`]); the next flush
    /// writes the checkpoint, evicts what became final and seals it.
    pub fn move_while_idle(&mut self, to_ms: i64) {
        for clock in [
            &mut self.checkpoint.event_watermark_ms,
            &mut self.checkpoint.broker_watermark_ms,
        ] {
            *clock = (*clock).max(Some(to_ms));
        }
        self.checkpoint_changed = true;
    }

    /// The value of an open minute row (for tests and inspection).
    pub fn window(
        &mut self,
        family: Family,
        window_start: i64,
        tenant: &str,
        dims: [&str; 3],
    ) -> Option<WindowValue> {
        let key = self.windows.key(family, window_start, tenant, dims);
        self.windows.get(&key)
    }

    /// Processes messages of this partition in offset order. Messages below the checkpoint
    /// (already in the restored state) are skipped. Stops early, and says so
    /// ([`Task::is_full`]), once half of a flush's rows are changed: a message changes a few
    /// rows per family and span (a message with many new enum values more; the window-state
    /// sink then splits that one flush, its checkpoint in the last insert), so the next flush
    /// stays under the cap.
    pub fn process(&mut self, messages: &[RawMessage<'_>]) {
        let mut last_sequence = None;
        for message in messages {
            if message.offset < self.checkpoint.next_offset {
                continue;
            }
            if self.windows.changed() + self.pending_latency_rows >= self.flush_rows / 2 {
                self.full = true;
                break;
            }
            self.checkpoint.next_offset = message.offset + 1;
            last_sequence = message.sequence.or(last_sequence);
            self.messages += 1;
            self.pending_bytes += message.payload.map_or(0, <[u8]>::len);
            let letters = self.dead_letters.len();
            self.process_one(message);
            // A dead letter's address names the source's position too (rare: copied per letter).
            if let Some(sequence) = message.sequence {
                for letter in &mut self.dead_letters[letters..] {
                    letter.sequence = sequence.to_string();
                }
            }
        }
        // Once per batch, into the same buffer: no allocation per message.
        if let Some(sequence) = last_sequence {
            self.checkpoint.sequence.clear();
            self.checkpoint.sequence.push_str(sequence);
        }
    }

    fn process_one(&mut self, message: &RawMessage<'_>) {
        let parsed: Option<Json<'_>> = match message.payload {
            Some(bytes) if bytes.len() <= self.settings.max_message_bytes => parse(bytes).ok(),
            _ => None,
        };
        let broker_ms = message
            .timestamp_ms
            .or(self.checkpoint.broker_watermark_ms)
            .unwrap_or_default();
        let broker_watermark = match self.checkpoint.broker_watermark_ms {
            Some(w) => w.max(broker_ms),
            None => {
                self.first_watermark(broker_ms);
                broker_ms
            }
        };
        self.checkpoint.broker_watermark_ms = Some(broker_watermark);
        let arrival = Arrival {
            address: Address {
                offset: message.offset,
                broker_ms,
            },
            broker_window: window_start(broker_ms).max(first_open_window(
                Some(broker_watermark),
                self.settings.allowed_lateness_ms,
            )),
            payload: message.payload.unwrap_or_default(),
            path: message.path,
        };

        if let Some(rejection) = self.refused.remove(&message.offset) {
            self.reject(&arrival, readable(parsed.as_ref()), rejection);
            return;
        }
        let Some(value) = parsed else {
            let violations = match message.payload {
                None => vec![Violation {
                    path: String::new(),
                    kind: ViolationKind::NotJson("message has no value".into()),
                }],
                Some(bytes) => check(bytes, self.settings.max_message_bytes),
            };
            let rejection =
                Rejection::at_once(reason_for(&violations).into(), describe(&violations));
            self.reject(&arrival, Readable::default(), rejection);
            return;
        };
        // A payload naming another tenant is dead-lettered like any contract violation.
        let broker_ms = arrival.address.broker_ms;
        let ends = &self.settings.version_ends;
        match validate(&value).and_then(|mut event| match other_tenant(&event) {
            Some(violation) => Err(vec![violation]),
            // Past its version's end of support (by broker time): refused, naming the date
            // and what to publish instead.
            None if ends.has_ended(event.envelope.event_type, broker_ms) => {
                let event_type = event.envelope.event_type;
                let ended = ends
                    .end_ms(event_type)
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|at| at.date_naive())
                    .unwrap_or_default();
                Err(vec![Violation {
                    path: "/eventType".into(),
                    kind: ViolationKind::VersionEnded {
                        ended,
                        successor: VersionEnds::successor(event_type).as_str(),
                    },
                }])
            }
            None => {
                let minute = window_start(event.envelope.timestamp.timestamp_millis());
                self.new_values
                    .apply(&mut event.data, event.envelope.tenant_id, minute);
                Ok(event)
            }
        }) {
            Err(violations) => {
                let rejection =
                    Rejection::at_once(reason_for(&violations).into(), describe(&violations));
                self.reject(&arrival, readable(Some(&value)), rejection);
            }
            Ok(event) => self.accept(&arrival, &event),
        }
    }

    fn accept(&mut self, arrival: &Arrival<'_>, event: &Event<'_>) {
        let envelope = &event.envelope;
        let broker_ms = arrival.address.broker_ms;
        let stamped_ms = envelope.timestamp.timestamp_millis();
        let clock_skewed = stamped_ms > broker_ms + self.settings.max_future_skew_ms;
        let trusted_ms = if clock_skewed { broker_ms } else { stamped_ms };
        let window = window_start(trusted_ms);
        let id = envelope.event_id;
        let lateness = self.settings.allowed_lateness_ms;
        let fingerprint = content_fingerprint(arrival.payload);
        let source = self.counted_source(envelope.tenant_id, envelope.source, window);
        let seen_key = self
            .seen
            .key(envelope.tenant_id, id.0)
            .with_fingerprint(fingerprint);
        let looked_up = self.seen.look_up(seen_key);
        let first = looked_up.first_content();
        let duplicate = first.is_some();
        // Events are immutable: the same id with other bytes is a producer bug, counted.
        let conflicting = first == Some(FirstContent::Other);
        let late =
            !duplicate && window < first_open_window(self.checkpoint.event_watermark_ms, lateness);
        if late && trusted_ms < broker_ms.saturating_sub(self.settings.correction_horizon_ms) {
            let error = format!(
                "event time {} is in a final window (watermark {} ms, allowed lateness {lateness} ms) \
                 and more than the correction horizon ({} ms) before its broker time",
                envelope.timestamp.to_rfc3339(),
                self.checkpoint.event_watermark_ms.unwrap_or_default(),
                self.settings.correction_horizon_ms,
            );
            let who = Readable {
                tenant: envelope.tenant_id,
                source: envelope.source,
                event_type: envelope.event_type.as_str(),
                event_id: &id.to_string(),
                correlation_id: envelope.metadata.correlation_id.unwrap_or_default(),
            };
            self.reject(
                arrival,
                who,
                Rejection::at_once(DeadLetterReason::TooLate, error),
            );
            return;
        }
        self.aggregates.on_read(
            &mut self.windows,
            &ReadMessage {
                window_start: arrival.broker_window,
                topic: &self.topic,
                tenant: envelope.tenant_id,
                source,
                event_type: envelope.event_type.as_str(),
                rejected: None,
                duplicate,
                conflicting,
                path: arrival.path,
                late_window: late.then_some(window),
            },
        );
        if duplicate {
            self.duplicates += 1;
            return;
        }
        // Nothing changed the set since the lookup above.
        self.seen.remember(seen_key, trusted_ms, looked_up);
        // A late event's window is final here: it is archived (marked late) and counted by
        // the correction of its day, which recomputes the day from the archive (ADR 0016).
        let counted = !late
            && self.metrics_routing.as_ref().is_none_or(|table| {
                table.counts_in_metrics(
                    envelope.event_type.as_str(),
                    envelope.tenant_id,
                    envelope.source,
                )
            });
        if counted && source == envelope.source {
            self.aggregates.on_event(&mut self.windows, event, window);
        } else if counted {
            // Past the tenant's sources of the day: its rows name `_overflow` (rare; the
            // archive and delivery below keep the event's own source).
            let mut capped = event.clone();
            capped.envelope.source = source;
            self.aggregates.on_event(&mut self.windows, &capped, window);
        }
        let raw = self.keep_raw(arrival.payload);
        self.archive.push(ArchivedEvent {
            event_id: id,
            tenant_id: envelope.tenant_id.to_string(),
            event_type: envelope.event_type,
            source: envelope.source.to_string(),
            event_version: envelope.event_version.to_string(),
            user_id: envelope.user_id.unwrap_or_default().to_string(),
            session_id: envelope.session_id.unwrap_or_default().to_string(),
            correlation_id: envelope
                .metadata
                .correlation_id
                .unwrap_or_default()
                .to_string(),
            causation_id: envelope.metadata.causation_id,
            trace_id: kept_trace_id(envelope.metadata.trace_id).to_string(),
            timestamp_ms: stamped_ms,
            window_start: window,
            clock_skewed,
            late,
            offset: arrival.address.offset,
            broker_ms,
            raw,
            fingerprint,
        });
        let consumers: &'static [&'static str] = if counted {
            &[consumers::METRICS, consumers::ARCHIVE]
        } else {
            &[consumers::ARCHIVE]
        };
        self.pending_latency_rows += consumers.len();
        self.pending_latency.push(PendingLatency {
            tenant: self.windows.symbol(envelope.tenant_id),
            event_type: envelope.event_type.as_str(),
            at_ms: trusted_ms,
            consumers,
        });
        if !clock_skewed {
            if self.checkpoint.event_watermark_ms.is_none() {
                self.first_watermark(stamped_ms);
            }
            let wm = &mut self.checkpoint.event_watermark_ms;
            *wm = Some(wm.map_or(stamped_ms, |w| w.max(stamped_ms)));
        }
    }

    /// A clock's first watermark, `at_ms`: no row of the task can be older than its first
    /// open minute, so the seals start there (ADR 0023).
    fn first_watermark(&mut self, at_ms: i64) {
        let open = first_open_window(Some(at_ms), self.settings.allowed_lateness_ms);
        self.checkpoint.seals_start_at(open);
    }

    /// The source `tenant`'s rows count `source` under on the day of `minute_s`: its own while
    /// the day has room for it (`max_sources_per_day`), `_overflow` past it.
    fn counted_source<'s>(&mut self, tenant: &str, source: &'s str, minute_s: i64) -> &'s str {
        if self.sources.admits(tenant, SOURCE_FIELD, minute_s, source) {
            source
        } else {
            OVERFLOW_VALUE
        }
    }

    /// A copy of an archived message's bytes in the current chunk (a new chunk when it is
    /// full); the chunk is freed once the last flush holding a slice of it is written.
    fn keep_raw(&mut self, payload: &[u8]) -> Bytes {
        if self.raw_chunk.capacity() - self.raw_chunk.len() < payload.len() {
            self.raw_chunk = BytesMut::with_capacity(RAW_CHUNK_BYTES.max(payload.len()));
        }
        self.raw_chunk.extend_from_slice(payload);
        self.raw_chunk.split().freeze()
    }

    /// Sends a message to the dead-letter path: counted as read and rejected (broker time),
    /// its latency to the dead-letter table measured at the flush.
    fn reject(&mut self, arrival: &Arrival<'_>, who: Readable<'_>, rejection: Rejection) {
        let source = self.counted_source(who.tenant, who.source, arrival.broker_window);
        self.aggregates.on_read(
            &mut self.windows,
            &ReadMessage {
                window_start: arrival.broker_window,
                topic: &self.topic,
                tenant: who.tenant,
                source,
                event_type: who.event_type,
                rejected: Some(rejection.reason),
                duplicate: false,
                conflicting: false,
                path: arrival.path,
                late_window: None,
            },
        );
        self.pending_latency_rows += 1;
        self.pending_latency.push(PendingLatency {
            tenant: self.windows.symbol(who.tenant),
            event_type: EventType::parse(who.event_type).map_or("", |t| t.as_str()),
            at_ms: arrival.address.broker_ms,
            consumers: &[consumers::DEAD_LETTERS],
        });
        self.dead_letters.push(DeadLetter::new(
            arrival.address,
            who,
            rejection,
            arrival.payload.to_vec(),
        ));
    }

    /// Hands over everything processed since the last flush, as of `durable_at_ms` (the
    /// moment the caller starts making it durable, used for latency), and advances the epoch.
    /// Latency is counted in the minute it became durable, not the event's: an alert's
    /// lookback then covers what was processed lately, however old the events were, so a
    /// stalled or catching-up pipeline shows its latency instead of hiding it in old windows.
    pub fn flush(&mut self, durable_at_ms: i64) -> Flush {
        if self.messages > 0 {
            let broker = self.checkpoint.broker_watermark_ms.unwrap_or_default();
            self.idle_since = Some((durable_at_ms, broker));
        }
        self.checkpoint_changed = false;
        // A minute its clock already closed was evicted as final: a row made there again would
        // hold this flush's outputs alone and replace the whole minute. When a clock runs ahead
        // of this machine's (producers' clocks ahead of ours), its outputs count in its first
        // open minute instead, as a broker-time read does.
        let durable_minute = window_start(durable_at_ms);
        let lateness = self.settings.allowed_lateness_ms;
        let event_minute = durable_minute.max(first_open_window(
            self.checkpoint.event_watermark_ms,
            lateness,
        ));
        let broker_minute = durable_minute.max(first_open_window(
            self.checkpoint.broker_watermark_ms,
            lateness,
        ));
        self.pending_latency_rows = 0;
        for pending in std::mem::take(&mut self.pending_latency) {
            let latency_ms = (durable_at_ms - pending.at_ms).max(0) as f64;
            for consumer in pending.consumers {
                let output = Durable {
                    window_start: if closes_on_broker_clock(
                        Family::Latency,
                        *consumer == consumers::DEAD_LETTERS,
                    ) {
                        broker_minute
                    } else {
                        event_minute
                    },
                    tenant: pending.tenant,
                    event_type: pending.event_type,
                    consumer,
                    latency_ms,
                };
                self.aggregates.on_durable(&mut self.windows, &output);
            }
        }
        self.checkpoint.epoch += 1;
        self.full = false;
        let changed = self.windows.take_changed(self.flush_rows);
        let windows = &self.windows;
        // Sized up front: a flush's vectors are large and new each time, so growing them
        // copies and faults in fresh pages several times over (docs/performance.md).
        let mut rows = Vec::with_capacity(changed.len());
        rows.extend(changed.into_iter().filter_map(|key| {
            let value = windows.get(&key)?;
            Some(StateRow {
                family: key.family,
                span: Span::Minute,
                window_start: key.window_start,
                tenant_id: windows.text(key.tenant).to_string(),
                dims: key.dims.map(|d| windows.text(d).to_string()),
                value,
            })
        }));
        self.evict_final();
        if let Some(wm) = self.checkpoint.event_watermark_ms {
            self.seen.forget_before(wm - self.settings.dedup_horizon_ms);
        }
        self.pending_bytes = 0;
        let seal = self.checkpoint.seal_due(self.settings.allowed_lateness_ms);
        // The next flush's archive starts at this one's size (see `rows` above).
        let archived = self.archive.len();
        let archive = std::mem::replace(&mut self.archive, Vec::with_capacity(archived));
        Flush {
            topic: self.topic.clone(),
            partition: self.partition,
            checkpoint: self.checkpoint.clone(),
            rows,
            archive,
            dead_letters: std::mem::take(&mut self.dead_letters),
            messages: std::mem::take(&mut self.messages),
            duplicates: std::mem::take(&mut self.duplicates),
            seal,
        }
    }

    /// Records that the seal a flush of this task asked for has landed (ADR 0023): the next
    /// checkpoint says so.
    pub fn sealed(&mut self, seal: &Seal) {
        self.checkpoint.sealed(seal);
        self.checkpoint_changed = true;
    }

    /// Drops flushed rows that can no longer change. Rows keyed by broker time (reads, dead
    /// letters and their latency) close with the broker watermark; all others with the
    /// event-time watermark.
    fn evict_final(&mut self) {
        let lateness = self.settings.allowed_lateness_ms;
        let event_open = first_open_window(self.checkpoint.event_watermark_ms, lateness);
        let broker_open = first_open_window(self.checkpoint.broker_watermark_ms, lateness);
        if (event_open, broker_open) == self.evicted_at {
            return;
        }
        self.evicted_at = (event_open, broker_open);
        self.new_values.forget_before(event_open);
        self.sources.forget_before(event_open.min(broker_open));
        let dead_letters = self.windows.symbol(consumers::DEAD_LETTERS);
        self.windows.evict_final(|key| {
            let broker_time = closes_on_broker_clock(key.family, key.dims[1] == dead_letters);
            key.window_start < if broker_time { broker_open } else { event_open }
        });
        // The strings of evicted rows go too; pending outputs keep their tenants'.
        let pending: Vec<Symbol> = self.pending_latency.iter().map(|p| p.tenant).collect();
        if let Some(remap) = self.windows.compact(&pending) {
            for pending in &mut self.pending_latency {
                pending.tenant = remap[pending.tenant as usize];
            }
        }
    }
}

/// Whether rows of `family` close with the broker clock (keyed by broker time: reads, dead
/// letters, late arrivals, and the latency of the dead-letter consumer, said by
/// `dead_letters_consumer`); all others close with the event clock. The one rule for
/// eviction and for where a flush's outputs may still count.
fn closes_on_broker_clock(family: Family, dead_letters_consumer: bool) -> bool {
    matches!(
        family,
        Family::Publish | Family::DeadLetters | Family::LateArrivals
    ) || (family == Family::Latency && dead_letters_consumer)
}

/// What is readable of a message that did not validate: the envelope fields it carries.
fn readable<'a>(value: Option<&'a Json<'a>>) -> Readable<'a> {
    let field = |name: &str| -> &'a str {
        value
            .and_then(|v| v.get(name))
            .and_then(Json::as_str)
            .unwrap_or("")
    };
    Readable {
        tenant: field("tenantId"),
        source: field("source"),
        event_type: field("eventType"),
        event_id: field("eventId"),
        correlation_id: value
            .and_then(|v| v.get("metadata"))
            .and_then(|metadata| metadata.get("correlationId"))
            .and_then(Json::as_str)
            .unwrap_or(""),
    }
}

/// How many violations a dead letter's error spells out. A hostile message can hold 100,000
/// (one per item of a huge array); listing them all would make a multi-megabyte error, too
/// big for the dead-letter topic's headers. The raw message is kept whole either way.
const DESCRIBED_VIOLATIONS: usize = 20;

fn describe(violations: &[Violation]) -> String {
    let mut text = violations
        .iter()
        .take(DESCRIBED_VIOLATIONS)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(more) = violations
        .len()
        .checked_sub(DESCRIBED_VIOLATIONS)
        .filter(|n| *n > 0)
    {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

/// Longest `metadata.traceId` kept in the archive and passed on to the targets (an X-Ray id
/// is 35 characters): the contract bounds it by nothing but the message's size, and a longer
/// one is not copied into every archived row and delivered record.
pub const MAX_TRACE_ID_BYTES: usize = 256;

/// `trace_id` when it is short enough to keep, else empty (the event itself is unaffected).
fn kept_trace_id(trace_id: Option<&str>) -> &str {
    trace_id
        .filter(|id| id.len() <= MAX_TRACE_ID_BYTES)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_values::Admission;

    #[test]
    fn a_trace_id_is_kept_up_to_its_bound() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let with_trace = |id: u32, trace: &str| {
            String::from_utf8(event(id, T0, "a"))
                .expect("utf-8")
                .replace(
                    r#"{"correlationId":"c"}"#,
                    &format!(r#"{{"correlationId":"c","traceId":"{trace}"}}"#),
                )
                .into_bytes()
        };
        let short = "1-5e1c6b3d-a9c8b7d6e5f4a3b2c1d0e1f0";
        let at_bound = "t".repeat(MAX_TRACE_ID_BYTES);
        let over = "t".repeat(MAX_TRACE_ID_BYTES + 1);
        feed(
            &mut task,
            &[
                (0, T0, with_trace(1, short)),
                (1, T0, with_trace(2, &at_bound)),
                (2, T0, with_trace(3, &over)),
            ],
        );
        let flush = task.flush(T0 + 1000);
        let kept: Vec<usize> = flush.archive.iter().map(|e| e.trace_id.len()).collect();
        assert_eq!(
            kept,
            [short.len(), MAX_TRACE_ID_BYTES, 0],
            "every event archived"
        );
    }

    use crate::dedup::CountedIds;
    use crate::time::MINUTE_MS as MINUTE;
    const T0: i64 = 1_762_646_400_000; // 2025-11-09T00:00:00Z

    fn settings() -> TaskSettings {
        TaskSettings {
            allowed_lateness_ms: 5 * MINUTE,
            correction_horizon_ms: 7 * 24 * 60 * MINUTE,
            max_future_skew_ms: 10 * MINUTE,
            dedup_horizon_ms: 24 * 60 * MINUTE,
            dedup_max_ids: 10_000_000,
            dedup_max_ids_per_tenant: 10_000_000,
            max_message_bytes: 1 << 20,
            max_new_enum_values: 1_000,
            max_sources_per_day: 1_000,
            version_ends: Default::default(),
        }
    }

    fn event(id: u32, at_ms: i64, tenant: &str) -> Vec<u8> {
        let at = chrono::DateTime::from_timestamp_millis(at_ms).expect("valid time");
        format!(
            r#"{{"eventId":"00000000-0000-4000-8000-{id:012}","eventType":"tenant.provisioned.v1","eventVersion":"1.0","source":"tenant-onboard","timestamp":"{}","tenantId":"{tenant}","metadata":{{"correlationId":"c"}},"data":{{"tenantId":"{tenant}","organizationName":"Acme","ownerEmail":"a@acme.com","plan":"standard","region":"us-east-1","resources":{{"messagesTableName":"m","metricsTableName":"t","s3Prefix":"p/"}},"provisioningTimeMs":1200,"sampleDataSeeded":true}}}}"#,
            at.format("%Y-%m-%dT%H:%M:%S%.3fZ")
        )
        .into_bytes()
    }

    fn feed(task: &mut Task, messages: &[(i64, i64, Vec<u8>)]) {
        let raw: Vec<RawMessage<'_>> = messages
            .iter()
            .map(|(offset, broker_ms, bytes)| RawMessage {
                topic: "salestalk.tenant",
                partition: 0,
                offset: *offset,
                timestamp_ms: Some(*broker_ms),
                payload: Some(bytes),
                path: PublishPath::Direct,
                sequence: None,
            })
            .collect();
        task.process(&raw);
    }

    fn volume(task: &mut Task, window_ms: i64, tenant: &str) -> i64 {
        let dims = ["tenant.provisioned.v1", "tenant-onboard", ""];
        task.window(Family::Volume, window_start(window_ms), tenant, dims)
            .map_or(0, |v| v.ints[0])
    }

    #[test]
    fn a_resend_counts_once_and_is_seen_as_a_duplicate() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        feed(
            &mut task,
            &[(0, T0, event(1, T0, "a")), (1, T0, event(1, T0, "a"))],
        );
        assert_eq!(volume(&mut task, T0, "a"), 1);
        let publish = task.window(
            Family::Publish,
            window_start(T0),
            "a",
            ["tenant-onboard", "salestalk.tenant", "direct"],
        );
        assert_eq!(publish.map(|p| p.ints), Some(vec![2, 0, 1, 0]));
        let flush = task.flush(T0 + 1000);
        assert_eq!(flush.archive.len(), 1);
        assert!(flush.dead_letters.is_empty());
    }

    #[test]
    fn the_same_id_with_other_content_is_a_conflicting_duplicate_across_a_restore() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let first = event(1, T0, "a");
        // Same tenant and id, other content (another organisation name).
        let other = String::from_utf8(first.clone())
            .expect("utf-8")
            .replace("Acme", "Other")
            .into_bytes();
        feed(
            &mut task,
            &[
                (0, T0, first.clone()),
                (1, T0, first.clone()),
                (2, T0, other.clone()),
            ],
        );
        let ints = |task: &mut Task| {
            task.window(
                Family::Publish,
                window_start(T0),
                "a",
                ["tenant-onboard", "salestalk.tenant", "direct"],
            )
            .map(|p| p.ints.clone())
        };
        // Two resends, one of them with other bytes; counted once either way.
        assert_eq!(ints(&mut task), Some(vec![3, 0, 2, 1]));
        assert_eq!(volume(&mut task, T0, "a"), 1);
        let flush = task.flush(T0 + 1000);
        assert_eq!(flush.archive.len(), 1);
        let archived = flush.archive[0].fingerprint;
        assert_eq!(archived, content_fingerprint(&first));

        // A task restored from the archive compares with the archived fingerprint.
        let mut restored = Task::resume(
            "salestalk.tenant",
            0,
            settings(),
            TaskState {
                checkpoint: flush.checkpoint.clone(),
                seen: {
                    let mut seen = CountedIds::default();
                    seen.push("a", flush.archive[0].event_id.0, T0, archived);
                    seen
                },
                ..TaskState::default()
            },
        );
        feed(&mut restored, &[(3, T0 + 1000, other)]);
        assert_eq!(
            ints(&mut restored).map(|i| i[3]),
            Some(1),
            "conflicting after a restore too"
        );
    }

    #[test]
    fn events_a_rule_keeps_from_the_metrics_are_archived_but_not_counted() {
        use crate::routing::RoutingSettings;
        let routing: RoutingSettings = serde_json::from_str(
            r#"{"unmatched": ["metrics"], "targets": {"q": {}}, "rules": [
                {"name": "test-tenants", "tenants": ["test-*"], "targets": ["q"]}]}"#,
        )
        .expect("routing settings");
        let table = Arc::new(RoutingTable::compile(&routing).expect("valid"));
        assert!(!table.always_counts_in_metrics());
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default())
            .with_routing(Some(table));
        feed(
            &mut task,
            &[(0, T0, event(1, T0, "test-1")), (1, T0, event(2, T0, "a"))],
        );
        assert_eq!(volume(&mut task, T0, "test-1"), 0);
        assert_eq!(volume(&mut task, T0, "a"), 1);
        let flush = task.flush(T0 + 1000);
        let archived: Vec<&str> = flush.archive.iter().map(|e| e.tenant_id.as_str()).collect();
        assert_eq!(archived, ["test-1", "a"]);
    }

    #[test]
    fn only_the_configured_aggregates_write_rows() {
        let only = Aggregates::from_names(&["onboarding", "latency"]).expect("known names");
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default())
            .with_aggregates(only);
        feed(
            &mut task,
            &[(0, T0, event(1, T0, "a")), (1, T0, b"{".to_vec())],
        );
        let flush = task.flush(T0 + 1000);
        let mut families: Vec<Family> = flush.rows.iter().map(|r| r.family).collect();
        families.dedup();
        assert_eq!(families, [Family::Onboarding, Family::Latency]);
        assert!(flush.rows.iter().all(|r| r.span == Span::Minute));
        // The outputs do not depend on the aggregates: nothing is lost by leaving one out.
        assert_eq!((flush.archive.len(), flush.dead_letters.len()), (1, 1));
    }

    #[test]
    fn late_events_correct_their_window_until_the_lateness_runs_out() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        feed(&mut task, &[(0, T0, event(1, T0 + 10 * MINUTE, "a"))]);
        // Window [T0+5m, T0+6m) is final only once the watermark reaches T0+6m+5m.
        feed(&mut task, &[(1, T0, event(2, T0 + 5 * MINUTE, "a"))]);
        assert_eq!(volume(&mut task, T0 + 5 * MINUTE, "a"), 1);
        // Window [T0, T0+1m) closed at T0 + 1m + 5m < T0 + 10m: final. The event is archived
        // for the correction of its day, not counted live and not dead-lettered.
        feed(&mut task, &[(2, T0, event(3, T0, "a"))]);
        assert_eq!(volume(&mut task, T0, "a"), 0);
        let arrivals = task
            .window(
                Family::LateArrivals,
                window_start(T0),
                "a",
                ["tenant.provisioned.v1", "2025-11-09 00:00:00", ""],
            )
            .map(|v| v.ints[0]);
        assert_eq!(arrivals, Some(1), "counted where it arrived");
        // Its resend is a resend like any other.
        feed(&mut task, &[(3, T0, event(3, T0, "a"))]);
        let flush = task.flush(T0 + 11 * MINUTE);
        assert!(flush.dead_letters.is_empty());
        let late: Vec<(i64, bool)> = flush.archive.iter().map(|e| (e.offset, e.late)).collect();
        assert_eq!(late, [(0, false), (1, false), (2, true)]);
        assert_eq!(flush.archive[2].window_start, window_start(T0));
        assert_eq!(flush.duplicates, 1);
        // It is measured to the archive only: the metrics do not hold it yet.
        let metrics_latency = flush
            .rows
            .iter()
            .filter(|r| r.family == Family::Latency && r.span == Span::Minute)
            .filter(|r| r.dims[1] == consumers::METRICS)
            .map(|r| r.value.ints[0])
            .sum::<i64>();
        assert_eq!(metrics_latency, 2);
    }

    #[test]
    fn outputs_of_clocks_ahead_of_ours_count_in_their_first_open_minute_not_a_closed_one() {
        // The producers' clocks run an hour ahead of this machine's: the flush's own minute is
        // already closed on both clocks, and a row made there again would replace the whole
        // minute with one flush's outputs.
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let behind = T0 - 60 * MINUTE;
        let latency = |flush: &Flush, consumer: &str| -> Vec<(i64, i64)> {
            flush
                .rows
                .iter()
                .filter(|r| r.family == Family::Latency && r.dims[1] == consumer)
                .map(|r| (r.window_start, r.value.ints[0]))
                .collect()
        };
        let first_open = window_start(T0 - settings().allowed_lateness_ms);
        feed(
            &mut task,
            &[(0, T0, event(1, T0, "a")), (1, T0, b"{".to_vec())],
        );
        let first = task.flush(behind);
        assert_eq!(latency(&first, consumers::METRICS), [(first_open, 1)]);
        assert_eq!(latency(&first, consumers::DEAD_LETTERS), [(first_open, 1)]);
        feed(
            &mut task,
            &[(2, T0, event(2, T0, "a")), (3, T0, b"{".to_vec())],
        );
        let second = task.flush(behind + MINUTE);
        assert_eq!(
            latency(&second, consumers::METRICS),
            [(first_open, 2)],
            "the open row grows"
        );
        assert_eq!(latency(&second, consumers::DEAD_LETTERS), [(first_open, 2)]);
        // On time again, outputs count in the minute they became durable.
        feed(&mut task, &[(4, T0, event(3, T0, "a"))]);
        let on_time = task.flush(T0 + 2 * MINUTE);
        assert_eq!(
            latency(&on_time, consumers::METRICS),
            [(window_start(T0 + 2 * MINUTE), 1)]
        );
    }

    #[test]
    fn an_idle_task_s_clocks_run_on_with_ours_and_seal_once_an_hour() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let idle_after = 10 * MINUTE;
        let hour_s = T0 / 1_000;
        feed(&mut task, &[(0, T0, event(1, T0, "a"))]);
        assert_eq!(task.flush(T0).seal, None, "nothing final yet");
        assert_eq!(task.idle_watermark(T0 + 10 * MINUTE, idle_after), None);
        // Quiet for 30 minutes: the clocks would stand at T0 + 20 min, which makes the hour
        // before T0 final.
        let to = task.idle_watermark(T0 + 30 * MINUTE, idle_after);
        assert_eq!(to, Some(T0 + 20 * MINUTE));
        task.move_while_idle(T0 + 20 * MINUTE);
        assert!(task.has_pending());
        let idle = task.flush(T0 + 30 * MINUTE);
        assert_eq!(idle.checkpoint.event_watermark_ms, Some(T0 + 20 * MINUTE));
        assert_eq!(idle.checkpoint.broker_watermark_ms, Some(T0 + 20 * MINUTE));
        let seal = idle.seal.expect("a seal");
        assert_eq!(seal.hours, (hour_s - 3_600, hour_s));
        assert_eq!(seal.days, (hour_s - 86_400, hour_s));
        assert!(idle.rows.is_empty() && idle.archive.is_empty());
        task.sealed(&seal);
        // The next flush records the seal, though no message came.
        let recorded = task.flush(T0 + 31 * MINUTE);
        assert_eq!(recorded.checkpoint.sealed_hours_before, Some(hour_s));
        assert_eq!(recorded.seal, None);
        assert!(!task.has_pending());
        assert_eq!(
            task.idle_watermark(T0 + 40 * MINUTE, idle_after),
            None,
            "the next hour is not final yet: no flush"
        );
        assert_eq!(
            task.idle_watermark(T0 + 90 * MINUTE, idle_after),
            Some(T0 + 80 * MINUTE)
        );
        // An event that comes after all, older than the moved clock less the lateness, is
        // late: archived for its day's correction, not counted live.
        feed(&mut task, &[(1, T0 + MINUTE, event(2, T0 + MINUTE, "a"))]);
        assert_eq!(task.idle_watermark(T0 + 90 * MINUTE, idle_after), None);
        let after = task.flush(T0 + 91 * MINUTE);
        assert!(after.archive[0].late);
        assert_eq!(volume(&mut task, T0 + MINUTE, "a"), 0);
        // Its flush carried a message: idleness starts again from there.
        assert_eq!(task.idle_watermark(T0 + 100 * MINUTE, idle_after), None);
    }

    #[test]
    fn events_older_than_the_correction_horizon_are_dead_lettered_too_late() {
        let horizon = settings().correction_horizon_ms;
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let now = T0 + horizon + 60 * MINUTE;
        feed(
            &mut task,
            &[
                (0, now, event(1, now, "a")),
                // Within the horizon of its broker time: archived for the correction.
                (1, now, event(2, now - horizon + MINUTE, "a")),
                // Beyond it: no correction reaches it.
                (2, now, event(3, now - horizon - MINUTE, "a")),
            ],
        );
        let flush = task.flush(now);
        let letters: Vec<_> = flush
            .dead_letters
            .iter()
            .map(|d| (d.offset, d.reason))
            .collect();
        assert_eq!(letters, [(2, DeadLetterReason::TooLate)]);
        assert!(flush.dead_letters[0].error.contains("correction horizon"));
        assert_eq!(flush.dead_letters[0].correlation_id, "c");
        let late: Vec<(i64, bool)> = flush.archive.iter().map(|e| (e.offset, e.late)).collect();
        assert_eq!(late, [(0, false), (1, true)]);
    }

    #[test]
    fn a_version_past_its_end_is_dead_lettered_by_broker_time_naming_the_day() {
        use crate::versions::{VersionLifecycle, VersionStatus};
        let end_day = chrono::DateTime::from_timestamp_millis(T0 + 24 * 60 * MINUTE)
            .expect("a time")
            .date_naive();
        let version_ends = VersionEnds::from_entries(&[VersionLifecycle {
            event_type: "tenant.provisioned.v1".into(),
            status: VersionStatus::Deprecated,
            ends: Some(end_day),
        }])
        .expect("valid");
        let settings = TaskSettings {
            version_ends,
            ..settings()
        };
        let end = T0 + 24 * 60 * MINUTE;
        let mut task = Task::new("salestalk.tenant", 0, settings, Checkpoint::default());
        feed(
            &mut task,
            &[
                // The day before its end: deprecated, still counted.
                (0, end - MINUTE, event(1, end - MINUTE, "a")),
                // Stamped before the end but taken by the broker after it: refused, since the
                // producer's stamp is not what decides.
                (1, end + MINUTE, event(2, end - 2 * MINUTE, "a")),
            ],
        );
        let flush = task.flush(end + MINUTE);
        assert_eq!(
            flush.archive.iter().map(|e| e.offset).collect::<Vec<_>>(),
            [0]
        );
        let letters: Vec<_> = flush
            .dead_letters
            .iter()
            .map(|d| (d.offset, d.reason))
            .collect();
        assert_eq!(letters, [(1, DeadLetterReason::UnsupportedVersion)]);
        let error = &flush.dead_letters[0].error;
        assert!(error.contains(&end_day.to_string()), "{error}");
    }

    #[test]
    fn future_stamped_events_count_at_broker_time_and_do_not_move_the_watermark() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        feed(
            &mut task,
            &[
                (0, T0, event(1, T0, "a")),
                (1, T0, event(2, T0 + 30 * 60 * MINUTE, "a")),
            ],
        );
        assert_eq!(
            volume(&mut task, T0, "a"),
            2,
            "both counted in the broker-time window"
        );
        assert_eq!(task.checkpoint().event_watermark_ms, Some(T0));
        let flush = task.flush(T0);
        assert!(flush.archive.iter().any(|e| e.clock_skewed));
    }

    #[test]
    fn rejected_messages_are_dead_lettered_with_what_is_readable() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let mut bad = event(1, T0, "acme");
        let text = String::from_utf8(bad.clone())
            .expect("utf-8")
            .replace("\"plan\":\"standard\",", "");
        bad = text.into_bytes();
        feed(
            &mut task,
            &[(7, T0, bad), (8, T0, b"\xff not json".to_vec())],
        );
        let flush = task.flush(T0);
        let reasons: Vec<_> = flush
            .dead_letters
            .iter()
            .map(|d| {
                let who = (d.tenant_id.as_str(), d.correlation_id.as_str());
                (d.offset, d.reason, who)
            })
            .collect();
        assert_eq!(
            reasons,
            [
                (7, DeadLetterReason::SchemaViolation, ("acme", "c")),
                (8, DeadLetterReason::NotJson, ("", ""))
            ]
        );
        assert!(
            flush.dead_letters[0].error.contains("/data/plan"),
            "{}",
            flush.dead_letters[0].error
        );
        assert_eq!(flush.checkpoint.next_offset, 9);
    }

    #[test]
    fn a_10_mb_message_is_dead_lettered_as_oversized_without_being_parsed() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let mut huge = event(1, T0, "a");
        huge.splice(
            1..1,
            format!("\"pad\":\"{}\",", "x".repeat(10 << 20)).into_bytes(),
        );
        feed(&mut task, &[(0, T0, huge), (1, T0, event(2, T0, "a"))]);
        let flush = task.flush(T0);
        assert_eq!(flush.dead_letters.len(), 1);
        assert_eq!(flush.dead_letters[0].reason, DeadLetterReason::Oversized);
        assert_eq!(
            flush.dead_letters[0].raw.len(),
            (10 << 20) + event(1, T0, "a").len() + 9
        );
        assert_eq!(flush.archive.len(), 1, "the next message is counted");
    }

    #[test]
    fn a_message_with_thousands_of_violations_gets_a_short_error() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        // Every item of `subjects` is an object where a subject name belongs (as many as the
        // contract lets an array hold; more would be one violation at the array).
        let spec = include_str!("../../contracts/tests/corpus/spec-examples.jsonl");
        let completed = spec.lines().nth(2).expect("conversation.completed example");
        let items: Vec<String> = (0..salestalk_contracts::limits::MAX_SET_ITEMS)
            .map(|i| format!("{{\"a\":{i}}}"))
            .collect();
        let text = completed.replace(
            "\"subjects\":[\"revenue\",\"margin\"]",
            &format!("\"subjects\":[{}]", items.join(",")),
        );
        assert_ne!(text, completed);
        feed(&mut task, &[(0, T0, text.into_bytes())]);
        let flush = task.flush(T0);
        let error = &flush.dead_letters[0].error;
        assert!(
            error.ends_with(&format!(
                "; and {} more",
                salestalk_contracts::limits::MAX_SET_ITEMS - 20
            )),
            "{}",
            &error[error.len() - 40..]
        );
        assert!(error.len() < 2_000, "{} bytes", error.len());
    }

    #[test]
    fn new_enum_values_past_the_budget_are_counted_under_one_value_in_bounded_rows() {
        let settings = TaskSettings {
            max_new_enum_values: 100,
            version_ends: Default::default(),
            ..settings()
        };
        let mut task = Task::new(
            "salestalk.classification",
            0,
            settings,
            Checkpoint::default(),
        );
        let spec = include_str!("../../contracts/tests/corpus/spec-examples.jsonl");
        let example = spec
            .lines()
            .find(|line| line.contains("classification.performed.v1"))
            .expect("classification example");
        let at = chrono::DateTime::from_timestamp_millis(T0).expect("time");
        let messages: Vec<(i64, i64, Vec<u8>)> = (0..1_000)
            .map(|i| {
                let mut value: serde_json::Value = serde_json::from_str(example).expect("json");
                value["eventId"] = serde_json::json!(format!("00000000-0000-4000-8000-{i:012}"));
                value["timestamp"] = serde_json::json!(at.to_rfc3339());
                value["data"]["classification"]["intent"] = serde_json::json!(format!("new_{i}"));
                (i, T0, value.to_string().into_bytes())
            })
            .collect();
        feed(&mut task, &messages);
        let flush = task.flush(T0);
        assert!(flush.dead_letters.is_empty());
        let day: Vec<&StateRow> = flush
            .rows
            .iter()
            .filter(|r| r.family == Family::NewEnumValues)
            .collect();
        let events = |row: &StateRow| row.value.ints[0];
        assert_eq!(day.len(), 101, "100 values and the overflow");
        assert_eq!(day.iter().map(|r| events(r)).sum::<i64>(), 1_000);
        let overflow = day
            .iter()
            .find(|r| r.dims[2] == salestalk_contracts::OVERFLOW_VALUE)
            .expect("an overflow row");
        assert_eq!(events(overflow), 900);
        // The intents family counts every classification too, under as few values.
        let intents: Vec<&StateRow> = flush
            .rows
            .iter()
            .filter(|r| r.family == Family::Intents)
            .collect();
        assert_eq!(intents.len(), 101);
        assert_eq!(intents.iter().map(|r| r.value.ints[0]).sum::<i64>(), 1_000);
    }

    #[test]
    fn sources_past_a_tenants_daily_budget_count_under_one_source_and_keep_their_own_elsewhere() {
        let settings = TaskSettings {
            max_sources_per_day: 2,
            ..settings()
        };
        let mut task = Task::new("salestalk.tenant", 0, settings, Checkpoint::default());
        let from = |id: u32, tenant: &str, source: &str| -> Vec<u8> {
            String::from_utf8(event(id, T0, tenant))
                .expect("utf-8")
                .replace(
                    "\"source\":\"tenant-onboard\"",
                    &format!("\"source\":\"{source}\""),
                )
                .into_bytes()
        };
        let messages: Vec<(i64, i64, Vec<u8>)> = (0..10u32)
            .map(|i| (i64::from(i), T0, from(i, "a", &format!("svc-{}", i % 5))))
            .chain([
                (10, T0, from(10, "b", "svc-4")),
                (11, T0, b"not json".to_vec()),
            ])
            .collect();
        feed(&mut task, &messages);
        let flush = task.flush(T0);
        let mut volume: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut publish: BTreeMap<(String, String), i64> = BTreeMap::new();
        // Every event is in one minute: its rows are the day's.
        for row in &flush.rows {
            let counts = match row.family {
                Family::Volume => &mut volume,
                Family::Publish => &mut publish,
                _ => continue,
            };
            let at = row.family.producer_source_dim().expect("a source");
            *counts
                .entry((row.tenant_id.clone(), row.dims[at].clone()))
                .or_default() += row.value.ints[0];
        }
        let expected: BTreeMap<(String, String), i64> = [
            (("a", "svc-0"), 2),
            (("a", "svc-1"), 2),
            (("a", OVERFLOW_VALUE), 6),
            (("b", "svc-4"), 1),
        ]
        .into_iter()
        .map(|((t, s), n)| ((t.to_string(), s.to_string()), n))
        .collect();
        assert_eq!(volume, expected, "another tenant keeps its own budget");
        let mut read = expected.clone();
        read.insert((String::new(), String::new()), 1);
        assert_eq!(publish, read, "publishes count under the same sources");
        let archived: Vec<&str> = flush.archive.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(archived.iter().filter(|s| **s == "svc-4").count(), 3);
        assert!(!archived.contains(&OVERFLOW_VALUE), "events keep their own");

        // A restart restores the day's sources: a third is still over the budget.
        let state = TaskState {
            checkpoint: flush.checkpoint,
            admitted: flush
                .rows
                .iter()
                .filter_map(|r| Admission::of_row(r.family, &r.tenant_id, &r.dims, r.window_start))
                .collect(),
            ..Default::default()
        };
        let mut resumed = Task::resume("salestalk.tenant", 0, settings, state);
        feed(
            &mut resumed,
            &[
                (12, T0, from(12, "a", "svc-9")),
                (13, T0, from(13, "a", "svc-1")),
            ],
        );
        let again = resumed.flush(T0);
        let sources: Vec<&str> = again
            .rows
            .iter()
            .filter(|r| r.family == Family::Volume && r.span == Span::Minute && r.tenant_id == "a")
            .map(|r| r.dims[1].as_str())
            .collect();
        assert!(
            sources.contains(&OVERFLOW_VALUE) && sources.contains(&"svc-1"),
            "{sources:?}"
        );
        assert!(!sources.contains(&"svc-9"), "{sources:?}");
    }

    #[test]
    fn a_payload_naming_another_tenant_is_dead_lettered() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let spec = include_str!("../../contracts/tests/corpus/spec-examples.jsonl");
        let provisioned = spec
            .lines()
            .find(|line| line.contains("tenant.provisioned.v1"))
            .expect("tenant.provisioned example");
        let mut value: serde_json::Value = serde_json::from_str(provisioned).expect("json");
        value["data"]["tenantId"] = serde_json::json!("tenant-other");
        feed(&mut task, &[(0, T0, value.to_string().into_bytes())]);
        let flush = task.flush(T0);
        assert_eq!(flush.dead_letters.len(), 1);
        let letter = &flush.dead_letters[0];
        assert_eq!(letter.reason, DeadLetterReason::SchemaViolation);
        assert!(letter.error.contains("/data/tenantId"), "{}", letter.error);
        assert!(flush.archive.is_empty());
    }

    #[test]
    fn a_resumed_task_writes_epochs_above_anything_its_previous_owner_wrote() {
        let state = TaskState {
            checkpoint: Checkpoint {
                epoch: 7,
                ..Checkpoint::default()
            },
            ..TaskState::default()
        };
        let mut task = Task::resume("salestalk.tenant", 0, settings(), state);
        // The previous owner's flush 8 may still land: the new owner's first flush outranks it.
        let first = task.flush(T0);
        assert_eq!(first.checkpoint.epoch, (1 << 32) + 1);
        let state = TaskState {
            checkpoint: first.checkpoint,
            ..TaskState::default()
        };
        let again = Task::resume("salestalk.tenant", 0, settings(), state).flush(T0);
        assert_eq!(again.checkpoint.epoch, (2 << 32) + 1);
    }

    #[test]
    fn a_task_resumed_in_a_claimed_generation_writes_its_epochs() {
        let state = TaskState {
            checkpoint: Checkpoint {
                epoch: (1 << 32) + 9,
                ..Checkpoint::default()
            },
            // Another owner holds generation 2 (it resumed from the same checkpoint and stalled).
            generation: Some(3),
            ..TaskState::default()
        };
        let first = Task::resume("salestalk.tenant", 0, settings(), state).flush(T0);
        assert_eq!(first.checkpoint.epoch, (3 << 32) + 1);
        // A claim below the checkpoint's own generation cannot take writes backwards.
        let state = TaskState {
            checkpoint: first.checkpoint,
            generation: Some(1),
            ..TaskState::default()
        };
        let again = Task::resume("salestalk.tenant", 0, settings(), state).flush(T0);
        assert_eq!(again.checkpoint.epoch, (4 << 32) + 1);
    }

    #[test]
    fn a_resumed_task_s_first_flush_writes_every_restored_row_again_under_its_generation() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        feed(&mut task, &[(0, T0, event(1, T0, "a"))]);
        let flushed = task.flush(T0 + 1000);
        assert!(
            flushed.rows.len() > 3,
            "minute, hour and day rows of several families"
        );
        let state = TaskState {
            checkpoint: flushed.checkpoint,
            rows: flushed.rows.clone(),
            generation: Some(5),
            ..TaskState::default()
        };
        let mut resumed = Task::resume("salestalk.tenant", 0, settings(), state);
        // No new events: a stalled former owner may rewrite any of these rows after the
        // restore, and only a copy under the new generation outranks it once merged.
        let first = resumed.flush(T0 + 2000);
        assert_eq!(first.checkpoint.epoch, (5 << 32) + 1);
        let key = |r: &StateRow| {
            format!(
                "{:?}",
                (r.family, r.span, r.window_start, &r.tenant_id, &r.dims)
            )
        };
        let mut expected = flushed.rows;
        let mut written = first.rows;
        expected.sort_by_key(key);
        written.sort_by_key(key);
        assert_eq!(written, expected);
        assert!(resumed.flush(T0 + 3000).rows.is_empty(), "once only");
    }

    #[test]
    fn processing_stops_at_half_a_flush_s_rows_and_goes_on_after_the_flush() {
        let mut task =
            Task::new("salestalk.tenant", 0, settings(), Checkpoint::default()).with_flush_rows(40);
        // Each event of a new tenant opens rows in several families at three spans.
        let messages: Vec<(i64, i64, Vec<u8>)> = (0..30)
            .map(|i| (i, T0, event(i as u32, T0, &format!("t{i}"))))
            .collect();
        let mut flushes = Vec::new();
        while task.checkpoint().next_offset < 30 {
            feed(&mut task, &messages);
            let full = task.is_full();
            let flush = task.flush(T0 + 1000);
            assert!(flush.rows.len() <= 40, "{} rows", flush.rows.len());
            assert!(full || task.checkpoint().next_offset == 30);
            flushes.push(flush);
        }
        assert!(flushes.len() > 3, "{} flushes", flushes.len());
        let archived: usize = flushes.iter().map(|f| f.archive.len()).sum();
        assert_eq!(archived, 30, "every event once, in order");
    }

    #[test]
    fn restored_rows_are_written_again_over_several_flushes_under_the_cap() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        let messages: Vec<(i64, i64, Vec<u8>)> = (0..20)
            .map(|i| (i, T0, event(i as u32, T0, &format!("t{i}"))))
            .collect();
        feed(&mut task, &messages);
        let flushed = task.flush(T0 + 1000);
        let state = TaskState {
            checkpoint: flushed.checkpoint,
            rows: flushed.rows.clone(),
            generation: Some(3),
            ..TaskState::default()
        };
        let mut resumed =
            Task::resume("salestalk.tenant", 0, settings(), state).with_flush_rows(25);
        let mut rewritten = Vec::new();
        while resumed.has_pending() {
            let flush = resumed.flush(T0 + 2000);
            assert!(flush.rows.len() <= 25);
            assert_eq!(crate::time::epoch::generation_of(flush.checkpoint.epoch), 3);
            rewritten.extend(flush.rows);
        }
        assert_eq!(
            rewritten.len(),
            flushed.rows.len(),
            "each restored row once"
        );
    }

    #[test]
    fn flushes_carry_only_changed_rows_and_advance_the_epoch() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        feed(&mut task, &[(0, T0, event(1, T0, "a"))]);
        let first = task.flush(T0 + 1000);
        assert_eq!(first.checkpoint.epoch, 1);
        assert!(
            first
                .rows
                .iter()
                .any(|r| r.family == Family::Latency && r.dims[1] == consumers::METRICS)
        );
        let second = task.flush(T0 + 2000);
        assert_eq!(second.checkpoint.epoch, 2);
        assert!(second.rows.is_empty() && second.archive.is_empty());
    }

    #[test]
    fn final_windows_leave_memory_after_their_flush() {
        let mut task = Task::new("salestalk.tenant", 0, settings(), Checkpoint::default());
        feed(&mut task, &[(0, T0, event(1, T0, "a"))]);
        task.flush(T0);
        feed(
            &mut task,
            &[(1, T0 + 20 * MINUTE, event(2, T0 + 20 * MINUTE, "a"))],
        );
        task.flush(T0 + 20 * MINUTE);
        assert_eq!(volume(&mut task, T0, "a"), 0, "evicted");
        assert_eq!(volume(&mut task, T0 + 20 * MINUTE, "a"), 1);
        // No hour is held: the flush that makes one final names it, to be sealed from the
        // durable minutes (ADR 0023), and names it again until told it was.
        let lateness = settings().allowed_lateness_ms;
        let first_open_hour = |at_ms: i64| Span::Hour.start(window_start(at_ms - lateness));
        feed(
            &mut task,
            &[(2, T0 + 70 * MINUTE, event(3, T0 + 70 * MINUTE, "a"))],
        );
        let flush = task.flush(T0 + 70 * MINUTE);
        let due = flush.seal.expect("an hour became final");
        assert_eq!(
            due.hours,
            (first_open_hour(T0), first_open_hour(T0 + 70 * MINUTE))
        );
        assert!(due.hours.0 < due.hours.1);
        assert_eq!(task.flush(T0 + 70 * MINUTE).seal, Some(due));
        task.sealed(&due);
        assert_eq!(task.flush(T0 + 70 * MINUTE).seal, None);
        assert_eq!(
            task.flush(T0 + 70 * MINUTE).checkpoint.sealed_hours_before,
            Some(due.hours.1)
        );
    }

    #[test]
    fn an_offset_a_sink_refused_is_dead_lettered_on_replay_and_not_counted() {
        let refused = Rejection {
            reason: DeadLetterReason::SinkRejected,
            error: "Code: 395".into(),
            attempts: 3,
        };
        let state = TaskState {
            refused: vec![(1, refused)],
            ..TaskState::default()
        };
        let mut task = Task::resume("salestalk.tenant", 0, settings(), state);
        feed(
            &mut task,
            &[
                (0, T0, event(1, T0, "a")),
                (1, T0, event(2, T0, "a")),
                (2, T0, event(3, T0, "a")),
            ],
        );
        assert_eq!(volume(&mut task, T0, "a"), 2);
        let flush = task.flush(T0 + 1000);
        let archived: Vec<i64> = flush.archive.iter().map(|e| e.offset).collect();
        assert_eq!(archived, [0, 2]);
        assert_eq!(flush.dead_letters.len(), 1);
        let letter = &flush.dead_letters[0];
        assert_eq!(
            (letter.offset, letter.reason, letter.tenant_id.as_str()),
            (1, DeadLetterReason::SinkRejected, "a")
        );
        assert_eq!(letter.event_id, "00000000-0000-4000-8000-000000000002");
        assert_eq!(letter.attempts, 3, "the attempts the sink made");
        // Refusals below the checkpoint are history: they change nothing.
        let state = TaskState {
            checkpoint: flush.checkpoint,
            refused: vec![(
                1,
                Rejection::at_once(DeadLetterReason::SinkRejected, String::new()),
            )],
            ..TaskState::default()
        };
        let later = Task::resume("salestalk.tenant", 0, settings(), state);
        assert!(later.refused.is_empty());
    }

    #[test]
    fn messages_below_the_checkpoint_are_not_counted_again() {
        let checkpoint = Checkpoint {
            next_offset: 5,
            ..Checkpoint::default()
        };
        let mut task = Task::new("salestalk.tenant", 0, settings(), checkpoint);
        feed(
            &mut task,
            &[(4, T0, event(1, T0, "a")), (5, T0, event(2, T0, "a"))],
        );
        assert_eq!(volume(&mut task, T0, "a"), 1);
        assert_eq!(task.checkpoint().next_offset, 6);
    }
}
