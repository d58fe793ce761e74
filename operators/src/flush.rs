//! What a task hands to the sinks, and what it resumes from: the schema between the operators
//! and storage.
//!
//! [`Flush`] is everything one task produced since its last flush: the window rows it
//! changed, the events to archive, the messages to dead-letter, and the [`Checkpoint`] that
//! goes in the same atomic insert as the rows (ADR 0004). [`TaskState`] is the same facts read
//! back: a restarted task is rebuilt from it by [`Task::resume`](crate::task::Task::resume),
//! so storage never builds operators.

use bytes::Bytes;
use salestalk_contracts::{EventId, EventType};

use crate::aggregate::Family;
use crate::dead_letter::DeadLetterReason;
use crate::dedup::CountedIds;
use crate::new_values::Admission;
use crate::windows::{Span, WindowValue, first_open_window};

/// Names of the graph's consumers, as latency and errors are reported per consumer.
pub mod consumers {
    /// The window-state (metrics) table.
    pub const METRICS: &str = "clickhouse.metrics";
    /// The raw event archive.
    pub const ARCHIVE: &str = "clickhouse.archive";
    /// The dead-letter table.
    pub const DEAD_LETTERS: &str = "clickhouse.dead_letters";
    /// The dead-letter topic.
    pub const DLQ_TOPIC: &str = "kafka.dlq";
}

/// Where a task is: stored with its window rows in one atomic insert.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The next offset to read.
    pub next_offset: i64,
    /// The source's own position of the last message read, when offsets are the task's own
    /// count (a Kinesis sequence number: up to 129 digits, so text); empty for Kafka, whose
    /// offsets are the broker's.
    pub sequence: String,
    /// Largest trusted event time seen (Unix ms).
    pub event_watermark_ms: Option<i64>,
    /// Largest broker timestamp seen (Unix ms).
    pub broker_watermark_ms: Option<i64>,
    /// Flush counter; window rows carry the epoch that wrote them.
    pub epoch: u64,
    /// Every hour starting before this (Unix s) is sealed: its rows are written from durable
    /// minutes (ADR 0023), or were written by the task itself before sealing existed. `None`
    /// until the task has a watermark.
    pub sealed_hours_before: Option<i64>,
    /// Likewise for days, sealed from their hours.
    pub sealed_days_before: Option<i64>,
}

/// The windows of one task to seal once its flush has landed (ADR 0023): the hours starting
/// in `hours` and the days starting in `days` (Unix s, half-open), all of them final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Hours to seal, from their minutes.
    pub hours: (i64, i64),
    /// Days to seal, from their hours (all of them sealed by then).
    pub days: (i64, i64),
}

impl Checkpoint {
    /// The first hour and the first day (Unix s) that may still change, by both clocks;
    /// `None` until both have a watermark: before its first watermark a clock may still open
    /// rows at any time, however far back (a backfill's first valid event after dead letters).
    pub fn first_open_rollups(&self, allowed_lateness_ms: i64) -> Option<(i64, i64)> {
        let (Some(_), Some(_)) = (self.event_watermark_ms, self.broker_watermark_ms) else {
            return None;
        };
        let open = self.first_open_window(allowed_lateness_ms);
        Some((Span::Hour.start(open), Span::Day.start(open)))
    }

    /// Lowers the seals to the hour and day holding `open` (Unix s): the first open minute of
    /// a clock that just got its first watermark (no row of the task can be earlier), or of a
    /// checkpoint stored before sealing, whose earlier rollups its task wrote itself. Called
    /// before any seal, so nothing sealed is ever reopened.
    pub fn seals_start_at(&mut self, open: i64) {
        let lowest = |mark: Option<i64>, start: i64| Some(mark.map_or(start, |m| m.min(start)));
        self.sealed_hours_before = lowest(self.sealed_hours_before, Span::Hour.start(open));
        self.sealed_days_before = lowest(self.sealed_days_before, Span::Day.start(open));
    }

    /// What became final since the last seal; `None` when nothing is due, or before both
    /// clocks have a watermark.
    pub fn seal_due(&self, allowed_lateness_ms: i64) -> Option<Seal> {
        let (hours_open, days_open) = self.first_open_rollups(allowed_lateness_ms)?;
        let (hours_from, days_from) = (self.sealed_hours_before?, self.sealed_days_before?);
        (hours_from < hours_open || days_from < days_open).then_some(Seal {
            hours: (hours_from, hours_open.max(hours_from)),
            days: (days_from, days_open.max(days_from)),
        })
    }

