//! The modern-server path: every DDL statement the pipeline would run on ClickHouse 26 (with
//! TTL and LowCardinality), the rows a flush writes, and every documented query, executed in
//! ClickHouse 26.9 in-process (PyPI `chdb-core`, installed by `deploy/services/up`).

use std::io::Write;
use std::process::Command;

use salestalk_alerting::Scope;
use salestalk_dashboards::panels::Source;
use salestalk_operators::RawMessage;
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_sinks::clickhouse::state_records;
use salestalk_store::restore::{CHECKPOINT_QUERY, OPEN_ROWS_QUERY};
use salestalk_store::schema;
use salestalk_store::signals;
use salestalk_store::tables::events_raw::SEEN_QUERY;
use salestalk_store::tables::window_state::CHECKPOINT_FAMILY;
use salestalk_store::tables::window_state::{StateRecord, task_name};
use salestalk_store::{ServerProfile, Version};
use serde_json::{Value, json};

use crate::support::tool_output;

use crate::support::fixtures::SPEC_EXAMPLES as EXAMPLES;
const DB: &str = "salestalk";

fn chdb_python() -> String {
    std::env::var("SALESTALK_CHDB_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/salestalk/chdb-venv/bin/python")
    })
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn array<T: std::fmt::Debug>(values: &[T]) -> String {
    format!(
        "[{}]",
        values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(",")
    )
}

fn values(record: &StateRecord) -> String {
    format!(
        "({},{},{},toDateTime({},'UTC'),{},{},{},{},{},{},{},{})",
        quoted(&record.family),
        quoted(&record.task),
        record.epoch,
        record.window_start,
        quoted(&record.tenant_id),
        quoted(&record.d1),
        quoted(&record.d2),
        quoted(&record.d3),
        array(&record.ints),
        array(&record.floats),
        array(&record.hist_buckets),
        array(&record.hist_counts),
    )
}

/// Substitutes `?` placeholders in order, as the client would bind them.
fn bind(sql: &str, values: &[&str]) -> String {
    let mut out = String::new();
    let mut values = values.iter();
    for c in sql.chars() {
        match c {
            '?' => out.push_str(values.next().expect("enough values")),
            c => out.push(c),
        }
    }
    out
}

