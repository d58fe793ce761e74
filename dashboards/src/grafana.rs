//! The dashboards as Grafana dashboard JSON for the ClickHouse datasource plugin
//! (`grafana-clickhouse-datasource`), with the lag panel on a Prometheus datasource scraping
//! the pipeline's `/metrics`. The files under `dashboards/grafana/` are generated from here and
//! a test keeps them in step (`SALESTALK_BLESS=1` rewrites them).

use serde_json::{Value, json};

use salestalk_alerting::Comparison;
use salestalk_alerting::objectives::Objective;

use crate::panels::{Chart, Dashboard, Panel, Source, Unit};

/// The plugin's id.
pub const CLICKHOUSE_PLUGIN: &str = "grafana-clickhouse-datasource";

/// The dashboard's JSON, as Grafana imports or provisions it.
pub fn dashboard_json(dashboard: &Dashboard) -> Value {
    let clickhouse = json!({"type": CLICKHOUSE_PLUGIN, "uid": "${datasource}"});
    let prometheus = json!({"type": "prometheus", "uid": "${prometheus}"});
    let panels: Vec<Value> = dashboard
        .panels
        .iter()
        .enumerate()
        .map(|(i, panel)| {
            let (width, height) = match panel.chart {
                Chart::Stat => (6, 5),
                Chart::Timeseries | Chart::Bar => (12, 8),
                Chart::Table => (24, 8),
            };
            let kind = match panel.chart {
                Chart::Timeseries => "timeseries",
                Chart::Bar => "barchart",
                Chart::Stat => "stat",
                Chart::Table => "table",
            };
            let (datasource, target) = match &panel.source {
                Source::Sql(sql) | Source::ActiveAlerts(sql) => (
                    clickhouse.clone(),
                    json!({
                        "refId": "A",
                        "datasource": clickhouse,
                        "editorType": "sql",
                        "queryType": if panel.chart == Chart::Timeseries { "timeseries" } else { "table" },
                        // The plugin's formats: 0 time series, 1 table.
                        "format": if panel.chart == Chart::Timeseries { 0 } else { 1 },
                        "rawSql": sql.replace(crate::TENANT_FILTER, GRAFANA_TENANT_FILTER),
                    }),
                ),
                Source::Lag { promql } => (
                    prometheus.clone(),
                    json!({"refId": "A", "datasource": prometheus, "expr": promql, "instant": true, "legendFormat": "{{topic}}"}),
                ),
            };
            json!({
                "id": i + 1,
                "type": kind,
                "title": panel.title,
                "datasource": datasource,
                "gridPos": {"x": (i as u64 * width) % 24, "y": i as u64 * height, "w": width, "h": height},
                "fieldConfig": {"defaults": defaults(panel), "overrides": overrides(panel)},
                "options": {},
                "targets": [target],
            })
        })
        .collect();
    json!({
        "uid": format!("salestalk-{}", dashboard.id),
        "title": dashboard.title,
        "tags": ["salestalk"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "ClickHouse", "type": "datasource", "query": CLICKHOUSE_PLUGIN},
            {"name": "prometheus", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
            {"name": "tenant", "label": "Tenant (empty: all)", "type": "textbox", "query": "",
             "current": {"text": "", "value": ""}},
        ]},
        "panels": panels,
    })
}

/// Every SQL query of a dashboard JSON document, in panel order (what the suite runs).
pub fn sql_of(document: &Value) -> Vec<(String, String)> {
    document["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), t["rawSql"].as_str()?.to_string())))
        })
        .collect()
}

/// The tenant condition in Grafana: its text variable `tenant`, empty for every tenant.
/// Grafana's own users and permissions decide who sees a dashboard at all.
pub const GRAFANA_TENANT_FILTER: &str =
    "(${tenant:sqlstring} = '' OR tenant_id = ${tenant:sqlstring})";

