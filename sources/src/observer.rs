//! What a source tells the process about its reading, like the sinks' `SinkObserver`: the
//! binary's telemetry implements it, tools and tests observe nothing.

use salestalk_operators::SourcePartition;

/// The gauges of one partition that a Kinesis lag sample reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionGauges {
    /// Reads throttled so far.
    pub throttled_reads: u64,
    /// Records read and not yet durable.
    pub unread: i64,
    /// How far behind the newest record the reader is, ms.
    pub millis_behind: i64,
}

/// Hears what sources do; every method is cheap and never fails.
pub trait SourceObserver: Send + Sync {
    /// Reading failed (the consumer reported an error; it retries by itself).
    fn read_failed(&self);
    /// A read of `partition` was throttled.
    fn read_throttled(&self, partition: &SourcePartition);
    /// The reader of `partition` is `millis` behind the newest record.
    fn millis_behind(&self, partition: &SourcePartition, millis: i64);
    /// The gauges of `partition` now.
    fn gauges(&self, partition: &SourcePartition) -> PartitionGauges;
}

/// Observes nothing (tools and tests).
#[derive(Debug, Default)]
pub struct Unobserved;

impl SourceObserver for Unobserved {
    fn read_failed(&self) {}
    fn read_throttled(&self, _: &SourcePartition) {}
    fn millis_behind(&self, _: &SourcePartition, _: i64) {}
    fn gauges(&self, _: &SourcePartition) -> PartitionGauges {
        PartitionGauges::default()
    }
}
