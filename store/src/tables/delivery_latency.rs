//! `delivery_latency`: how long the routing targets' events took from event time to being
//! acknowledged by the target's broker, per minute of delivery, consumer, tenant and event
//! type, as the same mergeable histogram as `window_state`'s latency (ADR 0010). Operational
//! like `sink_outcomes`: a replayed flush delivers, and is measured, again.

use clickhouse::Row;
use serde::Serialize;

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 10: the routing targets' delivery latency histograms per minute of delivery.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.delivery_latency (\n\
         minute DateTime('UTC'),\n\
         consumer {low},\n\
         tenant_id String,\n\
         event_type {low},\n\
         delivered UInt64,\n\
         latency_buckets Array(Int16),\n\
         latency_counts Array(UInt64)\n\
         ) ENGINE = MergeTree\n\
         PARTITION BY toYYYYMM(minute)\n\
         ORDER BY (consumer, tenant_id, minute){}",
        ddl.ttl("minute", 90)
    )
}

/// One row of `delivery_latency`.
#[derive(Debug, Row, Serialize)]
pub struct DeliveryLatencyRow<'a> {
    /// The minute of delivery (Unix s).
    pub minute: u32,
    /// The routing target.
    pub consumer: &'a str,
    /// The tenant.
    pub tenant_id: &'a str,
    /// The event type.
    pub event_type: &'a str,
    /// Events delivered.
    pub delivered: u64,
    /// The histogram's buckets (`operators::histogram`).
    pub latency_buckets: Vec<i16>,
    /// Events in each bucket.
    pub latency_counts: Vec<u64>,
}

impl Endpoint {
    /// Adds `rows` to the table (one insert, not retried).
    pub async fn insert_delivery_latency(
        &self,
        rows: &[DeliveryLatencyRow<'_>],
    ) -> Result<(), ClickHouseError> {
        self.insert_rows::<DeliveryLatencyRow<'_>>("delivery_latency", rows)
            .await
    }
}
