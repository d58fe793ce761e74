//! Every dashboard panel's SQL, taken from the Grafana JSON files with the macros expanded as
//! Grafana would, runs on the ClickHouse server the suite started, over generated traffic; the
//! totals it shows agree with the public views.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use salestalk_dashboards::panels::Source;
use salestalk_dashboards::{PanelRange, expand, grafana};
use serde_json::Value;

use crate::exactness::{PARTITIONS, pipeline_env, setup_on};
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
    let month = PanelRange {
        from: now - 30 * 86_400,
        to: now + 3_600,
        tenant: String::new(),
        tenants: salestalk_dashboards::Tenants::All,
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
    let all = salestalk_dashboards::dashboards();
    let declared: Vec<&salestalk_dashboards::Panel> = all
        .iter()
        .flat_map(|d| d.panels.iter())
        .filter(|p| !matches!(p.source, Source::Lag { .. }))
        .collect();
    assert_eq!(ran, declared.len(), "every ClickHouse panel ran");
    // A table's columns are exactly the ones it declares a unit for, in order.
    for panel in declared
        .iter()
        .filter(|p| p.chart == salestalk_dashboards::Chart::Table)
    {
        let result = results
            .iter()
            .find(|((_, title), _)| title == panel.title)
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("no result for {}", panel.title));
        let names: Vec<&str> = result["meta"]
            .as_array()
            .expect("meta")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let units: Vec<&str> = panel.columns.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, units, "{}: columns and declared units", panel.id);
    }

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
    let rate = column(
        panel(
            "sre",
            "Publish success rate (accepted / submitted, throttled apart)",
        ),
        "value",
    );
    assert!(
        rate[0].as_f64().is_some_and(|r| r > 0.9 && r < 1.0),
        "{rate:?}"
    );
    // The pipeline's three consumers and the six routing targets of the default table.
    let latency = panel("sre", "Processing latency per consumer (ms)");
    let consumers: Vec<String> = column(latency, "consumer")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let targets = crate::support::settings().routing.targets.len();
    assert_eq!(consumers.len(), 3 + targets, "{consumers:?}");
    assert_eq!(
        consumers
            .iter()
            .filter(|c| c.starts_with("target."))
            .count(),
        targets,
        "{consumers:?}"
    );
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
    let one = PanelRange {
        tenant: tenant.clone(),
        ..month.clone()
    };
    let sql = &queries[&("billing", "Cost and tokens per tenant".to_string())];
    let only = endpoint
        .query_json(&expand(sql, &one))
        .await
        .expect("one tenant");
    assert_eq!(column(&only, "tenant_id"), vec![first_tenant]);
    let hostile = PanelRange {
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

/// A panel's SQL from the built-in dashboards (the same text as the Grafana files).
fn panel_sql(dashboard: &str, id: &str) -> String {
    let dashboards = salestalk_dashboards::dashboards();
    let panel = dashboards
        .iter()
        .find(|d| d.id == dashboard)
        .and_then(|d| d.panel(id))
        .unwrap_or_else(|| panic!("no panel {dashboard}/{id}"));
    match &panel.source {
        Source::Sql(sql) => sql.clone(),
        other => panic!("{dashboard}/{id} is not SQL: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn panels_read_from_day_hour_and_minute_rows_give_the_minute_views_sums_over_any_range() {
    // Three days of sparse traffic, so whole days, whole hours and edge minutes all hold data.
    let isolated = Isolated::create("it-rollup-ranges", PARTITIONS).await;
    let env = pipeline_env(&isolated);
    let now = chrono::Utc::now().timestamp();
    let start = now - 3 * 86_400 - 1_234;
    let events = 5_000u64;
    let rate = events as f64 / (now - 600 - start) as f64;
    let begin = chrono::DateTime::from_timestamp(start, 0).expect("valid time");
    stdout_of(&salestalk(
        &[
            "generate",
            "--kafka",
            "--seed",
            "31",
            "--count",
            &events.to_string(),
            "--start",
            &begin.to_rfc3339(),
            "--rate",
            &rate.to_string(),
            "--tenants",
            "7",
        ],
        &env,
    ));
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));
    let endpoint = isolated.endpoint();

    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut ranges = vec![
        (start - 3_600, now + 60),                              // everything
        (start + 17 * 60, start + 86_400 + 7 * 3_600 + 5 * 60), // a day, hours and minutes
        (start + 86_400, start + 86_400 + 59 * 60),             // under an hour
        (now - 2 * 86_400 - 5, now - 6 * 3_600 + 61),           // whole day, odd edges
    ];
    for _ in 0..8 {
        let from = rng.random_range(start - 600..now);
        ranges.push((from, rng.random_range(from..now + 60)));
    }
    let by_type = panel_sql("sre", "volume_by_type");
    let series = panel_sql("sre", "volume");
    let latency = panel_sql("sre", "latency");
    let mut levels_seen = std::collections::BTreeSet::new();
    for (from, to) in ranges {
        let scope = PanelRange {
            from,
            to,
            tenant: String::new(),
            tenants: salestalk_dashboards::Tenants::All,
        };
        let within =
            format!("window_start >= toDateTime({from}) AND window_start <= toDateTime({to})");
        let minutes = endpoint
            .query_json(&format!(
                "SELECT toFloat64(sum(events)) AS n, toFloat64(uniqExact(toDate(window_start))) AS days, \
                 toFloat64(uniqExact(toStartOfHour(window_start))) AS hours FROM event_volume WHERE {within}"
            ))
            .await
            .expect("minute view");
        let expected = sum(&column(&minutes, "n"));
        if sum(&column(&minutes, "days")) > 2.0 {
            levels_seen.insert("day");
        }
        if sum(&column(&minutes, "hours")) > 2.0 {
            levels_seen.insert("hour");
        }
        for (what, sql) in [("by type", &by_type), ("series", &series)] {
            let shown = endpoint.query_json(&expand(sql, &scope)).await.expect(what);
            assert_eq!(
                sum(&column(&shown, "value")),
                expected,
                "{what} over {from}..{to}"
            );
        }
        // The latency panel counts every event the metrics consumer made durable.
        let counted = endpoint
            .query_json(&format!(
                "SELECT toFloat64(sum(events)) AS n FROM processing_latency \
                 WHERE consumer = 'clickhouse.metrics' AND {within}"
            ))
            .await
            .expect("latency minutes");
        let table = endpoint
            .query_json(&expand(&latency, &scope))
            .await
            .expect("latency");
        let consumers = column(&table, "consumer");
        let metrics = consumers
            .iter()
            .position(|c| c == "clickhouse.metrics")
            .map_or(0.0, |i| column(&table, "events")[i].as_f64().unwrap_or(0.0));
        assert_eq!(
            metrics,
            sum(&column(&counted, "n")),
            "latency over {from}..{to}"
        );
    }
    assert_eq!(
        levels_seen.len(),
        2,
        "ranges spanning days and hours were checked"
    );
    isolated.remove().await;
}

/// What `serve` reads through cannot write: the endpoint it builds for readers refuses an
/// insert, DDL and a change of `readonly`, stops a query over its time and one whose result
/// is over its rows, while the panels' own reads still work.
#[tokio::test]
async fn serve_reads_through_a_connection_that_cannot_write_or_run_away() {
    let isolated = Isolated::create("it-readonly", 1).await;
    let endpoint = isolated.endpoint();
    stdout_of(&salestalk(&["migrate"], &pipeline_env(&isolated)));
    let profile = endpoint.probe().await.expect("probe");
    let limits = salestalk_store::ReaderLimits {
        max_execution_s: 1,
        max_result_rows: 1_000,
    };
    let reading = endpoint.for_readers(&limits, &profile);
    let count = || async {
        endpoint
            .client()
            .query("SELECT count() FROM api_keys")
            .fetch_one::<u64>()
            .await
            .expect("count")
    };
    let before = count().await;
    for sql in [
        "INSERT INTO api_keys (key_id) VALUES ('x')",
        "CREATE TABLE stolen (x UInt8) ENGINE = Memory",
        "DROP TABLE api_keys",
        "SELECT 1 SETTINGS readonly = 0",
    ] {
        let error = reading.query_json(sql).await.expect_err(sql).to_string();
        assert!(
            error.contains("readonly") || error.contains("Cannot") || error.contains("allowed"),
            "{sql}: {error}"
        );
    }
    assert_eq!(count().await, before, "nothing was written");
    // Bounded: a result over the rows, a query over the time.
    let error = reading
        .query_json("SELECT number FROM system.numbers LIMIT 5000")
        .await
        .expect_err("too many rows")
        .to_string();
    assert!(error.contains("rows") || error.contains("Limit"), "{error}");
    let error = reading
        .query_json("SELECT count() FROM system.numbers WHERE sipHash64(number) = 0")
        .await
        .expect_err("too long")
        .to_string();
    assert!(
        error.to_lowercase().contains("timeout") || error.contains("time"),
        "{error}"
    );
    // Reads within the bounds work.
    let answer = reading
        .query_json("SELECT count() AS keys FROM api_keys")
        .await
        .expect("a read");
    assert_eq!(answer["data"][0][0], serde_json::json!(before));
    isolated.remove().await;
}
