//! Latency percentiles per consumer, read from the merged histograms (`salestalk latency`).

use clickhouse::Row;
use serde::Deserialize;

use crate::endpoint::{ClickHouseError, Endpoint};
use crate::schema;

/// Latency percentiles of one consumer.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct LatencyPercentiles {
    /// The consumer.
    pub consumer: String,
    /// Events measured.
    pub events: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

impl Endpoint {
    /// P50/P95/P99 latency per consumer over the last `seconds`, for the given tenants and
    /// event types (all when empty): histograms merged first, percentiles read last.
    pub async fn latency_percentiles(
        &self,
        seconds: u64,
        tenants: &[String],
        event_types: &[String],
    ) -> Result<Vec<LatencyPercentiles>, ClickHouseError> {
        let filter = "window_start >= now() - toIntervalSecond(?) \
                      AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), tenant_id)) \
                      AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), event_type))";
        let sql = format!(
            "SELECT consumer, toUInt64(events) AS events, p50_ms, p95_ms, p99_ms FROM ({})",
            schema::latency_percentiles_query(&self.database, filter)
        );
        self.query(&sql)
            .bind(seconds)
            .bind(tenants)
            .bind(tenants)
            .bind(event_types)
            .bind(event_types)
            .fetch_all()
            .await
    }
}
