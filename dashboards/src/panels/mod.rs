//! Every panel of every dashboard. Result shapes by chart: `Timeseries` returns `time`
//! (DateTime), `series` (String) and `value`; `Bar` returns `label` and `value`; `Stat` returns
//! one row with `value`; `Table` returns any columns, shown as they come.
//!
//! One file per audience ([`sre`], [`product`], [`billing`]); what they share (the panel
//! types, the time bucket, the fenced rows of a family, the publish sources) is here.

mod billing;
mod product;
mod sre;

use salestalk_alerting::objectives::Objective;
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

/// A line of the contract's monitoring table drawn on a panel: its target and its alert
/// threshold, on the panel's `value` or on one column of a table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// The column it applies to (`value` for time series and stats).
    pub column: &'static str,
    /// The objective: which side is bad, the target, the threshold.
    pub objective: Objective,
}

/// One panel.
#[derive(Debug, Clone, PartialEq)]
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
    /// The targets and thresholds drawn on it (empty for most panels).
    pub marks: Vec<Mark>,
}

impl Panel {
    /// The panel with `objective` drawn on `column`.
    pub(crate) fn marked(mut self, column: &'static str, objective: Objective) -> Self {
        self.marks.push(Mark { column, objective });
        self
    }

    /// Whether its numbers are per tenant (its query has the tenant filter): only such panels
    /// are shown to a reader key. The others (lag, alerts) are about the pipeline as a whole.
    pub fn is_per_tenant(&self) -> bool {
        matches!(&self.source, Source::Sql(sql) if sql.contains(crate::TENANT_FILTER))
    }
}

/// One dashboard.
#[derive(Debug, Clone, PartialEq)]
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
        marks: Vec::new(),
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
        marks: Vec::new(),
    }
}

/// The three dashboards.
pub fn dashboards() -> Vec<Dashboard> {
    vec![sre::sre(), product::product(), billing::billing()]
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