/// The panel's unit and, where the contract's objective applies to its value, the target
/// and threshold as Grafana thresholds: drawn as lines on a time series, coloured on a stat.
fn defaults(panel: &Panel) -> Value {
    let mut defaults = json!({"unit": panel.unit.id()});
    if let Some(mark) = panel.marks.iter().find(|m| m.column == "value") {
        defaults["thresholds"] = thresholds(&mark.objective, panel.unit);
        if panel.chart == Chart::Timeseries {
            defaults["custom"] = json!({"thresholdsStyle": {"mode": "line+area"}});
        } else {
            defaults["color"] = json!({"mode": "thresholds"});
        }
    }
    defaults
}

/// An objective as Grafana threshold steps (each applies from its value up): green where the
/// target is met, orange where only the target is missed, red past the alert threshold.
/// Counts step at the next whole number, since "above 10" begins at 11.
fn thresholds(objective: &Objective, unit: Unit) -> Value {
    let above = |limit: f64| {
        if unit == Unit::Count {
            limit.floor() + 1.0
        } else {
            limit
        }
    };
    let steps = match objective.comparison {
        Comparison::Above => json!([
            {"color": "green", "value": null},
            {"color": "orange", "value": above(objective.target)},
            {"color": "red", "value": above(objective.alert)},
        ]),
        Comparison::Below => json!([
            {"color": "red", "value": null},
            {"color": "orange", "value": objective.alert},
            {"color": "green", "value": objective.target},
        ]),
    };
    json!({"mode": "absolute", "steps": steps})
}

/// A table's declared column units as Grafana field overrides, and a marked column's target
/// and threshold as coloured text. Grafana has no exact nanodollar unit: those columns say so
/// in their display name instead.
fn overrides(panel: &Panel) -> Vec<Value> {
    panel
        .columns
        .iter()
        .map(|(name, unit)| {
            let mut properties = vec![match unit {
                Unit::NanoUsd => {
                    json!({"id": "displayName", "value": format!("{name} (USD x 1e9)")})
                }
                other => json!({"id": "unit", "value": other.id()}),
            }];
            if let Some(mark) = panel.marks.iter().find(|m| m.column == *name) {
                properties
                    .push(json!({"id": "thresholds", "value": thresholds(&mark.objective, *unit)}));
                properties
                    .push(json!({"id": "custom.cellOptions", "value": {"type": "color-text"}}));
            }
            json!({"matcher": {"id": "byName", "options": name}, "properties": properties})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed files are what this module generates; `SALESTALK_BLESS=1` rewrites them.
    #[test]
    fn the_committed_grafana_files_are_generated_from_the_panels() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana");
        for dashboard in crate::dashboards() {
            let path = format!("{dir}/salestalk-{}.json", dashboard.id);
            let generated = serde_json::to_string_pretty(&dashboard_json(&dashboard))
                .expect("serialisable")
                + "\n";
            if std::env::var_os("SALESTALK_BLESS").is_some() {
                std::fs::write(&path, &generated).expect("write");
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == generated,
                "{path} is not what the panels generate; run SALESTALK_BLESS=1 cargo test -p salestalk-dashboards"
            );
            let document: Value = serde_json::from_str(&committed).expect("json");
            let sql = sql_of(&document);
            let expected = dashboard
                .panels
                .iter()
                .filter(|p| !matches!(p.source, Source::Lag { .. }))
                .count();
            assert_eq!(sql.len(), expected, "every ClickHouse panel has its SQL");
            // Every target and threshold drawn on a panel is in its Grafana thresholds.
            for (panel, json) in dashboard
                .panels
                .iter()
                .zip(document["panels"].as_array().expect("panels"))
            {
                for mark in &panel.marks {
                    let text = json["fieldConfig"].to_string();
                    for limit in [mark.objective.target, mark.objective.alert] {
                        let shown = [limit, limit.floor() + 1.0]
                            .iter()
                            .any(|v| text.contains(&format!("\"value\":{}", serde_json::json!(v))));
                        assert!(shown, "{}: {limit} not drawn in {text}", panel.id);
                    }
                }
            }
        }
    }
}