#[test]
fn every_statement_and_documented_query_runs_on_clickhouse_26() {
    let profile = ServerProfile::for_version(Version::parse("26.9.2").expect("version"));
    let mut statements = vec![format!("CREATE DATABASE IF NOT EXISTS {DB}")];
    statements.extend(
        schema::migrations(&profile, DB)
            .into_iter()
            .flat_map(|m| m.statements),
    );
    statements.extend(schema::views(DB));
    // The TTLs from [retention], as every migrate sets them.
    statements.extend(salestalk_store::retention::ttl_statements(
        &profile,
        DB,
        &crate::support::settings().retention,
    ));

    let broker_ms = 1_762_693_200_000;
    let messages: Vec<RawMessage<'_>> = EXAMPLES
        .lines()
        .enumerate()
        .map(|(i, line)| RawMessage {
            topic: "t",
            partition: 0,
            offset: i as i64,
            timestamp_ms: Some(broker_ms),
            payload: Some(line.as_bytes()),
            path: salestalk_operators::PublishPath::Direct,
            sequence: None,
        })
        .collect();
    let settings = TaskSettings {
        allowed_lateness_ms: 86_400_000,
        correction_horizon_ms: 7 * 86_400_000,
        max_future_skew_ms: 600_000,
        dedup_horizon_ms: 86_400_000,
        dedup_max_ids: 1_000_000,
        dedup_max_ids_per_tenant: 1_000_000,
        max_message_bytes: 1 << 20,
        max_new_enum_values: 1_000,
        max_sources_per_day: 1_000,
        version_ends: Default::default(),
    };
    let mut task = Task::new("t", 0, settings, Default::default());
    task.process(&messages);
    let flush = task.flush(broker_ms + 1_500);
    let task = task_name(&flush.topic, flush.partition);
    let rows: Vec<String> = state_records(&flush, &task, 1_790_000_000_000)
        .iter()
        .map(|record| values(&record.to_record()))
        .collect();
    statements.push(format!(
        "INSERT INTO {DB}.window_state VALUES {}",
        rows.join(",")
    ));

    let mut queries = serde_json::Map::new();
    for view in schema::views(DB)
        .iter()
        .filter_map(|s| s.strip_prefix(&format!("CREATE VIEW {DB}.")))
    {
        let name = view.split_whitespace().next().expect("view name");
        queries.insert(
            name.to_string(),
            json!(format!("SELECT * FROM {DB}.{name}")),
        );
    }
    queries.insert(
        "latency_percentiles".into(),
        json!(schema::latency_percentiles_query(
            DB,
            "tenant_id IN ('tenant-abc123')"
        )),
    );
    let in_db = |sql: &str| {
        sql.replace("FROM window_state", &format!("FROM {DB}.window_state"))
            .replace("FROM events_raw", &format!("FROM {DB}.events_raw"))
    };
    queries.insert(
        "restore_checkpoint".into(),
        json!(in_db(&bind(
            CHECKPOINT_QUERY,
            &[&format!("'{CHECKPOINT_FAMILY}'"), "'t/0'"]
        ))),
    );
    queries.insert(
        "restore_rows".into(),
        json!(in_db(&bind(
            OPEN_ROWS_QUERY,
            &[
                "'t/0'",
                &format!("'{CHECKPOINT_FAMILY}'"),
                // The lineage of the flush's checkpoint (epoch 1): generation 0 up to it, and
                // a later generation that did not lead there.
                "0",
                "1",
                "[0, 3]",
                "[1, 12884901889]",
                "0"
            ]
        ))),
    );
    queries.insert(
        "restore_seen".into(),
        json!(in_db(&bind(SEEN_QUERY, &["'t'", "0", "5", "0"]))),
    );
    let view_count = queries.len() - 4;
    // The queries below name tables as the dashboards and alerts do, without the database.
    statements.push(format!("USE {DB}"));
    // Every dashboard panel, macros expanded over ten years up to now.
    let now = chrono::Utc::now().timestamp();
    let scope = salestalk_dashboards::PanelRange {
        from: now - 10 * 365 * 86_400,
        to: now,
        tenant: String::new(),
        tenants: salestalk_dashboards::Tenants::All,
    };
    let mut panel_count = 0;
    for dashboard in salestalk_dashboards::dashboards() {
        for panel in &dashboard.panels {
            let (Source::Sql(sql) | Source::ActiveAlerts(sql)) = &panel.source else {
                continue;
            };
            queries.insert(
                format!("panel_{}_{}", dashboard.id, panel.id),
                json!(salestalk_dashboards::expand(sql, &scope)),
            );
            panel_count += 1;
        }
    }
    // The alert evaluator's signal queries, for every signal in both scopes.
    let mut signal_count = 0;
    for mut rule in salestalk_alerting::Rule::spec_defaults() {
        rule.min_events = 0;
        // The examples' windows are in 2025: look back ten years.
        rule.lookback_ms = 10 * 365 * 86_400_000;
        for scope in [Scope::Global, Scope::Tenant] {
            rule.scope = scope;
            let mut sql = signals::signal_sql(&rule);
            for table in [
                "publish_outcomes",
                "processing_latency",
                "dlq_depth",
                "metrics_latency",
                "metrics_dead_letters",
                "consumer_lag",
                "event_versions",
                "metrics_volume",
                "metrics_publish",
            ] {
                sql = sql.replace(&format!("FROM {table}"), &format!("FROM {DB}.{table}"));
            }
            queries.insert(
                format!("signal_{}_{}", rule.name, scope.as_ref()),
                json!(sql),
            );
            signal_count += 1;
        }
    }

    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(
        json!({"statements": statements, "queries": queries})
            .to_string()
            .as_bytes(),
    )
    .expect("write");
    let mut command = Command::new(chdb_python());
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/modern_clickhouse/run_in_chdb.py"
        ))
        .arg(file.path());
    let stdout = tool_output(&mut command, "deploy/services/up (chdb-core)");
    let result: Value = serde_json::from_slice(&stdout).expect("json result");
    assert!(
        result["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("26.")),
        "{}",
        result["version"]
    );
    assert_eq!(
        result["failed"],
        Value::Null,
        "a statement failed on ClickHouse 26"
    );
    let results = &result["results"];
    assert_eq!(
        results.as_object().map(|o| o.len()),
        Some(view_count + 4 + signal_count + panel_count)
    );
    let volume = &results["panel_sre_volume_by_type"];
    let shown: f64 = volume
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .sum();
    assert_eq!(
        shown, 5.0,
        "the five examples, in the volume panel: {volume}"
    );
    // The five spec examples were all published: a success rate of 1, from 5 messages.
    let rate = &results["signal_PublishSuccessRateLow_tenant"][0];
    assert_eq!(rate["subject_tenant"], "tenant-abc123", "{rate}");
    assert_eq!(rate["measured"].as_u64(), Some(5), "{rate}");
    assert_eq!(rate["value"].as_f64(), Some(1.0), "{rate}");

    let events: u64 = results["event_volume"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["events"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(events, 5);
    let cost = &results["tenant_cost_daily"][0];
    assert_eq!(cost["cost_nanos"].as_i64(), Some(21_700_000), "{cost}");
    assert_eq!(cost["cost_usd"].to_string(), "0.0217", "{cost}");
    let latency = results["latency_percentiles"].as_array().expect("rows");
    assert!(
        latency
            .iter()
            .any(|r| r["consumer"] == "clickhouse.metrics" && r["p95_ms"].as_f64().is_some()),
        "{latency:?}"
    );
    // ClickHouse renders UInt64 as a JSON string by default.
    assert_eq!(
        results["restore_checkpoint"][0]["epoch"]
            .to_string()
            .trim_matches('"'),
        "1"
    );
    assert_eq!(
        results["restore_rows"].as_array().map(Vec::len),
        Some(flush.rows.len())
    );
}