    /// Records a seal that landed: the next checkpoint says so.
    pub fn sealed(&mut self, seal: &Seal) {
        self.sealed_hours_before = self.sealed_hours_before.max(Some(seal.hours.1));
        self.sealed_days_before = self.sealed_days_before.max(Some(seal.days.1));
    }

    /// The first minute window (Unix s) any of the task's rows may still change in: rows of
    /// earlier windows are final, so a restore reads only rows from here on.
    pub fn first_open_window(&self, allowed_lateness_ms: i64) -> i64 {
        first_open_window(self.event_watermark_ms, allowed_lateness_ms).min(first_open_window(
            self.broker_watermark_ms,
            allowed_lateness_ms,
        ))
    }

    /// The first minute window (Unix s) the task may still write a row of, at any span: its
    /// first open minute, or the start of the first day it has not sealed if that is earlier.
    /// A final minute's hour and day rows are written by a seal that lands later (ADR 0023),
    /// so a correction of the day (ADR 0016) waits for it: one made between the two would
    /// leave the seal's rows of keys it moved to another task beside its own. A checkpoint
    /// stored before sealing has no marks: its task wrote every rollup row itself.
    pub fn first_unsettled_window(&self, allowed_lateness_ms: i64) -> i64 {
        let open = self.first_open_window(allowed_lateness_ms);
        self.sealed_days_before.map_or(open, |day| open.min(day))
    }
}

/// A valid event as the raw archive keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedEvent {
    /// `eventId`.
    pub event_id: EventId,
    /// `tenantId`.
    pub tenant_id: String,
    /// `eventType`.
    pub event_type: EventType,
    /// `source`.
    pub source: String,
    /// `eventVersion`.
    pub event_version: String,
    /// `userId`, or empty.
    pub user_id: String,
    /// `sessionId`, or empty.
    pub session_id: String,
    /// `metadata.correlationId`.
    pub correlation_id: String,
    /// `metadata.causationId`, if any.
    pub causation_id: Option<EventId>,
    /// `metadata.traceId`, or empty.
    pub trace_id: String,
    /// Event time, Unix ms, as stamped.
    pub timestamp_ms: i64,
    /// Start of the window it was counted in (Unix s).
    pub window_start: i64,
    /// Whether its timestamp was too far ahead of the broker's and was not trusted.
    pub clock_skewed: bool,
    /// Whether it came after its window was final: archived, not counted live, and counted by
    /// the correction of its day (ADR 0016).
    pub late: bool,
    /// Source offset.
    pub offset: i64,
    /// Broker timestamp, Unix ms.
    pub broker_ms: i64,
    /// The message as received: a slice of a chunk the task shares among many events.
    pub raw: Bytes,
    /// [`crate::dedup::content_fingerprint`] of `raw`: what a later copy is compared with,
    /// also after a restore from the archive.
    pub fingerprint: u32,
}

impl ArchivedEvent {
    /// The dead letter of this event once a sink has refused it for good.
    pub fn refused(&self, rejection: Rejection) -> DeadLetter {
        DeadLetter::new(
            Address {
                offset: self.offset,
                broker_ms: self.broker_ms,
            },
            Readable {
                tenant: &self.tenant_id,
                event_type: self.event_type.as_str(),
                event_id: &self.event_id.to_string(),
                correlation_id: &self.correlation_id,
                ..Readable::default()
            },
            rejection,
            self.raw.to_vec(),
        )
    }
}

/// Why a message leaves the normal path, and how hard delivery was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason, from the taxonomy.
    pub reason: DeadLetterReason,
    /// The details (the violations, why it was late, or the sink's error).
    pub error: String,
    /// Attempts made before giving up (1 for a message refused at once).
    pub attempts: u32,
}

impl Rejection {
    /// A message refused at the first look.
    pub fn at_once(reason: DeadLetterReason, error: String) -> Self {
        Self {
            reason,
            error,
            attempts: 1,
        }
    }
}

/// Where a message sits in its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Source offset.
    pub offset: i64,
    /// Broker timestamp, Unix ms.
    pub broker_ms: i64,
}

/// What could be read of a message's envelope (`""` where nothing could).
#[derive(Debug, Clone, Copy, Default)]
pub struct Readable<'a> {
    /// `tenantId`.
    pub tenant: &'a str,
    /// `source` (counted in the publish family; not kept in the dead letter).
    pub source: &'a str,
    /// `eventType`.
    pub event_type: &'a str,
    /// `eventId`, as written.
    pub event_id: &'a str,
    /// `metadata.correlationId`.
    pub correlation_id: &'a str,
}

