//! Every panel of every dashboard. Result shapes by chart: `Timeseries` returns `time`
//! (DateTime), `series` (String) and `value`; `Bar` returns `label` and `value`; `Stat` returns
//! one row with `value`; `Table` returns any columns, shown as they come.

use salestalk_operators::aggregate::Family;
use salestalk_operators::windows::Span;
use salestalk_store::schema::{
    family_view_name, latency_sources_sql, merged_quantile, publish_sources_sql,
};

/// How a panel is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chart {
    /// Lines over time, one per `series`.
    Timeseries,
    /// Bars, one per `label`.
    Bar,
    /// One number.
    Stat,
    /// Rows as they come.
    Table,
}

/// Where a panel's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A ClickHouse query with Grafana macros.
    Sql(String),
    /// Consumer lag: in the built-in pages from the brokers' high watermarks minus the durable
    /// checkpoints; in Grafana from the pipeline's `/metrics` (this PromQL).
    Lag {
        /// The Prometheus query Grafana uses.
        promql: &'static str,
    },
    /// The alerts firing now: in the built-in pages from the evaluator; in Grafana from the
    /// `alerts` table (this query).
    ActiveAlerts(String),
}

/// What a number means, declared by the panel so every page shows it one way (a column's
/// name never decides: "insights_shared" is a count, not a share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count: `8,500`.
    Count,
    /// A fraction shown as a percentage: `0.0312` is `3.12 %`.
    Share,
    /// Milliseconds: `412 ms`.
    Milliseconds,
    /// Seconds: `95.3 s`.
    Seconds,
    /// US dollars: `$12.34`.
    Usd,
    /// Integer nanodollars, shown as exact dollars: `$0.021700000`.
    NanoUsd,
    /// A plain number (a rating, a confidence): `4.250`.
    Number,
    /// Text, or a time as the server sends it.
    Text,
}

impl Unit {
    /// The unit's id: Grafana's where Grafana has one (`short`, `percentunit`, `ms`, `s`,
    /// `currencyUSD`, `none`, `string`), and `nanoUSD` for exact nanodollars.
    pub fn id(self) -> &'static str {
        match self {
            Unit::Count => "short",
            Unit::Share => "percentunit",
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
            Unit::Usd => "currencyUSD",
            Unit::NanoUsd => "nanoUSD",
            Unit::Number => "none",
            Unit::Text => "string",
        }
    }
}

/// One panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panel {
    /// Stable id (`[a-z_]+`), unique within its dashboard.
    pub id: &'static str,
    /// Title shown above it.
    pub title: &'static str,
    /// How it is drawn.
    pub chart: Chart,
    /// Unit of `value` (time series, bars, stats).
    pub unit: Unit,
    /// A table's columns in order, each with its unit (empty for other charts).
    pub columns: Vec<(&'static str, Unit)>,
    /// Its data.
    pub source: Source,
}

impl Panel {
    /// Whether its numbers are per tenant (its query has the tenant filter): only such panels
    /// are shown to a reader key. The others (lag, alerts) are about the pipeline as a whole.
    pub fn is_per_tenant(&self) -> bool {
        matches!(&self.source, Source::Sql(sql) if sql.contains(crate::TENANT_FILTER))
    }
}

/// One dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// Stable id, also the page path (`/sre`).
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
    /// Panels in page order.
    pub panels: Vec<Panel>,
}

impl Dashboard {
    /// The panel with `id`.
    pub fn panel(&self, id: &str) -> Option<&Panel> {
        self.panels.iter().find(|p| p.id == id)
    }
}

/// The tenants shown: the chosen one, within the reader's (see [`crate::TENANT_FILTER`]).
const TENANT: &str = crate::TENANT_FILTER;

/// A bucket start of `column` (DateTime) for time series.
fn bucket(column: &str) -> String {
    format!("toDateTime(intDiv(toUInt32({column}), $__interval_s) * $__interval_s)")
}

