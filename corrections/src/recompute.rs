//! Recomputing the metrics of archived events with the same operators the pipeline runs: what
//! `salestalk replay run --to-database` feeds a separate database with. Each archived event is
//! given again to a task of the partition it was read from, with its broker second, so it
//! lands in the same windows, with the same dimensions, as when it was counted. Offsets are
//! the task's own count (a task reads offsets in order, and the archive is paged by tenant).
//!
//! A correction of a past day (ADR 0016, [`crate::corrections`]) recomputes only the families
//! of the events themselves (`Family::counts_events`): the publish, dead-letter and late-arrival
//! families and latency describe what happened to messages when they arrived, which a
//! correction does not change. It also counts the events dead-lettered as `late` before late
//! events were archived, each once even where the archive holds a copy from another partition.
//!
//! Three things differ from a live run, on purpose. Nothing is late: the archive holds only
//! events that were counted (or redriven and counted), so the lateness rule, which decided
//! that when they arrived, is not applied again (the events come in (tenant, eventId) order,
//! not in time order). Latency is not recomputed: it measured the live run. And the publish
//! and dead-letter families count the archived events only (the archive keeps valid events).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use salestalk_contracts::EventId;
use salestalk_operators::aggregate::{Aggregates, Family};
use salestalk_operators::flush::Flush;
use salestalk_operators::message::{PublishPath, RawMessage};
use salestalk_operators::routing::RoutingTable;
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_store::tables::dead_letters::LateLetter;
use salestalk_store::tables::events_raw::ArchivedCopy;

use crate::error::CorrectionError;
use crate::settings::CorrectorSettings;

/// How late an archived event may be and still count, and how long an id is remembered: far
/// beyond the archive's 90 days (events come in any order, and each must count once).
const NEVER_MS: i64 = 10 * 365 * 86_400_000;

/// Most ids a task remembers: every id of the selection.
const EVERY_ID: usize = usize::MAX >> 1;

/// What a recomputation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Every metric into a separate database (latency excepted).
    Database,
    /// The live families of the events themselves, corrected (ADR 0016).
    Correction,
}

impl Purpose {
    /// Whether it recomputes the rows of `family`.
    fn recomputes(self, family: Family) -> bool {
        match self {
            Self::Database => family != Family::Latency,
            Self::Correction => family.counts_events(),
        }
    }
}

/// Tasks fed from the archive, one per source partition.
pub struct Recomputation {
    settings: TaskSettings,
    aggregates: Aggregates,
    routing: Arc<RoutingTable>,
    /// Each partition's task, and the next offset it is given.
    tasks: BTreeMap<(String, i32), (Task, i64)>,
    purpose: Purpose,
    /// Events fed since the start.
    pub events: u64,
    /// Events fed that had arrived after their window was final.
    pub late: u64,
    /// The (tenant, eventId) pairs fed, so an event reaches one task only: the archive gives
    /// each once, but a dead letter of it may sit in another partition.
    fed: HashSet<(String, EventId)>,
}

impl Recomputation {
    /// A recomputation with the configured operators (`graph.aggregates`, less what `purpose`
    /// leaves out) and routing (which events the metrics count).
    pub fn new(settings: &CorrectorSettings, purpose: Purpose) -> Result<Self, CorrectionError> {
        let names: Vec<&str> = settings
            .aggregates
            .iter()
            .copied()
            .filter(|name| {
                Family::ALL
                    .into_iter()
                    .any(|f| f.layout().name == *name && purpose.recomputes(f))
            })
            .collect();
        let aggregates = Aggregates::from_names(&names).map_err(|problems| {
            CorrectionError::Settings(format!("aggregates: {}", problems.join("; ")))
        })?;
        let routing = RoutingTable::compile(&settings.routing).map_err(|problems| {
            CorrectionError::Settings(format!("routing: {}", problems.join("; ")))
        })?;
        Ok(Self {
            settings: TaskSettings {
                allowed_lateness_ms: NEVER_MS,
                dedup_horizon_ms: NEVER_MS,
                dedup_max_ids: EVERY_ID,
                dedup_max_ids_per_tenant: EVERY_ID,
                ..settings.task
            },
            aggregates,
            routing: Arc::new(routing),
            tasks: BTreeMap::new(),
            purpose,
            events: 0,
            late: 0,
            fed: HashSet::new(),
        })
    }

    /// Feeds `event` to its partition's task.
    pub fn feed(&mut self, event: &ArchivedCopy) {
        // Only a correction mixes in dead letters; the archive alone gives each event once.
        if self.purpose == Purpose::Correction
            && !self.fed.insert((event.tenant_id.clone(), event.event_id))
        {
            return;
        }
        self.late += u64::from(event.late);
        // The archive keeps the broker second. A trusted timestamp stays trusted at the end of
        // that second, an untrusted one stays untrusted at its start: the task decides skew
        // (and the broker minute) as it did.
        let second_ms = i64::from(event.broker_time) * 1000;
        let broker_ms = if event.clock_skewed == 1 {
            second_ms
        } else {
            second_ms + 999
        };
        self.give(&event.topic, event.partition, broker_ms, &event.raw);
    }

    /// Feeds a late event's dead letter to its partition's task (a late event was stamped
    /// long before its broker time, so it is trusted: the end of its broker second).
    pub fn feed_late(&mut self, letter: &LateLetter) {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Identity {
            tenant_id: String,
            event_id: EventId,
        }
        // A letter that is not an event is dead-lettered again by the task, as it was live.
        if let Ok(who) = serde_json::from_slice::<Identity>(&letter.raw)
            && !self.fed.insert((who.tenant_id, who.event_id))
        {
            return;
        }
        self.late += 1;
        let broker_ms = i64::from(letter.broker_time) * 1000 + 999;
        self.give(&letter.topic, letter.partition, broker_ms, &letter.raw);
    }

    /// The partitions fed so far.
    pub fn partitions(&self) -> impl Iterator<Item = &(String, i32)> {
        self.tasks.keys()
    }

    fn give(&mut self, topic: &str, partition: i32, broker_ms: i64, raw: &[u8]) {
        let key = (topic.to_string(), partition);
        let (task, offset) = self.tasks.entry(key).or_insert_with(|| {
            let task = Task::new(topic, partition, self.settings, Default::default())
                .with_aggregates(self.aggregates.clone())
                .with_routing(Some(Arc::clone(&self.routing)));
            (task, 0)
        });
        task.process(&[RawMessage {
            topic,
            partition,
            offset: *offset,
            timestamp_ms: Some(broker_ms),
            payload: Some(raw),
            path: PublishPath::Direct,
            sequence: None,
        }]);
        *offset += 1;
        self.events += 1;
    }

    /// Everything the tasks produced since the last flush, as of `durable_at_ms`.
    pub fn flush(&mut self, durable_at_ms: i64) -> Vec<Flush> {
        self.tasks
            .values_mut()
            .map(|(task, _)| task.flush(durable_at_ms))
            .collect()
    }
}
