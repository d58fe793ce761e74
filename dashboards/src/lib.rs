//! The dashboards of the three audiences (SRE, product, billing), defined once: each panel is
//! a query over the public ClickHouse views (`docs/metrics.md`) written with the Grafana
//! ClickHouse datasource's macros. `salestalk serve` expands the macros and runs the queries
//! for its built-in pages; [`grafana`] turns the same panels into Grafana dashboard JSON.
//!
//! Macros used (and nothing else): `$__timeFilter(column)`, `$__fromTime`, `$__toTime`,
//! `$__interval_s` (bucket width in seconds) and `$__tenantFilter`, the tenants a panel may
//! show: `serve` expands it from the chosen tenant *and* the reader's key (so a key's tenants
//! are enforced in the query itself), Grafana from its text variable `${tenant:sqlstring}`
//! (empty: every tenant; see [`grafana::GRAFANA_TENANT_FILTER`]).

pub mod grafana;
pub mod panels;

pub use panels::{Chart, Dashboard, Panel, Unit, dashboards};

/// What a panel query is run for: a time range, a bucket width, a tenant filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelRange {
    /// Range start, Unix seconds.
    pub from: i64,
    /// Range end, Unix seconds.
    pub to: i64,
    /// One tenant, or empty for all of `tenants`.
    pub tenant: String,
    /// The tenants the reader may see.
    pub tenants: Tenants,
}

/// The tenants a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// Every tenant (an admin key).
    All,
    /// These only (a reader key).
    Only(Vec<String>),
}

impl Tenants {
    /// Whether `tenant` is among them.
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(tenants) => tenants.iter().any(|t| t == tenant),
        }
    }
}

/// The macro standing for a panel's tenant condition on `tenant_id`.
pub const TENANT_FILTER: &str = "$__tenantFilter";

impl PanelRange {
    /// The bucket width of time series: about 120 points over the range, in whole minutes up
    /// to 6 hours, whole hours up to 2 weeks, whole days beyond, so that long ranges are
    /// drawn from hour and day rows rather than minutes (see `panels::rows`).
    pub fn interval_s(&self) -> i64 {
        let span = (self.to - self.from).max(60);
        let unit = if span >= 14 * 86_400 {
            86_400
        } else if span > 6 * 3_600 {
            3_600
        } else {
            60
        };
        let target = span / 120;
        if unit == 60 {
            (target.max(60) / 60) * 60
        } else {
            ((target + unit - 1) / unit).max(1) * unit
        }
    }
}

/// A ClickHouse string literal of `text`: quoted, with backslashes and quotes escaped.
pub fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `sql` with the Grafana macros replaced for `scope`, as Grafana's ClickHouse datasource
/// would (times as `toDateTime(<unix seconds>)`).
///
/// One pass over the template: a macro's expansion is written out and never read again, so
/// a tenant value that contains a macro name (or a quote) stays inside its string literal.
/// Chained `replace` calls would substitute inside earlier expansions.
pub fn expand(sql: &str, scope: &PanelRange) -> String {
    let from = format!("toDateTime({})", scope.from);
    let to = format!("toDateTime({})", scope.to);
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let here = &rest[at..];
        rest = if let Some(after) = here.strip_prefix(TIME_FILTER) {
            match after.find(')') {
                Some(close) => {
                    let column = after[..close].trim();
                    out.push_str(&format!("({column} >= {from} AND {column} <= {to})"));
                    &after[close + 1..]
                }
                None => {
                    out.push_str(here);
                    ""
                }
            }
        } else if let Some(after) = here.strip_prefix("$__fromTime") {
            out.push_str(&from);
            after
        } else if let Some(after) = here.strip_prefix("$__toTime") {
            out.push_str(&to);
            after
        } else if let Some(after) = here.strip_prefix("$__interval_s") {
            out.push_str(&scope.interval_s().to_string());
            after
        } else if let Some(after) = here.strip_prefix(TENANT_FILTER) {
            out.push_str(&tenant_condition(scope));
            after
        } else if let Some(after) = here.strip_prefix(GRAFANA_TENANT) {
            out.push_str(&sql_string(&scope.tenant));
            after
        } else {
            out.push('$');
            &here[1..]
        };
    }
    out.push_str(rest);
    out
}

/// The time-filter macro, up to its column argument.
const TIME_FILTER: &str = "$__timeFilter(";

/// Grafana's text variable for the chosen tenant, as a quoted SQL string.
const GRAFANA_TENANT: &str = "${tenant:sqlstring}";

