//! The schema and the sink on the real server: migrations, the atomic flush, restoring a
//! task from what was written, and the public views reading it back.

use salestalk_operators::RawMessage;
use salestalk_operators::aggregate::Family;
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_sinks::clickhouse::write_flushes;

use crate::support::{drop_database, endpoint, unique};

use crate::support::fixtures::SPEC_EXAMPLES as EXAMPLES;
/// The v2 classification example, with an intent newer than this build.
const V2_WITH_NEW_INTENT: &str = include_str!("../../contracts/tests/corpus/v2-examples.jsonl");

fn task_settings() -> TaskSettings {
    TaskSettings {
        // The examples span 08:00 to 12:45; a day of lateness keeps them all.
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
    }
}

/// `lines` as the messages of `topic`/`partition` from offset 0, all read at `broker_ms`.
fn raw_messages<'a>(
    topic: &'a str,
    partition: i32,
    lines: &[&'a str],
    broker_ms: i64,
) -> Vec<RawMessage<'a>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| RawMessage {
            topic,
            partition,
            offset: i as i64,
            timestamp_ms: Some(broker_ms),
            payload: Some(line.as_bytes()),
            path: salestalk_operators::PublishPath::Direct,
            sequence: None,
        })
        .collect()
}

#[tokio::test]
async fn migrations_apply_once_and_flushes_round_trip_through_the_views() {
    let endpoint = endpoint(&unique("it_schema").replace('-', "_"));
    let profile = endpoint.probe().await.expect("probe");
    let first = endpoint.migrate(&profile).await.expect("migrate");
    assert!(first >= 1, "applied {first}");
    assert_eq!(endpoint.migrate(&profile).await.expect("migrate again"), 0);

    let v2 = V2_WITH_NEW_INTENT
        .trim()
        .replace("\"intent\":\"fact_retrieval\"", "\"intent\":\"small_talk\"");
    assert!(v2.contains("small_talk"), "{v2}");
    let lines: Vec<&str> = EXAMPLES.lines().collect();
    let broker_ms = 1_762_693_200_000; // 2025-11-09T13:00:00Z, after every example
    let all: Vec<&str> = lines
        .iter()
        .copied()
        .chain(lines.iter().copied().take(1)) // a resend of the first
        .chain([v2.as_str(), "{broken"])
        .collect();
    let messages = raw_messages("topic-a", 3, &all, broker_ms);
    let mut task = Task::new("topic-a", 3, task_settings(), Default::default());
    task.process(&messages);
    let flush = task.flush(broker_ms + 2_000);
    write_flushes(
        &endpoint,
        std::slice::from_ref(&flush),
        (broker_ms + 2_000) as u64,
    )
    .await
    .expect("write");
    // Writing the same flush again (a retry after an unknown outcome) changes nothing.
    write_flushes(
        &endpoint,
        std::slice::from_ref(&flush),
        (broker_ms + 2_000) as u64,
    )
    .await
    .expect("rewrite");

    let client = endpoint.client();
    let events: u64 = client
        .query("SELECT sum(events) FROM event_volume")
        .fetch_one()
        .await
        .expect("volume");
    assert_eq!(events, 6);
    let (cost, tokens): (String, u64) = client
        .query("SELECT toString(sum(cost_usd)), sum(total_tokens) FROM tenant_cost_daily WHERE tenant_id = 'tenant-abc123'")
        .fetch_one()
        .await
        .expect("cost");
    assert_eq!((cost.as_str(), tokens), ("0.021700000", 543));
    let archived: u64 = client
        .query("SELECT count() FROM events_raw FINAL")
        .fetch_one()
        .await
        .expect("archive");
    assert_eq!(archived, 6);
    let dead: Vec<(i64, String)> = client
        .query("SELECT offset, reason FROM dead_letters FINAL")
        .fetch_all()
        .await
        .expect("dead letters");
    assert_eq!(dead, vec![(7, "not_json".to_string())]);
    let intents: (u64, f64) = client
        .query("SELECT classifications, avg_confidence FROM intents_per_tenant WHERE intent = 'fact_retrieval'")
        .fetch_one()
        .await
        .expect("intents");
    assert_eq!(intents, (1, 0.92));
    let latency: Vec<(String, u64)> = client
        .query("SELECT consumer, toUInt64(sum(events)) FROM processing_latency GROUP BY consumer ORDER BY consumer")
        .fetch_all()
        .await
        .expect("latency");
    assert_eq!(
        latency,
        vec![
            ("clickhouse.archive".to_string(), 6),
            ("clickhouse.dead_letters".to_string(), 1),
            ("clickhouse.metrics".to_string(), 6)
        ]
    );

    // Every table and view reloads from the definition the server stored, as it does when the
    // server restarts (18.16 once stored a view it could not parse back, and then refused to
    // start at all).
    let stored: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        .fetch_all()
        .await
        .expect("tables");
    for name in &stored {
        for verb in ["DETACH", "ATTACH"] {
            client
                .query(&format!("{verb} TABLE {}.{name}", endpoint.database))
                .execute()
                .await
                .unwrap_or_else(|e| panic!("{verb} {name}: {e}"));
        }
    }

    // A downstream consumer group's lag sample and reported failure, as `salestalk run`
    // stores them, so the views over them have rows too.
    endpoint
        .record_lag(&[salestalk_store::tables::consumer_group_lag::LagSample {
            minute: 1_762_646_400,
            consumer_group: "insights-worker".into(),
            topic: "salestalk.consumer.insights-queue".into(),
            partition: 0,
            lag_messages: 3,
            lag_ms: 1_500,
            measured_at_ms: 1_762_646_401_000,
            throttled: 0,
            instance: String::new(),
        }])
        .await
        .expect("lag sample");
    endpoint
        .record_failure_reports(
            &[salestalk_store::tables::consumer_failures::FailureReport {
                minute: 1_762_646_400,
                consumer_group: "insights-worker".into(),
                tenant_id: "tenant-1".into(),
                event_id: "e".into(),
                event_type: "classification.performed.v1".into(),
                error: "timeout".into(),
                partition: 0,
                offset: 7,
            }],
        )
        .await
        .expect("failure report");

    // A late event on another partition (its window final there), and a check of its day by
    // the corrector, so the late and correction views have rows too.
    let five_minutes = TaskSettings {
        allowed_lateness_ms: 300_000,
        ..task_settings()
    };
    let mut late_task = Task::new("topic-b", 0, five_minutes, Default::default());
    let late_event = |id: &str, at: &str| {
        let mut event: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        event["eventId"] = serde_json::json!(id);
        event["timestamp"] = serde_json::json!(at);
        event.to_string()
    };
    let on_time = late_event(
        "0b9a4c2e-0000-4000-8000-000000000001",
        "2025-11-09T12:00:00.000Z",
    );
    let late = late_event(
        "0b9a4c2e-0000-4000-8000-000000000002",
        "2025-11-09T09:00:00.000Z",
    );
    // And one without `metadata`: accepted with a contract warning, so that view has rows.
    let warned = {
        let mut event: serde_json::Value = serde_json::from_str(&late_event(
            "0b9a4c2e-0000-4000-8000-000000000003",
            "2025-11-09T12:00:01.000Z",
        ))
        .expect("json");
        event.as_object_mut().expect("an object").remove("metadata");
        event.to_string()
    };
    let late_messages = raw_messages("topic-b", 0, &[&on_time, &late, &warned], broker_ms);
    late_task.process(&late_messages);
    let late_flush = late_task.flush(broker_ms + 3_000);
    assert!(
        late_flush.archive.iter().any(|e| e.late),
        "archived as late"
    );
    write_flushes(&endpoint, &[late_flush], (broker_ms + 3_000) as u64)
        .await
        .expect("write the late event");
    endpoint
        .record_checks(&[salestalk_store::tables::corrections::CorrectionRecord {
            tenant_id: "tenant-abc123".into(),
            day: (1_762_646_400 / 86_400) as u16,
            checked_at_ms: 1_762_750_000_000,
            epoch: salestalk_operators::time::epoch::correction_epoch(1_762_750_000_000),
            trigger: "first_check".into(),
            live_before: 8,
            events: 8,
            late_events: 1,
            duplicates_removed: 1,
            late_arrivals_seen: 0,
            late_arrivals_counted: 0,
            rows_written: 10,
            waiting_tasks: Vec::new(),
        }])
        .await
        .expect("a check");

    // Every view runs on this server, and the examples (one of each event type, plus a broken
    // message) give each of them rows.
    let views: Vec<String> = client
        .query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View'",
        )
        .fetch_all()
        .await
        .expect("views");
    assert_eq!(views.len(), salestalk_store::schema::views("x").len() / 2);
    for view in views {
        let rows: u64 = client
            .query(&format!("SELECT count() FROM {view}"))
            .fetch_one()
            .await
            .expect(&view);
        assert!(rows > 0, "{view} is empty");
    }

    // A restarted task resumes exactly where the flush left it.
    let settings = task_settings();
    let state = endpoint
        .task_state(
            "topic-a",
            3,
            settings.allowed_lateness_ms,
            settings.dedup_horizon_ms,
        )
        .await
        .expect("restore");
    let mut restored = Task::resume("topic-a", 3, settings, state);
    // Where the flush left it, writing epochs of a new generation.
    let resumed = salestalk_operators::flush::Checkpoint {
        epoch: salestalk_operators::time::epoch::next_generation(flush.checkpoint.epoch),
        ..flush.checkpoint
    };
    assert_eq!(*restored.checkpoint(), resumed);
    assert_eq!(restored.state_size().1, 6, "counted ids are remembered");
    let window = salestalk_operators::windows::window_start(1_762_691_696_789);
    let dims = ["classification.performed.v1", "chat-handler", ""];
    assert_eq!(
        restored
            .window(Family::Volume, window, "tenant-abc123", dims)
            .map(|v| v.ints[0]),
        Some(1)
    );
    restored.process(&messages);
    assert_eq!(
        restored.checkpoint().next_offset,
        resumed.next_offset,
        "nothing below the checkpoint is processed again"
    );
    let again = restored.flush(broker_ms + 10_000);
    assert!(again.archive.is_empty() && again.dead_letters.is_empty());

    drop_database(&endpoint.database).await;
}

