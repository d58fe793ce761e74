//! Recomputing the metrics of archived events with the same operators the pipeline runs: what
//! `salestalk replay run --to-database` feeds a separate database with. Each archived event is
//! given again to a task of the partition it was read from, with its broker second, so it
//! lands in the same windows, with the same dimensions, as when it was counted. Offsets are
//! the task's own count (a task reads offsets in order, and the archive is paged by tenant).
//!
//! Three things differ from a live run, on purpose. Nothing is late: the archive holds only
//! events that were counted (or redriven and counted), so the lateness rule, which decided
//! that when they arrived, is not applied again (the events come in (tenant, eventId) order,
//! not in time order). Latency is not recomputed: it measured the live run. And the publish
//! and dead-letter families count the archived events only (the archive keeps valid events).

use std::collections::BTreeMap;
use std::sync::Arc;

use salestalk_operators::aggregate::Aggregates;
use salestalk_operators::flush::Flush;
use salestalk_operators::message::{PublishPath, RawMessage};
use salestalk_operators::routing::RoutingTable;
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_store::replay::ArchivedCopy;

use crate::runtime::task_settings;
use crate::settings::Settings;

/// How late an archived event may be and still count: far beyond the archive's 90 days.
const NEVER_LATE_MS: i64 = 10 * 365 * 86_400_000;

/// Tasks fed from the archive, one per source partition.
pub struct Recomputation {
    settings: TaskSettings,
    aggregates: Aggregates,
    routing: Arc<RoutingTable>,
    /// Each partition's task, and the next offset it is given.
    tasks: BTreeMap<(String, i32), (Task, i64)>,
    /// Events fed since the start.
    pub events: u64,
}

impl Recomputation {
    /// A recomputation with the configured operators (`graph.aggregates` without latency) and
    /// routing (which events the metrics count).
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let names: Vec<&str> = settings
            .graph
            .aggregates
            .names()
            .into_iter()
            .filter(|name| *name != "latency")
            .collect();
        let aggregates = Aggregates::from_names(&names)
            .map_err(|problems| anyhow::anyhow!("aggregates: {}", problems.join("; ")))?;
        let routing = RoutingTable::compile(&settings.routing)
            .map_err(|problems| anyhow::anyhow!("routing: {}", problems.join("; ")))?;
        Ok(Self {
            settings: TaskSettings {
                allowed_lateness_ms: NEVER_LATE_MS,
                ..task_settings(settings)
            },
            aggregates,
            routing: Arc::new(routing),
            tasks: BTreeMap::new(),
            events: 0,
        })
    }

    /// Feeds `event` to its partition's task.
    pub fn feed(&mut self, event: &ArchivedCopy) {
        let key = (event.topic.clone(), event.partition);
        let (task, offset) = self.tasks.entry(key).or_insert_with(|| {
            let task = Task::new(
                &event.topic,
                event.partition,
                self.settings,
                Default::default(),
            )
            .with_aggregates(self.aggregates.clone())
            .with_routing(Some(Arc::clone(&self.routing)));
            (task, 0)
        });
        // The archive keeps the broker second. A trusted timestamp stays trusted at the end of
        // that second, an untrusted one stays untrusted at its start: the task decides skew
        // (and the broker minute) as it did.
        let second_ms = i64::from(event.broker_time) * 1000;
        let broker_ms = if event.clock_skewed == 1 {
            second_ms
        } else {
            second_ms + 999
        };
        task.process(&[RawMessage {
            topic: &event.topic,
            partition: event.partition,
            offset: *offset,
            timestamp_ms: Some(broker_ms),
            payload: Some(&event.raw),
            path: PublishPath::Direct,
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
