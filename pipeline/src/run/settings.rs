//! `[pipeline]` and `[graph]`: how the runtime batches, flushes and bounds memory, the time
//! rules of every task, and the aggregates each task runs.

use salestalk_operators::SourceKind;
use salestalk_operators::aggregate::Aggregates;
use salestalk_operators::dedup::BYTES_PER_ID;
use serde::Deserialize;

/// `[pipeline]`: batching, flushing, time rules and the memory bound.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PipelineSettings {
    /// Most messages per batch.
    pub batch_size: usize,
    /// Longest wait for a partial batch, in milliseconds.
    pub batch_timeout_ms: u64,
    /// How often results are made durable, in milliseconds.
    pub flush_interval_ms: u64,
    /// How far behind the watermark an event may be and still correct its window.
    pub allowed_lateness_ms: i64,
    /// How far ahead of the broker an event timestamp may be and still be trusted.
    pub max_future_skew_ms: i64,
    /// How long (event time) an `eventId` is remembered.
    pub dedup_horizon_ms: i64,
    /// Memory (MiB) an instance gives remembered `eventId`s (24 bytes each, ADR 0020), shared
    /// evenly among the partitions it owns ([`PipelineSettings::dedup_caps`]).
    pub dedup_memory_mib: usize,
    /// The share (percent) of a partition's ids one tenant may hold.
    pub dedup_tenant_share_percent: usize,
    /// Raw bytes held for the next flush before it is started early.
    pub max_pending_bytes: usize,
    /// Most window rows one flush writes in one state insert (the commit point stays one
    /// block, one part, all or nothing): a task stops processing at half of it until flushed.
    pub max_flush_rows: usize,
    /// Distinct new enum values admitted per tenant, field and UTC day; the rest are counted
    /// under `_overflow` (docs/guarantees.md, "Hostile input").
    pub max_new_enum_values: usize,
    /// Distinct producer `source`s a tenant's rows name per UTC day; the rest are counted
    /// under `_overflow` (docs/guarantees.md, "Hostile input").
    pub max_sources_per_day: usize,
    /// Threads a batch's partitions are processed on; 0 for one per core.
    pub workers: usize,
    /// Whether reading and processing go on while a flush is written (one flush in flight).
    pub overlap_flush: bool,
    /// Where events are read from: `kafka`, `kinesis`, or both.
    pub sources: Vec<String>,
    /// How long the driver loop may go without progress before `/health/live` fails, ms.
    pub stall_after_ms: u64,
    /// How long a partition read to its end may receive nothing before its clocks run on
    /// with this machine's, so its hours become final and are sealed (ADR 0023), ms; 0 never.
    pub idle_after_ms: u64,
}

/// Fewest ids a task remembers whatever the budget: with thousands of partitions on one
/// instance the budget is exceeded rather than dedup turned off.
pub const MIN_DEDUP_IDS: usize = 1_000;

impl PipelineSettings {
    /// The dedup caps of each of `tasks` tasks owned by one instance: the budget's ids split
    /// evenly (at least [`MIN_DEDUP_IDS`]), and one tenant's share of a task's. The runtime
    /// applies them again whenever the partitions it owns change (ADR 0020).
    pub fn dedup_caps(&self, tasks: usize) -> (usize, usize) {
        let budget_ids = self.dedup_memory_mib.saturating_mul(1 << 20) / BYTES_PER_ID;
        let ids = (budget_ids / tasks.max(1)).max(MIN_DEDUP_IDS);
        let share = ids.saturating_mul(self.dedup_tenant_share_percent) / 100;
        (ids, share.max(1))
    }

    /// The kinds of source `sources` names (each once; unknown names are a start-up problem).
    pub fn source_kinds(&self) -> Vec<SourceKind> {
        SourceKind::ALL
            .into_iter()
            .filter(|kind| self.sources.iter().any(|name| name == kind.name()))
            .collect()
    }

    /// Whether the pipeline reads `kind`.
    pub fn reads(&self, kind: SourceKind) -> bool {
        self.source_kinds().contains(&kind)
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut within = |key: &str, value: i64, range: std::ops::RangeInclusive<i64>| {
            if !range.contains(&value) {
                problems.push(format!(
                    "pipeline.{key}: {value} is outside {}..={}",
                    range.start(),
                    range.end()
                ));
            }
        };
        within(
            "max_pending_bytes",
            self.max_pending_bytes as i64,
            1 << 20..=1 << 34,
        );
        within(
            "flush_interval_ms",
            self.flush_interval_ms as i64,
            10..=600_000,
        );
        within("batch_size", self.batch_size as i64, 1..=1_000_000);
        within(
            "stall_after_ms",
            self.stall_after_ms as i64,
            10_000..=3_600_000,
        );
        within(
            "max_flush_rows",
            self.max_flush_rows as i64,
            100..=salestalk_operators::task::MAX_FLUSH_ROWS as i64,
        );
        within(
            "max_new_enum_values",
            self.max_new_enum_values as i64,
            1..=100_000,
        );
        within(
            "max_sources_per_day",
            self.max_sources_per_day as i64,
            1..=100_000,
        );
        within("batch_timeout_ms", self.batch_timeout_ms as i64, 1..=60_000);
        if self.idle_after_ms != 0 {
            within(
                "idle_after_ms",
                self.idle_after_ms as i64,
                60_000..=86_400_000,
            );
        }
        within("workers", self.workers as i64, 0..=1024);
        within(
            "dedup_memory_mib",
            self.dedup_memory_mib as i64,
            1..=1 << 20,
        );
        within(
            "dedup_tenant_share_percent",
            self.dedup_tenant_share_percent as i64,
            1..=100,
        );
        if self.sources.is_empty() {
            problems.push("pipeline.sources: name at least one of kafka, kinesis".into());
        }
        for (i, name) in self.sources.iter().enumerate() {
            if SourceKind::parse(name).is_none() {
                problems.push(format!(
                    "pipeline.sources: '{name}' is not a source (kafka, kinesis)"
                ));
            } else if self.sources[..i].contains(name) {
                problems.push(format!("pipeline.sources: '{name}' is listed twice"));
            }
        }
        for (key, value) in [
            ("allowed_lateness_ms", self.allowed_lateness_ms),
            ("max_future_skew_ms", self.max_future_skew_ms),
            ("dedup_horizon_ms", self.dedup_horizon_ms),
        ] {
            if !(0..=30 * 86_400_000).contains(&value) {
                problems.push(format!(
                    "pipeline.{key}: {value} is outside 0..=2592000000 (30 days)"
                ));
            }
        }
        problems
    }
}

/// `[graph]`: the operators each task runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GraphSettings {
    /// The windowed aggregates, checked against the built-in ones.
    pub aggregates: Aggregates,
}