/// Whether a panel's rows are bucketed by `$__interval_s` (a time series) or summed over
/// the whole range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucketed {
    Yes,
    No,
}

/// The rows of `family` in the dashboard's range and tenant, as a subquery with
/// `window_start`, `tenant_id` and `columns`, read from the coarsest windows that fit: whole
/// UTC days inside the range from `metrics_<family>_daily`, whole hours outside those days
/// from `_hourly`, and the minutes left at the edges from `metrics_<family>`. The sum over
/// any range therefore equals the minute view's exactly, while a month reads about a
/// thousandth of the rows. A time series uses a span only when its bucket width is a whole
/// number of them, so no window straddles two buckets.
fn rows(family: Family, columns: &str, bucketed: Bucketed) -> String {
    // The whole windows of a span inside the range: from the first one starting at or after
    // the range start to the last one whose last minute is inside it (macros are UTC
    // instants; spans are UTC). A time series whose buckets are not whole windows of the span
    // gets an empty stretch instead (first after last). These bounds are constant
    // expressions, so ClickHouse uses them on the table's index; a constant condition ORed
    // beside them would make it scan every minute in the range (measured).
    let bounds = |span: Span| {
        let seconds = span.seconds();
        let first = format!(
            "toDateTime(intDiv(toUInt32($__fromTime) + {}, {seconds}) * {seconds})",
            seconds - 1
        );
        let last = format!(
            "toDateTime(intDiv(toUInt32($__toTime) - {}, {seconds}) * {seconds})",
            seconds - 60
        );
        match bucketed {
            Bucketed::No => (first, last),
            Bucketed::Yes => (
                format!("if($__interval_s % {seconds} = 0, {first}, toDateTime(4294967295))"),
                format!("if($__interval_s % {seconds} = 0, {last}, toDateTime(0))"),
            ),
        }
    };
    let mut branches = Vec::new();
    let mut coarser: Option<Span> = None;
    for span in [Span::Day, Span::Hour, Span::Minute] {
        let (view, time) = family_view_name(family, span);
        let range = match span {
            Span::Minute => "$__timeFilter(window_start)".to_string(),
            _ => {
                let (first, last) = bounds(span);
                format!("{time} >= {first} AND {time} <= {last}")
            }
        };
        // Leave out what the next coarser span already read.
        let outside = coarser.map_or(String::new(), |coarse| {
            let (first, last) = bounds(coarse);
            let last_minute = coarse.seconds() - 60;
            format!(" AND ({time} < {first} OR {time} > {last} + {last_minute})")
        });
        branches.push(format!(
            "SELECT {time} AS window_start, tenant_id, {columns} FROM {view} \
             WHERE {range}{outside} AND {TENANT}"
        ));
        coarser = Some(span);
    }
    format!("({})", branches.join(" UNION ALL "))
}

/// The condition on a table kept per `minute` (not a family: the gateway's outcomes, the
/// deliveries) for the dashboard's range and tenant.
fn minutes_in_range() -> String {
    format!("$__timeFilter(minute) AND {TENANT}")
}

/// Publish success's inputs in the dashboard's range and tenant: the pipeline's side from
/// the publish family's rollups, the gateway's from `ingest_outcomes`.
fn publish_sources() -> String {
    publish_sources_sql(
        &rows(
            Family::Publish,
            "source, path, submitted, rejected",
            Bucketed::No,
        ),
        "ingest_outcomes",
        &minutes_in_range(),
    )
}

/// A time series of `measure` summed per bucket, one line per value of the family's
/// dimension `series`.
fn summed_series(family: Family, series: &str, measure: &str) -> String {
    format!(
        "SELECT {} AS time, {series} AS series, toFloat64(sum({measure})) AS value \
         FROM {} GROUP BY time, series ORDER BY time, series",
        bucket("window_start"),
        rows(family, &format!("{series}, {measure}"), Bucketed::Yes)
    )
}

