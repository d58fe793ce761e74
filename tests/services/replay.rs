//! `salestalk replay` from the raw archive on the real broker and ClickHouse: a dry run counts
//! the selection, a replay sends exactly the archived events of the selection (each once,
//! keyed by tenant, marked with the replay's id) to an isolated topic, never into a live topic
//! unless asked, and every replay is recorded; a replay to a database recomputes the
//! selection's numbers apart; a backfill makes past days' live numbers the recomputation that
//! lets nothing be late.

use std::collections::{BTreeMap, BTreeSet};

use crate::exactness::seeded_setup;
use crate::support::{create_topics_at, salestalk, stdout_of};

/// Every message of `topic` (one partition): (key, eventId in the payload, replay header).
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, String, String)> {
    crate::support::read_topic(brokers, topic)
        .into_iter()
        .map(|m| {
            let replay = m.header("salestalk-replay-of").to_string();
            (m.key, m.event_id, replay)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_sends_exactly_the_selected_archived_events_and_records_it() {
    let setup = seeded_setup("it-replay", 53, 3_000, 20).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let env = &setup.env;
    let client = setup.isolated.endpoint().client();
    let tenant: String = client
        .query("SELECT tenant_id FROM events_raw GROUP BY tenant_id ORDER BY count() DESC LIMIT 1")
        .fetch_one()
        .await
        .expect("a tenant");
    let archived: BTreeSet<String> = client
        .query("SELECT DISTINCT event_id FROM events_raw WHERE tenant_id = ? AND event_type LIKE 'narrative%'")
        .bind(&tenant)
        .fetch_all::<String>()
        .await
        .expect("archived ids")
        .into_iter()
        .collect();
    assert!(archived.len() > 20, "{}", archived.len());
    let types = ["--event-type", "narrative.generated.v1"];

    // Not into a live topic unless asked.
    let live = &setup.isolated.topics[0];
    let refused = salestalk(
        &["replay", "run", "--to-topic", live, "--tenant", &tenant],
        env,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--into-live-topic"));

    let topic = format!("{}.replay", setup.isolated.prefix);
    create_topics_at(&setup.isolated.brokers, std::slice::from_ref(&topic), 1).await;
    let mut args = vec!["replay", "run", "--to-topic", &topic, "--tenant", &tenant];
    args.extend(types);
    let mut dry = args.clone();
    dry.push("--dry-run");
    let counted = stdout_of(&salestalk(&dry, env));
    assert!(
        counted.contains(&format!(
            "would send {0} of {0} archived events",
            archived.len()
        )),
        "{counted}"
    );
    assert!(
        read_topic(&setup.isolated.brokers, &topic).is_empty(),
        "a dry run sends nothing"
    );

    let sent = stdout_of(&salestalk(&args, env));
    assert!(
        sent.contains(&format!("sent {0} of {0}", archived.len())),
        "{sent}"
    );
    let messages = read_topic(&setup.isolated.brokers, &topic);
    let ids: BTreeSet<String> = messages.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(messages.len(), archived.len(), "each event once");
    assert_eq!(ids, archived);
    assert!(
        messages
            .iter()
            .all(|(key, _, replay)| *key == tenant && replay.starts_with("replay-"))
    );

    let listed = stdout_of(&salestalk(&["replay", "list"], env));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].contains(&format!("sent {}", archived.len())),
        "{listed}"
    );
    assert!(lines[1].contains("(dry run)"), "{listed}");
    assert!(lines[0].contains(&format!("tenant={tenant}")), "{listed}");

    // Every selector, each against the archive read independently; ids in either case.
    let (id, other, correlation): (String, String, String) = client
        .query(
            "SELECT any(event_id), anyLast(event_id), any(correlation_id) FROM events_raw \
             WHERE tenant_id = ? AND correlation_id != ''",
        )
        .bind(&tenant)
        .fetch_one()
        .await
        .expect("archived ids");
    assert_ne!(id, other);
    let correlated: u64 = client
        .query("SELECT uniqExact(tenant_id, event_id) FROM events_raw WHERE correlation_id = ?")
        .bind(&correlation)
        .fetch_one()
        .await
        .expect("correlated");
    let (since, until): (u32, u32) = client
        .query(
            "SELECT toUInt32(quantileExact(0.25)(timestamp)), toUInt32(quantileExact(0.75)(timestamp)) \
             FROM events_raw",
        )
        .fetch_one()
        .await
        .expect("a span");
    let in_span: u64 = client
        .query(
            "SELECT uniqExact(tenant_id, event_id) FROM events_raw \
             WHERE toUInt32(timestamp) >= ? AND toUInt32(timestamp) < ?",
        )
        .bind(since)
        .bind(until)
        .fetch_one()
        .await
        .expect("in the span");
    let rfc3339 = |s: u32| {
        chrono::DateTime::from_timestamp(i64::from(s), 0)
            .expect("a time")
            .to_rfc3339()
    };
    let (since_text, until_text) = (rfc3339(since), rfc3339(until));
    let (upper, other_upper) = (id.to_uppercase(), other.to_uppercase());
    let correlation_upper = correlation.to_uppercase();
    let cases: [(&[&str], u64); 4] = [
        (&["--event-id", &upper], 1),
        (&["--event-id", &upper, "--event-id", &other_upper], 2),
        (&["--correlation-id", &correlation_upper], correlated),
        (&["--since", &since_text, "--until", &until_text], in_span),
    ];
    for (selectors, expected) in cases {
        let mut args = vec!["replay", "run", "--to-topic", &topic, "--dry-run"];
        args.extend(selectors);
        let counted = stdout_of(&salestalk(&args, env));
        assert!(
            counted.contains(&format!(
                "would send {expected} of {expected} archived events"
            )),
            "{selectors:?}: {counted}"
        );
    }
    setup.isolated.remove().await;
}

/// The rows of `sql` on `endpoint`, sorted (cells as JSON values).
async fn rows(endpoint: &salestalk_store::Endpoint, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let answer = endpoint
        .query_json(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows: Vec<Vec<serde_json::Value>> = answer["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row.as_array().expect("a row").clone())
        .collect();
    rows.sort_by_key(|row| serde_json::to_string(row).unwrap_or_default());
    rows
}

/// Whether two results are the same: integers and text exactly, floating-point sums to 1e-9
/// relative (ClickHouse, and events fed in another order, add them in another order).
fn same(a: &[Vec<serde_json::Value>], b: &[Vec<serde_json::Value>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| match (p.as_f64(), q.as_f64()) {
                        (Some(p), Some(q)) if !(p.fract() == 0.0 && q.fract() == 0.0) => {
                            (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0)
                        }
                        _ => p == q,
                    })
        })
}

/// The views a recomputation fills: every family's (but latency, publish and dead letters,
/// which describe the live run), at every span, and the named views over them.
async fn recomputed_views(endpoint: &salestalk_store::Endpoint) -> Vec<String> {
    let mut views: Vec<String> = endpoint
        .client()
        .query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() \
             AND name LIKE 'metrics%' AND name NOT LIKE 'metrics_latency%' \
             AND name NOT LIKE 'metrics_publish%' AND name NOT LIKE 'metrics_dead_letters%' \
             ORDER BY name",
        )
        .fetch_all::<String>()
        .await
        .expect("views");
    views.extend(
        ["event_volume", "tenant_cost_daily", "intents_per_tenant"]
            .iter()
            .map(|v| v.to_string()),
    );
    assert!(views.len() > 20, "{views:?}");
    views
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_to_a_database_recomputes_the_selection_and_leaves_the_live_views_alone() {
    let setup = seeded_setup("it-replay-db", 57, 3_000, 20).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    // The live views are the batch recomputation of the traffic (late events dead-lettered).
    crate::exactness::assert_views_equal_recomputation(&setup, false).await;
    let env = &setup.env;
    let live = setup.isolated.endpoint();
    let tenant: String = live
        .client()
        .query("SELECT tenant_id FROM events_raw GROUP BY tenant_id ORDER BY count() DESC LIMIT 1")
        .fetch_one()
        .await
        .expect("a tenant");
    let views = recomputed_views(&live).await;
    let mut before = Vec::new();
    for view in &views {
        before.push(rows(&live, &format!("SELECT * FROM {view}")).await);
    }

    let database = format!("{}_replay", live.database);
    let replay = salestalk_store::Endpoint {
        database: database.clone(),
        ..live.clone()
    };
    let args = [
        "replay",
        "run",
        "--to-database",
        &database,
        "--tenant",
        &tenant,
    ];
    let done = stdout_of(&salestalk(&args, env));
    let archived: u64 = live
        .client()
        .query("SELECT toUInt64(uniqExact(event_id)) FROM events_raw WHERE tenant_id = ?")
        .bind(&tenant)
        .fetch_one()
        .await
        .expect("archived");
    assert!(
        done.contains(&format!("recomputed {archived} of {archived}")),
        "{done}"
    );

    // The replay database holds exactly the live numbers of the selected tenant, which are
    // the recomputation's; the live views did not move.
    let mut recomputed = Vec::new();
    let mut filled = 0;
    for (view, before) in views.iter().zip(&before) {
        let expected = rows(
            &live,
            &format!("SELECT * FROM {view} WHERE tenant_id = '{tenant}'"),
        )
        .await;
        let got = rows(&replay, &format!("SELECT * FROM {view}")).await;
        filled += usize::from(!expected.is_empty());
        assert!(
            same(&got, &expected),
            "{view}: the replay database differs from the live numbers of {tenant}\n\
             got {got:?}\nexpected {expected:?}"
        );
        let after = rows(&live, &format!("SELECT * FROM {view}")).await;
        assert!(same(&after, before), "{view}: a live view changed");
        recomputed.push(got);
    }

    assert!(
        filled * 2 > views.len(),
        "only {filled} views have rows for {tenant}"
    );

    // Again: refused without --overwrite; with it, the same numbers.
    let refused = salestalk(&args, env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--overwrite"));
    let mut again = args.to_vec();
    again.push("--overwrite");
    stdout_of(&salestalk(&again, env));
    for (view, first) in views.iter().zip(&recomputed) {
        let second = rows(&replay, &format!("SELECT * FROM {view}")).await;
        assert!(same(&second, first), "{view}: a second replay changed it");
    }
    let listed = stdout_of(&salestalk(&["replay", "list"], env));
    assert!(
        listed.contains(&format!("to database:{database}")),
        "{listed}"
    );
    crate::support::drop_database(&database).await;
    setup.isolated.remove().await;
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct VolumeRow {
    window_start: u32,
    tenant_id: String,
    event_type: String,
    source: String,
    events: u64,
}

/// `event_volume` of `endpoint` as (window, tenant, type, source) → events, in `[from, to)`
/// or outside it.
async fn volume(
    endpoint: &salestalk_store::Endpoint,
    (from, to): (i64, i64),
    inside: bool,
) -> BTreeMap<(i64, String, String, String), u64> {
    let condition = if inside { "" } else { "NOT " };
    endpoint
        .client()
        .query(&format!(
            "SELECT toUInt32(window_start) AS window_start, tenant_id, event_type, source, events \
             FROM event_volume WHERE {condition}(toUInt32(window_start) >= ? AND toUInt32(window_start) < ?)"
        ))
        .bind(from)
        .bind(to)
        .fetch_all::<VolumeRow>()
        .await
        .expect("event_volume")
        .into_iter()
        .map(|r| {
            (
                (i64::from(r.window_start), r.tenant_id, r.event_type, r.source),
                r.events,
            )
        })
        .collect()
}

/// The live metrics of a past day with late events are corrected by `--backfill` to the batch
/// recomputation that lets nothing be late; other days do not move; a second backfill changes
/// nothing; and the correction outlasts restarts: seven more runs, each of which restores every
/// task in a new generation (more than it takes to pass any epoch a backfill could have picked
/// among the live ones), leave the day as the backfill made it. The corrector of `run` is off
/// here: the day stays wrong until the command corrects it.
#[tokio::test(flavor = "multi_thread")]
async fn backfill_makes_a_past_day_equal_the_recomputation_with_its_late_events() {
    use crate::corrections::{one_event_now_on_every_partition, yesterday};
    use crate::exactness::{PARTITIONS, TRAFFIC, pipeline_env, read_back, recompute_with};
    use crate::support::Isolated;

    let isolated = Isolated::create("it-backfill", PARTITIONS).await;
    let env = pipeline_env(&isolated);
    assert!(
        env.contains(&("SALESTALK__CORRECTIONS__INTERVAL_MS", "0".to_string())),
        "the corrector is off"
    );
    let live = isolated.endpoint();
    // Yesterday's traffic (with late, out-of-order, duplicate... events), then one event now
    // on every partition, which makes yesterday final for every task.
    let day = yesterday().await;
    let start = chrono::DateTime::from_timestamp(day + 12 * 3600, 0)
        .expect("time")
        .to_rfc3339();
    let mut args = vec![
        "generate", "--kafka", "--seed", "61", "--count", "3000", "--start", &start, "--rate", "10",
    ];
    args.extend(TRAFFIC);
    stdout_of(&salestalk(&args, &env));
    one_event_now_on_every_partition(&isolated).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));

    let range = (day, day + 86_400);
    let in_day = |window: i64| (range.0..range.1).contains(&window);
    let expected = recompute_with(&read_back(&isolated), None);
    let expected_volume: BTreeMap<_, _> = expected
        .volume
        .iter()
        .filter(|(k, _)| in_day(k.0))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let before = volume(&live, range, true).await;
    let total = |m: &BTreeMap<(i64, String, String, String), u64>| m.values().sum::<u64>();
    assert!(
        total(&before) < total(&expected_volume),
        "the day must have late events: live {} vs {}",
        total(&before),
        total(&expected_volume)
    );
    let elsewhere = volume(&live, range, false).await;
    assert!(!elsewhere.is_empty(), "today's events");

    let since = chrono::DateTime::from_timestamp(day + 3600, 0)
        .expect("time")
        .to_rfc3339();
    let until = chrono::DateTime::from_timestamp(day + 7200, 0)
        .expect("time")
        .to_rfc3339();
    // A range inside the day is widened to the whole day; today is refused (not final).
    let today = chrono::DateTime::from_timestamp(day + 86_400 + 60, 0)
        .expect("time")
        .to_rfc3339();
    let refused = salestalk(
        &[
            "replay",
            "run",
            "--backfill",
            "--since",
            &since,
            "--until",
            &today,
        ],
        &env,
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("may still change windows"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Days the archive no longer holds in full are refused, naming the first it holds.
    let long_ago = |days: i64| {
        chrono::DateTime::from_timestamp(day - days * 86_400, 0)
            .expect("time")
            .to_rfc3339()
    };
    let expired = salestalk(
        &[
            "replay",
            "run",
            "--backfill",
            "--since",
            &long_ago(120),
            "--until",
            &long_ago(100),
        ],
        &env,
    );
    assert!(!expired.status.success());
    let said = String::from_utf8_lossy(&expired.stderr);
    assert!(
        said.contains("the archive holds whole days from") && said.contains("would need it from"),
        "{said}"
    );
    let backfill = [
        "replay",
        "run",
        "--backfill",
        "--since",
        &since,
        "--until",
        &until,
    ];
    let done = stdout_of(&salestalk(&backfill, &env));
    assert!(done.contains("backfilled"), "{done}");

    assert_eq!(
        volume(&live, range, true).await,
        expected_volume,
        "event_volume"
    );
    assert_eq!(
        volume(&live, range, false).await,
        elsewhere,
        "other days moved"
    );
    let (_, cost) = crate::corrections::day_views(&live, day)
        .await
        .expect("the day's views");
    let expected_cost: BTreeMap<_, _> = expected
        .cost
        .iter()
        .filter(|(k, _)| k.0 == day)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(
        cost, expected_cost,
        "tenant_cost_daily (the day's rollup rows)"
    );
    // The late events of the day are counted now, not pending.
    let (pending, late_events): (u64, i64) = live
        .client()
        .query(
            "SELECT (SELECT toUInt64(sum(pending)) FROM late_events_pending WHERE toUInt16(day) = ?), \
             (SELECT toInt64(sum(late_events)) FROM window_corrections WHERE toUInt16(day) = ?)",
        )
        .bind(day / 86_400)
        .bind(day / 86_400)
        .fetch_one()
        .await
        .expect("corrections");
    assert_eq!(
        pending, 0,
        "the day's late events are counted now, not pending"
    );
    assert!(late_events > 0, "the day had late events: {late_events}");
    // Again: nothing changes.
    let corrected = volume(&live, range, true).await;
    stdout_of(&salestalk(&backfill, &env));
    assert_eq!(volume(&live, range, true).await, corrected);
    let listed = stdout_of(&salestalk(&["replay", "list"], &env));
    assert_eq!(listed.matches("to backfill").count(), 2, "{listed}");

    // Restarts: each restores every task in the next generation.
    let generations = |client: clickhouse::Client| async move {
        client
            .query("SELECT toUInt64(max(generation)) FROM task_claims")
            .fetch_one::<u64>()
            .await
            .expect("claims")
    };
    let before_restarts = generations(live.client()).await;
    for _ in 0..7 {
        stdout_of(&salestalk(&["run", "--idle-exit", "3s"], &env));
    }
    assert!(
        generations(live.client()).await >= before_restarts + 7,
        "every restart claimed a generation"
    );
    assert_eq!(
        volume(&live, range, true).await,
        expected_volume,
        "event_volume after seven restarts"
    );
    assert_eq!(
        volume(&live, range, false).await,
        elsewhere,
        "other days after seven restarts"
    );
    isolated.remove().await;
}
