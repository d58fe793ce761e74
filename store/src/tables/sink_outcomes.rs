//! `sink_outcomes`: every sink's delivery outcomes (attempted, failed, failed write attempts)
//! per consumer, tenant and minute, summed: the consumer error rate. Operational, not part of
//! the exact state: written after a flush landed, so a crash in between loses that flush's
//! counts and a replayed task's events are attempted again (docs/metrics.md). The sinks fill it
//! from a landed flush's outcomes (`salestalk_sinks::clickhouse::record_outcomes`).

use clickhouse::Row;
use serde::Serialize;

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 6: every sink's delivery outcomes, summed per consumer, tenant and minute.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.sink_outcomes (\n\
         minute DateTime('UTC'),\n\
         consumer {low},\n\
         tenant_id String,\n\
         attempted UInt64,\n\
         failed UInt64,\n\
         failed_attempts UInt64\n\
         ) ENGINE = SummingMergeTree\n\
         PARTITION BY toYYYYMM(minute)\n\
         ORDER BY (consumer, tenant_id, minute){}",
        ddl.ttl("minute", 90)
    )
}

/// One row of `sink_outcomes`.
#[derive(Debug, Row, Serialize)]
pub struct SinkOutcomeRow<'a> {
    /// The minute the flush landed in (Unix s).
    pub minute: u32,
    /// The sink or routing target (`sinks::SinkKind`'s consumer name).
    pub consumer: &'a str,
    /// The tenant (empty for failed attempts, which belong to a write, not a tenant).
    pub tenant_id: &'a str,
    /// Deliveries attempted.
    pub attempted: u64,
    /// Deliveries that failed for good.
    pub failed: u64,
    /// Write attempts that failed and were retried.
    pub failed_attempts: u64,
}

impl Endpoint {
    /// Adds `rows` to the table (one insert, not retried).
    pub async fn insert_sink_outcomes(
        &self,
        rows: &[SinkOutcomeRow<'_>],
    ) -> Result<(), ClickHouseError> {
        self.insert_rows::<SinkOutcomeRow<'_>>("sink_outcomes", rows)
            .await
    }
}
