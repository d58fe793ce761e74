//! Every dashboard panel's SQL, taken from the Grafana JSON files with the macros expanded as
//! Grafana would, runs on the ClickHouse server the suite started, over generated traffic; the
//! totals it shows agree with the public views.

use salestalk_dashboards::{Scope, expand, grafana};
use serde_json::Value;

use crate::exactness::{PARTITIONS, setup_on};
use crate::support::{Isolated, salestalk, stdout_of};

const GRAFANA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/grafana");

fn column(result: &Value, name: &str) -> Vec<Value> {
    let index = result["meta"]
        .as_array()
        .and_then(|meta| meta.iter().position(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no column {name} in {}", result["meta"]));
    result["data"]
        .as_array()
        .map(|rows| rows.iter().map(|row| row[index].clone()).collect())
        .unwrap_or_default()
}

fn sum(values: &[Value]) -> f64 {
    values.iter().filter_map(Value::as_f64).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grafana_panel_query_runs_and_agrees_with_the_views() {
    let isolated = Isolated::create("it-dashboards", PARTITIONS).await;
    let setup = setup_on(isolated, 6_000, 20);
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let endpoint = setup.isolated.endpoint();
    let now = chrono::Utc::now().timestamp();
    // The generated traffic spans the last few minutes; a month covers it, as on a dashboard.
    let month = Scope {
        from: now - 30 * 86_400,
        to: now + 3_600,
        tenant: String::new(),
    };
    let views = |sql: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            let result = endpoint.query_json(sql).await.expect(sql);
            sum(&column(&result, "n"))
        }
    };
    let total_events = views("SELECT toFloat64(sum(events)) AS n FROM event_volume").await;
    let total_cost = views("SELECT sum(cost_nanos) / 1e9 AS n FROM tenant_cost_daily").await;
    let pending = views("SELECT toFloat64(sum(entries)) AS n FROM dlq_depth").await;
    assert!(total_events > 1_000.0 && total_cost > 0.0 && pending > 0.0);

    let mut ran = 0;
    let mut results = std::collections::BTreeMap::new();
    let mut queries = std::collections::BTreeMap::new();
    for dashboard in ["sre", "product", "billing"] {
        let path = format!("{GRAFANA}/salestalk-{dashboard}.json");
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard"))
                .expect("json");
        for (title, sql) in grafana::sql_of(&document) {
            let expanded = expand(&sql, &month);
            let result = endpoint
                .query_json(&expanded)
                .await
                .unwrap_or_else(|e| panic!("{dashboard} / {title}: {e}\n{expanded}"));
            ran += 1;
            results.insert((dashboard, title.clone()), result);
            queries.insert((dashboard, title), sql);
        }
    }
    assert_eq!(ran, 17, "every ClickHouse panel ran");

    let panel = |dashboard: &'static str, title: &str| {
        results
            .get(&(dashboard, title.to_string()))
            .unwrap_or_else(|| panic!("no panel {dashboard} / {title}"))
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    assert!(close(
        sum(&column(panel("sre", "Event volume by type"), "value")),
        total_events
    ));
    assert!(close(
        sum(&column(panel("sre", "Events in range by type"), "value")),
        total_events
    ));
    assert!(close(
        sum(&column(panel("sre", "DLQ depth (pending now)"), "value")),
        pending
    ));
    assert!(close(
        sum(&column(panel("billing", "Cost per day (USD)"), "value")),
        total_cost
    ));
    let tenants = panel("billing", "Cost and tokens per tenant");
    assert!(close(sum(&column(tenants, "cost_nanos")) / 1e9, total_cost));
    let rate = column(panel("sre", "Publish success rate"), "value");
    assert!(
        rate[0].as_f64().is_some_and(|r| r > 0.9 && r < 1.0),
        "{rate:?}"
    );
    let latency = panel("sre", "Processing latency per consumer (ms)");
    assert_eq!(column(latency, "consumer").len(), 3, "three consumers");
    let conversations = sum(&column(
        panel("product", "Conversations completed"),
        "value",
    ));
    assert!(conversations > 0.0);
    assert_eq!(
        column(panel("product", "Engagement"), "completed")[0].as_f64(),
        Some(conversations)
    );

    // One tenant: its share only, and a hostile tenant name is just a name.
    let first_tenant = column(tenants, "tenant_id")[0].clone();
    let tenant = first_tenant.as_str().expect("a tenant").to_string();
    let one = Scope {
        tenant: tenant.clone(),
        ..month.clone()
    };
    let sql = &queries[&("billing", "Cost and tokens per tenant".to_string())];
    let only = endpoint
        .query_json(&expand(sql, &one))
        .await
        .expect("one tenant");
    assert_eq!(column(&only, "tenant_id"), vec![first_tenant]);
    let hostile = Scope {
        tenant: "x' OR 1=1 OR tenant_id = 'y?".into(),
        ..month
    };
    let none = endpoint
        .query_json(&expand(sql, &hostile))
        .await
        .expect("hostile tenant");
    assert_eq!(none["rows"].as_u64(), Some(0), "{none}");
    setup.isolated.remove().await;
}