/// The condition on `tenant_id` for `scope`: the chosen tenant, and always within the
/// reader's tenants (a chosen tenant outside them selects nothing).
fn tenant_condition(scope: &PanelRange) -> String {
    let chosen =
        (!scope.tenant.is_empty()).then(|| format!("tenant_id = {}", sql_string(&scope.tenant)));
    let allowed = match &scope.tenants {
        Tenants::All => None,
        Tenants::Only(tenants) if tenants.is_empty() => Some("0".to_string()),
        Tenants::Only(tenants) => Some(format!(
            "tenant_id IN ({})",
            tenants
                .iter()
                .map(|t| sql_string(t))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    match (chosen, allowed) {
        (None, None) => "1".to_string(),
        (Some(one), None) | (None, Some(one)) => format!("({one})"),
        (Some(chosen), Some(allowed)) => format!("({chosen} AND {allowed})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tenant: &str) -> PanelRange {
        PanelRange {
            from: 1_790_000_000,
            to: 1_790_086_400,
            tenant: tenant.into(),
            tenants: Tenants::All,
        }
    }

    #[test]
    fn the_tenant_filter_keeps_a_reader_within_its_tenants() {
        let reader = |tenant: &str, tenants: &[&str]| PanelRange {
            tenants: Tenants::Only(tenants.iter().map(|t| t.to_string()).collect()),
            ..scope(tenant)
        };
        let filter = |range: &PanelRange| expand("WHERE $__tenantFilter", range);
        assert_eq!(filter(&scope("")), "WHERE 1");
        assert_eq!(filter(&scope("a")), "WHERE (tenant_id = 'a')");
        assert_eq!(
            filter(&reader("", &["a", "b"])),
            "WHERE (tenant_id IN ('a', 'b'))"
        );
        assert_eq!(
            filter(&reader("c", &["a"])),
            "WHERE (tenant_id = 'c' AND tenant_id IN ('a'))"
        );
        assert_eq!(filter(&reader("", &[])), "WHERE (0)");
        assert_eq!(
            filter(&reader("x' OR 1=1 --", &["a"])),
            "WHERE (tenant_id = 'x\\' OR 1=1 --' AND tenant_id IN ('a'))"
        );
    }

    #[test]
    fn macros_expand_as_grafana_would() {
        let sql = "SELECT 1 FROM v WHERE $__timeFilter(window_start) AND x > $__fromTime \
                   AND y < $__toTime AND (${tenant:sqlstring} = '' OR tenant_id = ${tenant:sqlstring}) \
                   GROUP BY intDiv(t, $__interval_s)";
        assert_eq!(
            expand(sql, &scope("t-1")),
            "SELECT 1 FROM v WHERE (window_start >= toDateTime(1790000000) AND window_start <= \
             toDateTime(1790086400)) AND x > toDateTime(1790000000) AND y < toDateTime(1790086400) \
             AND ('t-1' = '' OR tenant_id = 't-1') GROUP BY intDiv(t, 3600)"
        );
    }

    #[test]
    fn no_tenant_value_changes_the_query_outside_its_string() {
        let template = "SELECT 1 FROM v WHERE $__timeFilter(t) AND $__tenantFilter \
                        AND (${tenant:sqlstring} = '' OR tenant_id = ${tenant:sqlstring}) \
                        GROUP BY intDiv(t, $__interval_s) -- $__fromTime $__toTime";
        let macros = [
            "$__timeFilter(",
            "$__timeFilter(x)",
            "$__fromTime",
            "$__toTime",
            "$__interval_s",
            "$__tenantFilter",
            "${tenant:sqlstring}",
            "$",
        ];
        let quotes = ["'", "\\", "\\'", "''", "\"", "`", "--", "/*", ";"];
        let harmless = expand(template, &scope("TENANT"));
        for one in macros {
            for quote in quotes {
                for tenant in [
                    one.to_string(),
                    format!("{quote}{one}"),
                    format!("{one}{quote}"),
                    format!("a{quote} OR 1=1 {one}{quote}"),
                ] {
                    let expanded = expand(template, &scope(&tenant));
                    // The query is the harmless one with the literal swapped: the tenant
                    // value appears only inside its quoted literals, escaped.
                    let literal = sql_string(&tenant);
                    assert_eq!(
                        expanded,
                        harmless.replace("'TENANT'", &literal),
                        "tenant value {tenant:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_tenant_cannot_escape_its_string() {
        let expanded = expand("${tenant:sqlstring}", &scope("x' OR 1=1 --\\"));
        assert_eq!(expanded, "'x\\' OR 1=1 --\\\\'");
    }

    #[test]
    fn buckets_are_whole_minutes_hours_or_days_by_range() {
        let day = scope("");
        assert_eq!(day.interval_s(), 3_600);
        let six_hours = PanelRange {
            to: day.from + 6 * 3_600,
            ..day.clone()
        };
        assert_eq!(six_hours.interval_s(), 180);
        let week = PanelRange {
            to: day.from + 7 * 86_400,
            ..day.clone()
        };
        assert_eq!(week.interval_s(), 7_200);
        let hour = PanelRange {
            to: day.from + 3_600,
            ..day.clone()
        };
        assert_eq!(hour.interval_s(), 60);
        let month = PanelRange {
            to: day.from + 30 * 86_400,
            ..day
        };
        assert_eq!(month.interval_s(), 86_400);
    }
}