fn panel(id: &'static str, title: &'static str, chart: Chart, unit: Unit, sql: String) -> Panel {
    Panel {
        id,
        title,
        chart,
        unit,
        columns: Vec::new(),
        source: Source::Sql(sql),
    }
}

/// A table whose query returns exactly `columns`, in order.
fn table(
    id: &'static str,
    title: &'static str,
    columns: &[(&'static str, Unit)],
    sql: String,
) -> Panel {
    Panel {
        id,
        title,
        chart: Chart::Table,
        unit: Unit::Count,
        columns: columns.to_vec(),
        source: Source::Sql(sql),
    }
}

/// The three dashboards.
pub fn dashboards() -> Vec<Dashboard> {
    vec![sre(), product(), billing()]
}

fn sre() -> Dashboard {
    Dashboard {
        id: "sre",
        title: "SalesTalk SRE",
        panels: vec![
            panel(
                "volume",
                "Event volume by type",
                Chart::Timeseries,
                Unit::Count,
                summed_series(Family::Volume, "event_type", "events"),
            ),
            panel(
                "volume_by_type",
                "Events in range by type",
                Chart::Bar,
                Unit::Count,
                format!(
                    "SELECT event_type AS label, toFloat64(sum(events)) AS value FROM {} \
                     GROUP BY label ORDER BY value DESC, label",
                    rows(Family::Volume, "event_type, events", Bucketed::No)
                ),
            ),
            table(
                "versions",
                "Event versions in range (when does v1 traffic end?)",
                &[
                    ("event", Unit::Text),
                    ("version", Unit::Text),
                    ("events", Unit::Count),
                    ("last_seen", Unit::Text),
                ],
                format!(
                    "SELECT arrayStringConcat(arraySlice(splitByChar('.', event_type), 1, 2), '.') AS event, \
                     splitByChar('.', event_type)[3] AS version, \
                     toUInt64(sum(events)) AS events, max(window_start) AS last_seen \
                     FROM {} GROUP BY event, version ORDER BY event, version",
                    rows(Family::Volume, "event_type, events", Bucketed::No)
                ),
            ),
            table(
                "new_enum_values",
                "Enum values newer than this build",
                &[
                    ("event_type", Unit::Text),
                    ("field", Unit::Text),
                    ("value", Unit::Text),
                    ("events", Unit::Count),
                    ("tenants", Unit::Count),
                    ("first_seen", Unit::Text),
                    ("last_seen", Unit::Text),
                ],
                format!(
                    "SELECT event_type, field, value, toUInt64(sum(events)) AS events, \
                     toUInt64(uniqExact(tenant_id)) AS tenants, min(window_start) AS first_seen, \
                     max(window_start) AS last_seen \
                     FROM {} GROUP BY event_type, field, value \
                     ORDER BY events DESC, event_type, field, value LIMIT 50",
                    rows(
                        Family::NewEnumValues,
                        "event_type, field, value, events",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "latency",
                "Processing latency per consumer (ms)",
                &[
                    ("consumer", Unit::Text),
                    ("events", Unit::Count),
                    ("p50_ms", Unit::Milliseconds),
                    ("p95_ms", Unit::Milliseconds),
                    ("p99_ms", Unit::Milliseconds),
                ],
                // The pipeline's own consumers (from the rollups, as every family panel) and
                // the routing targets (delivery latency).
                format!(
                    "SELECT consumer, toUInt64(sum(events)) AS events, {} AS p50_ms, {} AS p95_ms, \
                     {} AS p99_ms FROM ({}) GROUP BY consumer ORDER BY consumer",
                    merged_quantile(0.5),
                    merged_quantile(0.95),
                    merged_quantile(0.99),
                    latency_sources_sql(
                        &rows(
                            Family::Latency,
                            "event_type, consumer, events, latency_ms_histogram",
                            Bucketed::No
                        ),
                        "delivery_latency",
                        &minutes_in_range(),
                    ),
                ),
            ),
            table(
                "consumer_errors",
                "Consumer error rate (failures over attempts: sinks, targets, consumer groups)",
                &[
                    ("consumer", Unit::Text),
                    ("attempted", Unit::Count),
                    ("failed", Unit::Count),
                    ("error_rate", Unit::Share),
                    ("failed_attempts", Unit::Count),
                ],
                format!(
                    "SELECT consumer, attempted_n AS attempted, failed_n AS failed, \
                     if(attempted_n = 0, 0, failed_n / attempted_n) AS error_rate, \
                     retried_n AS failed_attempts FROM (SELECT consumer, \
                     toUInt64(sum(attempted)) AS attempted_n, toUInt64(sum(failed)) AS failed_n, \
                     toUInt64(sum(failed_attempts)) AS retried_n \
                     FROM consumer_outcomes WHERE $__timeFilter(window_start) \
                     AND (tenant_id = '' OR {TENANT}) GROUP BY consumer) ORDER BY consumer"
                ),
            ),
            panel(
                "publish_success",
                "Publish success rate (accepted / submitted)",
                Chart::Stat,
                Unit::Share,
                format!(
                    "SELECT if(submitted_n = 0, 1, accepted_n / submitted_n) AS value, \
                     submitted_n AS submitted_total, submitted_n - accepted_n AS failed_total \
                     FROM (SELECT toUInt64(sum(n_submitted)) AS submitted_n, \
                     toUInt64(sum(n_accepted)) AS accepted_n FROM ({}))",
                    publish_sources()
                ),
            ),
            table(
                "publish_by_path",
                "Publishes by path: through the gateway, or straight to the topics",
                &[
                    ("path", Unit::Text),
                    ("submitted", Unit::Count),
                    ("accepted", Unit::Count),
                    ("rejected", Unit::Count),
                    ("throttled", Unit::Count),
                    ("broker_failed", Unit::Count),
                ],
                format!(
                    "SELECT publish_path AS path, toUInt64(sum(n_submitted)) AS submitted, \
                     toUInt64(sum(n_accepted)) AS accepted, toUInt64(sum(n_rejected)) AS rejected, \
                     toUInt64(sum(n_throttled)) AS throttled, \
                     toUInt64(sum(n_broker_failed)) AS broker_failed \
                     FROM ({}) GROUP BY path ORDER BY path",
                    publish_sources()
                ),
            ),
            panel(
                "dlq_depth",
                "DLQ depth (pending now)",
                Chart::Stat,
                Unit::Count,
                format!("SELECT toFloat64(sum(entries)) AS value FROM dlq_depth WHERE {TENANT}"),
            ),
            table(
                "dlq_by_reason",
                "Dead letters by reason and consumer (pending now)",
                &[
                    ("reason", Unit::Text),
                    ("consumer", Unit::Text),
                    ("entries", Unit::Count),
                    ("oldest", Unit::Text),
                ],
                format!(
                    "SELECT reason, consumer, toUInt64(sum(entries)) AS entries, \
                     toString(min(oldest)) AS oldest FROM dlq_depth WHERE {TENANT} \
                     GROUP BY reason, consumer ORDER BY entries DESC, reason, consumer"
                ),
            ),
            table(
                "targets_healed",
                "Routing targets healed: undelivered events redriven by themselves",
                &[
                    ("target_topic", Unit::Text),
                    ("redriven", Unit::Count),
                    ("pending", Unit::Count),
                    ("last_redriven", Unit::Text),
                ],
                format!(
                    "SELECT topic AS target_topic, \
                     toUInt64(countIf(status = 'redriven' AND resolution_note LIKE 'healed%' \
                     AND $__timeFilter(resolved_at))) AS redriven, \
                     toUInt64(countIf(status = 'pending')) AS pending, \
                     toString(maxIf(resolved_at, status = 'redriven' AND resolution_note LIKE 'healed%')) \
                     AS last_redriven \
                     FROM dead_letter_queue WHERE reason = 'delivery_failed' AND {TENANT} \
                     GROUP BY topic ORDER BY topic"
                ),
            ),
            panel(
                "dlq_inflow",
                "DLQ inflow by reason",
                Chart::Timeseries,
                Unit::Count,
                summed_series(Family::DeadLetters, "reason", "messages"),
            ),
            table(
                "consumer_lag",
                "Pipeline instances, consumer groups and Kinesis shards: lag (newest sample)",
                &[
                    ("consumer_group", Unit::Text),
                    ("instance", Unit::Text),
                    ("topic", Unit::Text),
                    ("partitions", Unit::Count),
                    ("lag_messages", Unit::Count),
                    ("lag_seconds", Unit::Seconds),
                    ("throttled_reads", Unit::Count),
                ],
                "SELECT consumer_group, instance, topic, partitions, lag_messages, lag_seconds, throttled_reads \
                 FROM consumer_lag WHERE window_start = (SELECT max(window_start) FROM consumer_lag \
                 WHERE $__timeFilter(window_start)) ORDER BY consumer_group, instance, topic"
                    .to_string(),
            ),
            Panel {
                id: "lag",
                title: "Consumer lag (messages not yet durable)",
                chart: Chart::Bar,
                unit: Unit::Count,
                columns: Vec::new(),
                source: Source::Lag {
                    promql: "sum by (topic) (salestalk_partition_lag)",
                },
            },
            Panel {
                id: "alerts",
                title: "Active alerts",
                chart: Chart::Table,
                unit: Unit::Count,
                columns: vec![
                    ("rule", Unit::Text),
                    ("severity", Unit::Text),
                    ("summary", Unit::Text),
                    ("starts_at", Unit::Text),
                ],
                source: Source::ActiveAlerts(
                    "SELECT rule, severity, summary, starts_at FROM \
                     (SELECT * FROM alerts ORDER BY notified_at_ms DESC LIMIT 1 BY fingerprint) \
                     WHERE status = 'firing' ORDER BY starts_at"
                        .to_string(),
                ),
            },
        ],
    }
}

fn product() -> Dashboard {
    let time = bucket("window_start");
    Dashboard {
        id: "product",
        title: "SalesTalk product: engagement and quality",
        panels: vec![
            panel(
                "conversations",
                "Conversations completed",
                Chart::Timeseries,
                Unit::Count,
                format!(
                    "SELECT {time} AS time, 'conversations' AS series, toFloat64(sum(conversations)) AS value \
                     FROM {} GROUP BY time, series ORDER BY time",
                    rows(Family::Engagement, "conversations", Bucketed::Yes)
                ),
            ),
            table(
                "engagement",
                "Engagement",
                &[
                    ("completed", Unit::Count),
                    ("avg_duration_s", Unit::Seconds),
                    ("satisfaction", Unit::Number),
                    ("avg_response_ms", Unit::Milliseconds),
                    ("insights_saved", Unit::Count),
                    ("insights_shared", Unit::Count),
                    ("data_exported", Unit::Count),
                    ("follow_ups", Unit::Count),
                ],
                format!(
                    "SELECT toUInt64(sum(conversations)) AS completed, \
                     if(sum(conversations) = 0, 0, sum(duration_seconds_sum) / sum(conversations)) AS avg_duration_s, \
                     if(sum(rated) = 0, 0, sum(rating_sum) / sum(rated)) AS satisfaction, \
                     if(sum(conversations) = 0, 0, sum(response_time_ms_sum) / sum(conversations)) AS avg_response_ms, \
                     toUInt64(sum(insight_saved)) AS insights_saved, toUInt64(sum(insight_shared)) AS insights_shared, \
                     toUInt64(sum(data_exported)) AS data_exported, toUInt64(sum(follow_up_created)) AS follow_ups \
                     FROM {}",
                    rows(
                        Family::Engagement,
                        "conversations, duration_seconds_sum, rated, rating_sum, response_time_ms_sum, \
                         insight_saved, insight_shared, data_exported, follow_up_created",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "intents",
                "Intents per tenant",
                &[
                    ("tenant_id", Unit::Text),
                    ("intent", Unit::Text),
                    ("classified", Unit::Count),
                    ("avg_confidence", Unit::Number),
                    ("low_confidence_share", Unit::Share),
                ],
                format!(
                    "SELECT tenant_id, intent, toUInt64(sum(classifications)) AS classified, \
                     sum(confidence_sum) / sum(classifications) AS avg_confidence, \
                     sum(low_confidence) / sum(classifications) AS low_confidence_share \
                     FROM {} \
                     GROUP BY tenant_id, intent ORDER BY classified DESC, tenant_id, intent LIMIT 50",
                    rows(
                        Family::Intents,
                        "intent, classifications, confidence_sum, low_confidence",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "quality",
                "Quality per model",
                &[
                    ("model", Unit::Text),
                    ("generated", Unit::Count),
                    ("hallucination_rate", Unit::Share),
                    ("facts_verified_share", Unit::Share),
                    ("mean_confidence", Unit::Number),
                    ("total_tokens", Unit::Count),
                ],
                format!(
                    "SELECT model, toUInt64(sum(narratives)) AS generated, \
                     if(sum(narratives) = 0, 0, sum(hallucinations) / sum(narratives)) AS hallucination_rate, \
                     if(sum(facts_total) = 0, 0, sum(facts_verified) / sum(facts_total)) AS facts_verified_share, \
                     if(sum(narratives) = 0, 0, sum(confidence_sum) / sum(narratives)) AS mean_confidence, \
                     toUInt64(sum(total_tokens)) AS total_tokens \
                     FROM {} GROUP BY model ORDER BY generated DESC, model",
                    rows(
                        Family::Quality,
                        "model, narratives, hallucinations, facts_verified, facts_total, \
                         confidence_sum, total_tokens",
                        Bucketed::No
                    )
                ),
            ),
            panel(
                "hallucination_rate",
                "Hallucination rate by model",
                Chart::Timeseries,
                Unit::Share,
                format!(
                    "SELECT {time} AS time, model AS series, \
                     if(sum(narratives) = 0, 0, sum(hallucinations) / sum(narratives)) AS value \
                     FROM {} GROUP BY time, series ORDER BY time, series",
                    rows(
                        Family::Quality,
                        "model, narratives, hallucinations",
                        Bucketed::Yes
                    )
                ),
            ),
        ],
    }
}

fn billing() -> Dashboard {
    let days = "day >= toDate($__fromTime) AND day <= toDate($__toTime)";
    Dashboard {
        id: "billing",
        title: "SalesTalk billing: AI cost per tenant",
        panels: vec![
            panel(
                "daily_cost",
                "Cost per day (USD)",
                Chart::Timeseries,
                Unit::Usd,
                format!(
                    "SELECT toDateTime(day) AS time, 'cost' AS series, sum(cost_nanos) / 1e9 AS value \
                     FROM tenant_cost_daily WHERE {days} AND {TENANT} GROUP BY time, series ORDER BY time"
                ),
            ),
            panel(
                "top_tenants",
                "Top tenants by cost (USD)",
                Chart::Bar,
                Unit::Usd,
                format!(
                    "SELECT tenant_id AS label, sum(cost_nanos) / 1e9 AS value FROM tenant_cost_daily \
                     WHERE {days} AND {TENANT} GROUP BY label ORDER BY value DESC, label LIMIT 10"
                ),
            ),
            table(
                "tenants",
                "Cost and tokens per tenant",
                &[
                    ("tenant_id", Unit::Text),
                    ("messages", Unit::Count),
                    ("prompt_tokens", Unit::Count),
                    ("completion_tokens", Unit::Count),
                    ("total_tokens", Unit::Count),
                    ("cost_nanos", Unit::NanoUsd),
                ],
                format!(
                    "SELECT tenant_id, toUInt64(sum(messages)) AS messages, \
                     toUInt64(sum(prompt_tokens)) AS prompt_tokens, \
                     toUInt64(sum(completion_tokens)) AS completion_tokens, \
                     toUInt64(sum(total_tokens)) AS total_tokens, toInt64(sum(cost_nanos)) AS cost_nanos \
                     FROM tenant_cost_daily WHERE {days} AND {TENANT} \
                     GROUP BY tenant_id ORDER BY cost_nanos DESC, tenant_id"
                ),
            ),
            table(
                "by_model",
                "Cost per event type and model (only message costs are billed)",
                &[
                    ("event_type", Unit::Text),
                    ("model", Unit::Text),
                    ("billed", Unit::Text),
                    ("events", Unit::Count),
                    ("total_tokens", Unit::Count),
                    ("cost_nanos", Unit::NanoUsd),
                ],
                format!(
                    "SELECT event_type, model, billed, events, total_tokens, cost_nanos FROM (\
                     SELECT event_type, model, 'yes' AS billed, toUInt64(sum(messages)) AS events, \
                     toUInt64(sum(total_tokens)) AS total_tokens, toInt64(sum(cost_nanos)) AS cost_nanos \
                     FROM tenant_cost_daily WHERE {days} AND {TENANT} GROUP BY event_type, model \
                     UNION ALL \
                     SELECT 'conversation.completed' AS event_type, '' AS model, \
                     'no: a total of the messages above' AS billed, toUInt64(sum(conversations)) AS events, \
                     toUInt64(0) AS total_tokens, toInt64(sum(total_cost_nanos)) AS cost_nanos \
                     FROM {} HAVING events > 0) \
                     ORDER BY billed DESC, cost_nanos DESC, event_type, model",
                    rows(
                        Family::Engagement,
                        "conversations, total_cost_nanos",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "reconciliation",
                "Message costs against conversation totals, per day and tenant",
                &[
                    ("day", Unit::Text),
                    ("tenant_id", Unit::Text),
                    ("message_cost_nanos", Unit::NanoUsd),
                    ("conversation_total_nanos", Unit::NanoUsd),
                    ("difference_nanos", Unit::NanoUsd),
                ],
                format!(
                    "SELECT day, tenant_id, message_cost_nanos, conversation_total_nanos, \
                     difference_nanos FROM tenant_cost_reconciliation WHERE {days} AND {TENANT} \
                     ORDER BY abs(difference_nanos) DESC, day DESC, tenant_id LIMIT 100"
                ),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_queries_use_only_known_macros() {
        for dashboard in dashboards() {
            let mut ids = std::collections::BTreeSet::new();
            for panel in &dashboard.panels {
                assert!(
                    ids.insert(panel.id),
                    "{} repeats {}",
                    dashboard.id,
                    panel.id
                );
                let sql = match &panel.source {
                    Source::Sql(sql) | Source::ActiveAlerts(sql) => sql,
                    Source::Lag { .. } => continue,
                };
                let scope = crate::PanelRange {
                    from: 0,
                    to: 86_400,
                    tenant: String::new(),
                    tenants: crate::Tenants::All,
                };
                let expanded = crate::expand(sql, &scope);
                assert!(!expanded.contains('$'), "{}: {expanded}", panel.id);
            }
        }
    }

    #[test]
    fn every_panel_but_lag_and_alerts_is_per_tenant() {
        // The consumer groups' lag is about a topic every tenant's events share.
        let whole: Vec<&str> = dashboards()
            .iter()
            .flat_map(|d| d.panels.iter())
            .filter(|p| !p.is_per_tenant())
            .map(|p| p.id)
            .collect();
        assert_eq!(whole, ["consumer_lag", "lag", "alerts"]);
    }
}
