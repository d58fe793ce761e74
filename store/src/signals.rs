//! Measuring alert signals in ClickHouse: each rule's signal over its lookback, once for all
//! traffic or once per tenant, read from the public views only (so an alert says what the
//! dashboards say). The alert evaluator feeds what this returns to its state machine.

use clickhouse::Row;
use salestalk_alerting::{Rule, Scope, Signal};
use salestalk_operators::dead_letter::{CONSUMER_FAILED, actionable_reasons};
use salestalk_operators::flush::consumers;
use serde::Deserialize;

use crate::endpoint::{ClickHouseError, Endpoint};
use crate::schema::merged_quantile;

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

/// The SQL measuring `rule`'s signal now.
pub fn signal_sql(rule: &Rule) -> String {
    let tenant = match rule.scope {
        Scope::Global => "''",
        Scope::Tenant => "tenant_id",
    };
    let since = format!("now() - {}", rule.lookback_ms / 1000);
    let min = rule.min_events;
    match rule.signal {
        // Accepted over submitted (`publish_outcomes`: the gateway's entries and the messages
        // that reached the topics directly), in the minute they were submitted. Throttled
        // entries are neither: a tenant over its rate is told to send again later, which is no
        // failure of the publish path (reported apart as `throttled`).
        Signal::PublishSuccessRate => format!(
            "SELECT {tenant} AS subject_tenant, '' AS subject_consumer, \
             toUInt64(sum(submitted) - sum(throttled)) AS measured, \
             sum(accepted) / (sum(submitted) - sum(throttled)) AS value \
             FROM publish_outcomes WHERE window_start >= {since} \
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
        // Pending dead letters of the reasons that need a person (or the rule's own), and the
        // failures downstream consumers reported over the lookback: reports are not resolved
        // one by one, so they count while they keep coming.
        Signal::DlqDepth => {
            let reasons = if rule.reasons.is_empty() {
                actionable_reasons()
                    .into_iter()
                    .map(str::to_string)
                    .collect()
            } else {
                rule.reasons.clone()
            };
            let reports = if reasons.iter().any(|r| r == CONSUMER_FAILED) {
                format!(
                    "(SELECT count() FROM (SELECT consumer_group, partition, offset \
                     FROM consumer_failures WHERE minute >= {since} \
                     GROUP BY consumer_group, partition, offset))"
                )
            } else {
                "0".to_string()
            };
            format!(
                "SELECT '' AS subject_tenant, '' AS subject_consumer, toUInt64(0) AS measured, \
                 toFloat64((SELECT sum(entries) FROM dlq_depth WHERE has({}, reason)) + {reports}) \
                 AS value",
                sql_strings(&reasons)
            )
        }
        // Every sink's attempts and failures (`consumer_outcomes`: events and dead letters each
        // consumer was asked to make durable and refused for good), in processing time.
        Signal::ConsumerErrorRate => format!(
            "SELECT {tenant} AS subject_tenant, consumer AS subject_consumer, \
             toUInt64(sum(attempted)) AS measured, sum(failed) / sum(attempted) AS value \
             FROM consumer_outcomes WHERE window_start >= {since} \
             GROUP BY subject_tenant, subject_consumer HAVING measured >= greatest({min}, 1) \
             ORDER BY subject_tenant, subject_consumer"
        ),
        // The raw progress only: per stall consumer, the end of the last minute in which any
        // of its outputs became durable (Unix ms). `serve` turns it into an age, and only
        // while the brokers hold unread messages (pipeline/src/serve/stalls.rs).
        Signal::NoFreshDataMs => format!(
            "SELECT '' AS subject_tenant, consumer AS subject_consumer, toUInt64(0) AS measured, \
             (toFloat64(toUInt32(max(window_start))) + 60) * 1000 AS value \
             FROM metrics_latency WHERE consumer IN ('{}', '{}') \
             GROUP BY subject_tenant, subject_consumer ORDER BY subject_consumer",
            STALL_CONSUMERS[0], STALL_CONSUMERS[1]
        ),
        // Per downstream group, its newest minute in the lookback: the oldest uncommitted
        // message's age (the largest over its partitions and topics) and, as `measured`, the
        // messages it has not committed. The pipeline's own partitions (`source.*`) are the
        // stall signal's.
        Signal::ConsumerLagMs => format!(
            "SELECT '' AS subject_tenant, concat('group.', consumer_group) AS subject_consumer, \
             toUInt64(argMax(messages, window_start)) AS measured, \
             argMax(seconds, window_start) * 1000 AS value \
             FROM (SELECT window_start, consumer_group, sum(lag_messages) AS messages, \
                   toFloat64(max(lag_seconds)) AS seconds FROM consumer_lag \
                   WHERE window_start >= toStartOfMinute({since}) \
                   AND NOT startsWith(consumer_group, 'source.') \
                   GROUP BY window_start, consumer_group) \
             GROUP BY subject_tenant, subject_consumer ORDER BY subject_consumer"
        ),
        // Failed publishes over what the objective allows to fail, over both windows: the
        // lesser is the value (ErrorBudget). Throttled entries are neither good nor bad.
        Signal::PublishBurnRate => {
            let (short_since, budget) = budget_of(rule);
            format!(
                "SELECT subject_tenant, '' AS subject_consumer, measured, \
                 least(long_bad / measured, if(short_n = 0, 0, short_bad / short_n)) / {budget} \
                 AS value FROM (SELECT {tenant} AS subject_tenant, \
                 toUInt64(sum(submitted) - sum(throttled)) AS measured, \
                 sum(submitted) - sum(throttled) - sum(accepted) AS long_bad, \
                 sumIf(submitted - throttled, window_start >= {short_since}) AS short_n, \
                 sumIf(submitted - throttled - accepted, window_start >= {short_since}) AS short_bad \
                 FROM publish_outcomes WHERE window_start >= {since} GROUP BY subject_tenant) \
                 WHERE measured >= greatest({min}, 1) ORDER BY subject_tenant"
            )
        }
        // Events processed later than `good_within_ms` (by the histogram's buckets: those
        // whose values lie above it, within the histogram's 1 % error) over the budget, per
        // consumer, over both windows.
        Signal::LatencyBurnRate => {
            let (short_since, budget) = budget_of(rule);
            let good_within = rule
                .budget
                .as_ref()
                .and_then(|b| b.good_within_ms)
                .unwrap_or(f64::INFINITY);
            let last_good = salestalk_operators::histogram::bucket_of(good_within);
            let late = |h: &str| {
                format!(
                    "if(arraySum({h}.2) = 0, 0, \
                     arraySum(arrayMap((b, c) -> if(b > {last_good}, c, 0), {h}.1, {h}.2)) \
                     / arraySum({h}.2))"
                )
            };
            format!(
                "SELECT subject_tenant, subject_consumer, measured, \
                 least({}, {}) / {budget} AS value \
                 FROM (SELECT {tenant} AS subject_tenant, consumer AS subject_consumer, \
                 toUInt64(sum(events)) AS measured, sumMap(buckets, counts) AS h_long, \
                 sumMapIf(buckets, counts, window_start >= {short_since}) AS h_short \
                 FROM (SELECT tenant_id, consumer, window_start, events, buckets, counts \
                       FROM processing_latency WHERE window_start >= {since}) \
                 GROUP BY subject_tenant, subject_consumer HAVING measured >= greatest({min}, 1)) \
                 ORDER BY subject_tenant, subject_consumer",
                late("h_long"),
                late("h_short"),
            )
        }
        // Events of the versions that are deprecated and at most three months from their end
        // (the registry written at start-up, tables::event_versions), by event time.
        Signal::DeprecatedVersionEvents => format!(
            "SELECT {tenant} AS subject_tenant, event_type AS subject_consumer, \
             toUInt64(sum(events)) AS measured, toFloat64(sum(events)) AS value \
             FROM (SELECT tenant_id, event_type, events FROM metrics_volume \
                   WHERE window_start >= {since}) AS counted \
             ANY INNER JOIN (SELECT event_type FROM ({}) WHERE status = 'deprecated' \
                   AND today() >= ends - {}) AS ending USING event_type \
             GROUP BY subject_tenant, subject_consumer HAVING measured >= greatest({min}, 1) \
             ORDER BY subject_tenant, subject_consumer",
            crate::tables::event_versions::CURRENT_SQL,
            salestalk_operators::versions::NOTICE_DAYS,
        ),
        // Resends with other bytes than the first copy (the publish family, broker time), per
        // producer source.
        Signal::ConflictingDuplicates => format!(
            "SELECT {tenant} AS subject_tenant, source AS subject_consumer, \
             toUInt64(sum(conflicting_duplicates)) AS measured, \
             toFloat64(sum(conflicting_duplicates)) AS value \
             FROM metrics_publish WHERE window_start >= {since} \
             GROUP BY subject_tenant, subject_consumer HAVING measured >= greatest({min}, 1) \
             ORDER BY subject_tenant, subject_consumer"
        ),
    }
}

/// The short window's start and the error budget (`1 - objective`) of a burn-rate rule;
/// the rules' check guarantees both (a rule without is measured as never burning). The short
/// window starts at the start of its first minute: rows are minutes, and a window starting
/// within the newest complete one would leave it out and read a burn still going on as over.
fn budget_of(rule: &Rule) -> (String, f64) {
    match &rule.budget {
        Some(budget) => (
            format!(
                "toStartOfMinute(now() - {})",
                budget.short_lookback_ms / 1000
            ),
            (1.0 - budget.objective).max(f64::MIN_POSITIVE),
        ),
        None => ("now()".to_string(), f64::INFINITY),
    }
}

/// `names` as a ClickHouse array of string literals (names of reasons: `[a-z_]` only, checked
/// with the rules; anything else is dropped rather than quoted).
fn sql_strings(names: &[String]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(|n| format!("'{n}'"))
        .collect();
    format!("CAST([{}] AS Array(String))", quoted.join(", "))
}

impl Endpoint {
    /// `rule`'s signal now, per subject; subjects with fewer than `min_events` are left out.
    pub async fn measure(&self, rule: &Rule) -> Result<Vec<SignalValue>, ClickHouseError> {
        let (name, value) = crate::raw_query::PUSH_FILTERS_INTO_VIEWS;
        self.query(&signal_sql(rule))
            .with_setting(name, value)
            .fetch_all()
            .await
    }
}