/// The start-up check of `window_state`'s sorting key (`salestalk run` warns when it is the
/// old one) holds while views of the database are dropped and made again, as when two
/// processes migrate a fresh database at once (`deploy/run-demo` starts `ingest` and `run`
/// together); it says `false` for a table with the old key and `true` where there is none yet.
#[tokio::test]
async fn the_sorting_key_check_holds_while_views_are_dropped_and_made() {
    use salestalk_store::tables::window_state::generation_in_sorting_key;
    let endpoint = endpoint(&unique("it_sortkey").replace('-', "_"));
    let profile = endpoint.probe().await.expect("probe");
    endpoint.migrate(&profile).await.expect("migrate");
    let database = endpoint.database.clone();
    // Another process's `migrate` making every view again (as after an upgrade: the views'
    // recorded fingerprint is gone), three times over.
    let churn = {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                endpoint
                    .client()
                    .query("TRUNCATE TABLE schema_views")
                    .execute()
                    .await
                    .expect("forget the views' fingerprint");
                endpoint.migrate(&profile).await.expect("migrate again");
                let recorded: u64 = endpoint
                    .client()
                    .query("SELECT count() FROM schema_views")
                    .fetch_one()
                    .await
                    .expect("the views' fingerprint");
                assert_eq!(recorded, 1, "the views were made again");
            }
        })
    };
    let mut checks = 0;
    while !churn.is_finished() {
        let kept_apart = generation_in_sorting_key(&endpoint, &database)
            .await
            .unwrap_or_else(|e| panic!("check {checks} while views change: {e}"));
        assert!(
            kept_apart,
            "a table made by this build keeps generations apart"
        );
        checks += 1;
    }
    churn.await.expect("the views were dropped and made");
    assert!(checks > 0, "the check never ran while the views changed");

    // A table made before the key ended with `generation`, and no table at all.
    let old = endpoint.client();
    let old_database = format!("{database}_old");
    for sql in [
        format!("CREATE DATABASE {old_database}"),
        format!(
            "CREATE TABLE {old_database}.window_state (family String, task String, \
             epoch UInt64, window_start DateTime('UTC'), tenant_id String, d1 String, \
             d2 String, d3 String) ENGINE = ReplacingMergeTree(epoch) \
             ORDER BY (family, tenant_id, window_start, d1, d2, d3, task)"
        ),
    ] {
        old.query(&sql).execute().await.expect(&sql);
    }
    assert!(
        !generation_in_sorting_key(&endpoint, &old_database)
            .await
            .expect("the old table's key")
    );
    let none = format!("{database}_none");
    assert!(
        generation_in_sorting_key(&endpoint, &none)
            .await
            .expect("no database, no table")
    );
    drop_database(&old_database).await;
    drop_database(&database).await;
}
