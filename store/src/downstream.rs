//! The downstream consumer groups as the store keeps them: lag samples (`consumer_group_lag`,
//! read by the `consumer_lag` view and the SRE page; the pipeline samples its own partitions
//! there too, as groups `source.kafka` and `source.kinesis`, naming the owning instance) and the failures they report
//! (`consumer_failures`, part of `consumer_outcomes` as consumer `group.<name>`). Written by
//! `salestalk run`'s downstream watch (`pipeline/src/downstream`).

use clickhouse::Row;
use serde::Serialize;

use crate::{ClickHouseError, Endpoint};

/// One partition's lag of one group, as sampled.
#[derive(Debug, Clone, Row, Serialize)]
pub struct LagSample {
    /// The minute it was taken in (Unix s).
    pub minute: u32,
    /// The consumer group.
    pub consumer_group: String,
    /// The topic it reads.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Messages not yet committed.
    pub lag_messages: u64,
    /// Age of the oldest of them (ms; 0 when none).
    pub lag_ms: u64,
    /// When it was taken (Unix ms): the newest sample of a minute wins.
    pub measured_at_ms: u64,
    /// Reads the service throttled in the sample's minute so far (Kinesis shards; 0 for
    /// consumer groups).
    pub throttled: u64,
    /// The pipeline instance that owns the partition (its own partitions and Kinesis shards;
    /// empty for downstream consumer groups).
    pub instance: String,
}

/// One failure a consumer reported.
#[derive(Debug, Clone, Row, Serialize)]
pub struct FailureReport {
    /// The minute of the report record (Unix s).
    pub minute: u32,
    /// The reporting consumer group.
    pub consumer_group: String,
    /// The event's tenant.
    pub tenant_id: String,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// What the consumer said went wrong.
    pub error: String,
    /// The report record's partition (in the dead-letter topic).
    pub partition: i32,
    /// The report record's offset: with the partition, what makes a report read twice one.
    pub offset: i64,
}

impl Endpoint {
    /// Stores lag samples.
    pub async fn record_lag(&self, samples: &[LagSample]) -> Result<(), ClickHouseError> {
        self.insert_rows::<LagSample>("consumer_group_lag", samples)
            .await
    }

    /// Stores failure reports.
    pub async fn record_failure_reports(
        &self,
        reports: &[FailureReport],
    ) -> Result<(), ClickHouseError> {
        self.insert_rows::<FailureReport>("consumer_failures", reports)
            .await
    }
}
