//! `consumer_group_lag`: lag samples of the downstream consumer groups, read by the
//! `consumer_lag` view and the SRE page. The pipeline samples its own partitions there too, as
//! groups `source.kafka` and `source.kinesis`, naming the owning instance. Written by
//! `salestalk run`'s downstream watch (`pipeline/src/run/downstream`) and the sources.

use clickhouse::Row;
use serde::Serialize;

use super::Ddl;
use crate::{ClickHouseError, Endpoint};

/// Migration 14: the pipeline instance owning a sampled partition.
pub(crate) fn add_instance(ddl: &Ddl<'_>) -> String {
    format!(
        "ALTER TABLE {}.consumer_group_lag ADD COLUMN instance String",
        ddl.database
    )
}

/// Migration 12: a Kinesis shard's throttled reads in the minute.
pub(crate) fn add_throttled(ddl: &Ddl<'_>) -> String {
    format!(
        "ALTER TABLE {}.consumer_group_lag ADD COLUMN throttled UInt64",
        ddl.database
    )
}

/// Migration 11: one row per group, topic, partition and minute; the newest sample of a minute wins.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.consumer_group_lag (\n\
         minute DateTime('UTC'),\n\
         consumer_group String,\n\
         topic String,\n\
         partition Int32,\n\
         lag_messages UInt64,\n\
         lag_ms UInt64,\n\
         measured_at_ms UInt64\n\
         ) ENGINE = ReplacingMergeTree(measured_at_ms)\n\
         PARTITION BY toYYYYMM(minute)\n\
         ORDER BY (consumer_group, topic, partition, minute){}",
        ddl.ttl("minute", 90)
    )
}

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

impl Endpoint {
    /// Stores lag samples.
    pub async fn record_lag(&self, samples: &[LagSample]) -> Result<(), ClickHouseError> {
        self.insert_rows::<LagSample>("consumer_group_lag", samples)
            .await
    }
}