/// A message that left the normal path.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Source offset.
    pub offset: i64,
    /// Broker timestamp, Unix ms.
    pub broker_ms: i64,
    /// Why.
    pub reason: DeadLetterReason,
    /// The details (every violation, or why it was late).
    pub error: String,
    /// Tenant, when readable.
    pub tenant_id: String,
    /// Event type, when readable.
    pub event_type: String,
    /// `eventId`, when readable.
    pub event_id: String,
    /// Attempts made to deliver it before it was given up (1 for a message refused at once).
    pub attempts: u32,
    /// The message as received.
    pub raw: Vec<u8>,
    /// The source's own position of the message (a Kinesis sequence number; empty for
    /// Kafka, whose offset is the broker's).
    pub sequence: String,
    /// `metadata.correlationId`, when readable.
    pub correlation_id: String,
}

impl DeadLetter {
    /// The one way a dead letter is made: where it was, what was readable, why, and its bytes.
    pub fn new(at: Address, readable: Readable<'_>, rejection: Rejection, raw: Vec<u8>) -> Self {
        Self {
            offset: at.offset,
            broker_ms: at.broker_ms,
            reason: rejection.reason,
            error: rejection.error,
            tenant_id: readable.tenant.to_string(),
            event_type: readable.event_type.to_string(),
            event_id: readable.event_id.to_string(),
            attempts: rejection.attempts,
            raw,
            sequence: String::new(),
            correlation_id: readable.correlation_id.to_string(),
        }
    }
}

/// A window row ready for storage, with its strings resolved; also what a restore reads back.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    /// Its family.
    pub family: Family,
    /// How long its window lasts.
    pub span: Span,
    /// Window start, Unix s.
    pub window_start: i64,
    /// Tenant.
    pub tenant_id: String,
    /// Dimensions.
    pub dims: [String; 3],
    /// The full value of the window so far.
    pub value: WindowValue,
}

/// Everything one flush of one task must make durable.
#[derive(Debug, Clone, PartialEq)]
pub struct Flush {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// The checkpoint the rows below complete.
    pub checkpoint: Checkpoint,
    /// Window rows changed since the last flush.
    pub rows: Vec<StateRow>,
    /// Events to archive.
    pub archive: Vec<ArchivedEvent>,
    /// Messages to dead-letter.
    pub dead_letters: Vec<DeadLetter>,
    /// Messages read since the last flush.
    pub messages: u64,
    /// Of those, resends of events already counted.
    pub duplicates: u64,
    /// Windows that became final, to seal once this flush has landed (ADR 0023).
    pub seal: Option<Seal>,
}

