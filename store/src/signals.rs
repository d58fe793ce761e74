//! Measuring alert signals in ClickHouse: each rule's signal over its lookback, once for all
//! traffic or once per tenant, read from the public views only (so an alert says what the
//! dashboards say). The alert evaluator feeds what this returns to its state machine.

use clickhouse::Row;
use salestalk_alerting::{Rule, Scope, Signal};
use salestalk_operators::aggregate::Family;
use salestalk_operators::flush::consumers;
use serde::Deserialize;

use crate::endpoint::{ClickHouseError, Endpoint};
use crate::schema::merged_quantile;

/// The consumer whose refusals make the consumer error rate: a refused archive row sends its
/// event to the DLQ (`sink_rejected`, `retries_exhausted`); window state is never split.
pub const ERROR_RATE_CONSUMER: &str = "clickhouse.archive";

/// The consumers that take every valid event: a stretch with none of their outputs durable
/// while messages wait is a stall of that consumer.
pub const STALL_CONSUMERS: [&str; 2] = [consumers::METRICS, consumers::ARCHIVE];

/// One subject's value of a signal.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct SignalValue {
    /// The tenant, or empty when the rule is global.
    pub subject_tenant: String,
    /// The consumer, or empty for signals that are not per consumer.
    pub subject_consumer: String,
    /// Events behind the value (the rate's denominator; 0 for the DLQ depth).
    pub measured: u64,
    /// The value.
    pub value: f64,
}

/// One row per window and outcome at the archive: `subject_tenant` (the expression `tenant`),
/// `written_n` (events it took) and `failed_n` (events it refused: `sink_rejected` and
/// `retries_exhausted` dead letters). The consumer error rate is
/// `sum(failed_n) / (sum(written_n) + sum(failed_n))`, for alerts and dashboards alike.
/// `rows(family, columns)` is the source of a family's rows in the wanted range: a table or a
/// subquery with `tenant_id` and `columns` (alerts read the minute view; dashboards read
/// whole days and hours from the rollups).
pub fn archive_outcomes_sql(tenant: &str, rows: impl Fn(Family, &str) -> String) -> String {
    format!(
        "SELECT {tenant} AS subject_tenant, toFloat64(events) AS written_n, \
                toFloat64(0) AS failed_n \
         FROM {} WHERE consumer = '{ERROR_RATE_CONSUMER}' \
         UNION ALL \
         SELECT {tenant} AS subject_tenant, toFloat64(0) AS written_n, \
                toFloat64(messages) AS failed_n \
         FROM {} WHERE reason IN ('sink_rejected', 'retries_exhausted')",
        rows(Family::Latency, "consumer, events"),
        rows(Family::DeadLetters, "reason, messages")
    )
}

/// The SQL measuring `rule`'s signal now.
pub fn signal_sql(rule: &Rule) -> String {
    let tenant = match rule.scope {
        Scope::Global => "''",
        Scope::Tenant => "tenant_id",
    };
    let since = format!("now() - {}", rule.lookback_ms / 1000);
    let min = rule.min_events;
    match rule.signal {
        Signal::PublishSuccessRate => format!(
            "SELECT {tenant} AS subject_tenant, '' AS subject_consumer, \
             toUInt64(sum(submitted)) AS measured, \
             (sum(submitted) - sum(rejected)) / sum(submitted) AS value \
             FROM metrics_publish WHERE window_start >= {since} \
             GROUP BY subject_tenant, subject_consumer HAVING measured >= greatest({min}, 1) \
             ORDER BY subject_tenant"
        ),
        Signal::P95LatencyMs => format!(
            "SELECT {tenant} AS subject_tenant, consumer AS subject_consumer, \
             toUInt64(sum(events)) AS measured, {} AS value \
             FROM (SELECT tenant_id, consumer, events, buckets, counts FROM processing_latency \
                   WHERE window_start >= {since}) \
             GROUP BY subject_tenant, subject_consumer HAVING measured >= greatest({min}, 1) \
             ORDER BY subject_tenant, subject_consumer",
            merged_quantile(0.95)
        ),
        Signal::DlqDepth => "SELECT '' AS subject_tenant, '' AS subject_consumer, \
             toUInt64(0) AS measured, toFloat64(sum(entries)) AS value FROM dlq_depth"
            .to_string(),
        Signal::ConsumerErrorRate => format!(
            "SELECT subject_tenant, '{ERROR_RATE_CONSUMER}' AS subject_consumer, \
             toUInt64(sum(written_n) + sum(failed_n)) AS measured, \
             sum(failed_n) / (sum(written_n) + sum(failed_n)) AS value \
             FROM ({}) \
             GROUP BY subject_tenant HAVING measured >= greatest({min}, 1) \
             ORDER BY subject_tenant",
            archive_outcomes_sql(tenant, |family, columns| format!(
                "(SELECT tenant_id, {columns} FROM metrics_{} WHERE window_start >= {since})",
                family.layout().name
            ))
        ),
        // The raw progress only: per stall consumer, the end of the last minute in which any
        // of its outputs became durable (Unix ms). `serve` turns it into an age, and only
        // while the brokers hold unread messages (pipeline/src/stalls.rs).
        Signal::NoFreshDataMs => format!(
            "SELECT '' AS subject_tenant, consumer AS subject_consumer, toUInt64(0) AS measured, \
             (toFloat64(toUInt32(max(window_start))) + 60) * 1000 AS value \
             FROM metrics_latency WHERE consumer IN ('{}', '{}') \
             GROUP BY subject_tenant, subject_consumer ORDER BY subject_consumer",
            STALL_CONSUMERS[0], STALL_CONSUMERS[1]
        ),
    }
}

impl Endpoint {
    /// `rule`'s signal now, per subject; subjects with fewer than `min_events` are left out.
    pub async fn measure(&self, rule: &Rule) -> Result<Vec<SignalValue>, ClickHouseError> {
        let (name, value) = crate::raw_query::PUSH_FILTERS_INTO_VIEWS;
        self.client()
            .with_setting(name, value)
            .query(&signal_sql(rule))
            .fetch_all()
            .await
            .map_err(|e| ClickHouseError::classify(&self.url, e))
    }
}