/// What a task's earlier flushes made durable, read back to resume it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskState {
    /// The last checkpoint (the default for a partition never flushed).
    pub checkpoint: Checkpoint,
    /// The latest value of every row that may still change
    /// (from [`Checkpoint::first_open_window`] on).
    pub rows: Vec<StateRow>,
    /// Events counted before the checkpoint, within the dedup horizon.
    pub seen: CountedIds,
    /// Messages at or after the checkpoint that a sink refused, by offset: a replay
    /// dead-letters them instead of counting them (ADR 0006).
    pub refused: Vec<(i64, Rejection)>,
    /// The generation the resuming owner claimed (its epochs start at `generation << 32`);
    /// `None`: the one after the checkpoint's.
    pub generation: Option<u64>,
    /// The values the task's budgets admitted on its open days.
    pub admitted: Vec<Admission>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATENESS_MS: i64 = 300_000;
    /// 2023-11-14 22:00:00 UTC, the start of an hour.
    const HOUR: i64 = 1_700_000_000 - 1_700_000_000 % 3_600;
    const DAY: i64 = HOUR - HOUR % 86_400;

    /// A task whose clocks got their first watermarks at `event_s` and `broker_s`.
    fn at(event_s: i64, broker_s: i64) -> Checkpoint {
        let mut checkpoint = Checkpoint::default();
        for at_s in [event_s, broker_s] {
            checkpoint.seals_start_at(first_open_window(Some(at_s * 1_000), LATENESS_MS));
        }
        checkpoint.event_watermark_ms = Some(event_s * 1_000);
        checkpoint.broker_watermark_ms = Some(broker_s * 1_000);
        checkpoint
    }

    #[test]
    fn nothing_is_sealed_before_a_watermark_and_nothing_open_counts_as_sealed() {
        assert_eq!(Checkpoint::default().seal_due(LATENESS_MS), None);
        // Half past: the hour is open, and what came before it was never this task's.
        let checkpoint = at(HOUR + 1_800, HOUR + 1_800);
        assert_eq!(checkpoint.seal_due(LATENESS_MS), None);
        assert_eq!(checkpoint.sealed_hours_before, Some(HOUR));
        assert_eq!(checkpoint.sealed_days_before, Some(DAY));
    }

    #[test]
    fn an_hour_is_due_once_its_last_minute_is_final_on_both_clocks_until_it_is_sealed() {
        let mut checkpoint = at(HOUR + 1_800, HOUR + 1_800);
        // Five minutes past the next hour: its first minute is still open under the lateness.
        checkpoint.event_watermark_ms = Some((HOUR + 3_600 + 299) * 1_000);
        checkpoint.broker_watermark_ms = checkpoint.event_watermark_ms;
        assert_eq!(checkpoint.seal_due(LATENESS_MS), None);
        checkpoint.event_watermark_ms = Some((HOUR + 3_600 + 300) * 1_000);
        // The broker clock lags: the hour of the rows it closes is not final yet.
        assert_eq!(checkpoint.seal_due(LATENESS_MS), None);
        checkpoint.broker_watermark_ms = checkpoint.event_watermark_ms;
        let due = Seal {
            hours: (HOUR, HOUR + 3_600),
            days: (DAY, DAY),
        };
        assert_eq!(checkpoint.seal_due(LATENESS_MS), Some(due));
        // A seal that did not land is due again with the next flush.
        assert_eq!(checkpoint.seal_due(LATENESS_MS), Some(due));
        checkpoint.sealed(&due);
        assert_eq!(checkpoint.seal_due(LATENESS_MS), None);
        assert_eq!(checkpoint.sealed_hours_before, Some(HOUR + 3_600));
    }

    #[test]
    fn a_day_is_settled_for_corrections_only_once_its_seal_is_recorded() {
        let mut checkpoint = at(HOUR + 1_800, HOUR + 1_800);
        let next_day = DAY + 86_400;
        // Both clocks well into the next day: every minute of the day is final...
        checkpoint.event_watermark_ms = Some((next_day + 7_200) * 1_000);
        checkpoint.broker_watermark_ms = checkpoint.event_watermark_ms;
        assert!(checkpoint.first_open_window(LATENESS_MS) > next_day);
        // ...but its hour and day rows are still to be written by the seal.
        assert_eq!(checkpoint.first_unsettled_window(LATENESS_MS), DAY);
        let due = checkpoint.seal_due(LATENESS_MS).expect("the day is due");
        checkpoint.sealed(&due);
        // The next day is the first with rows to come: the day is settled.
        assert_eq!(checkpoint.first_unsettled_window(LATENESS_MS), next_day);
        // A checkpoint stored before sealing: its task wrote its rollups itself.
        let mut legacy = checkpoint.clone();
        legacy.sealed_hours_before = None;
        legacy.sealed_days_before = None;
        assert_eq!(
            legacy.first_unsettled_window(LATENESS_MS),
            legacy.first_open_window(LATENESS_MS)
        );
    }

    #[test]
    fn seals_start_at_the_first_open_minute_of_either_clock() {
        // Dead letters first: the broker clock runs two days ahead of the first valid event,
        // whose rows must not fall before the seals.
        let mut checkpoint = Checkpoint::default();
        let broker_s = DAY + 2 * 86_400;
        checkpoint.seals_start_at(first_open_window(Some(broker_s * 1_000), LATENESS_MS));
        checkpoint.broker_watermark_ms = Some(broker_s * 1_000);
        assert_eq!(checkpoint.seal_due(LATENESS_MS), None, "one clock only");
        checkpoint.seals_start_at(first_open_window(Some((HOUR + 1_800) * 1_000), LATENESS_MS));
        checkpoint.event_watermark_ms = Some((HOUR + 1_800) * 1_000);
        assert_eq!(checkpoint.sealed_hours_before, Some(HOUR));
        // A first batch that moves the event clock a day on seals from where it started.
        checkpoint.event_watermark_ms = Some((DAY + 86_400 + 600) * 1_000);
        assert_eq!(
            checkpoint.seal_due(LATENESS_MS),
            Some(Seal {
                hours: (HOUR, DAY + 86_400),
                days: (DAY, DAY + 86_400),
            })
        );
    }
}
