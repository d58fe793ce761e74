//! Past days that stay right without a person (ADR 0016): events that come after their window
//! is final, and copies of one event read from two partitions, are counted once each by the
//! corrector `salestalk run` runs by itself; every view of the day then equals a batch
//! recomputation that lets nothing be late and counts each `(tenantId, eventId)` once.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::exactness::{
    Expected, Input, PARTITIONS, Setup, assert_billing_export_matches,
    assert_rollups_sum_their_minutes, kill_at_random_moments, pipeline_env, read_back,
    recompute_with, spawn_run,
};
use crate::support::fixtures::Examples;
use crate::support::{Isolated, salestalk, stdout_of};

/// How long before midnight (UTC) a test that needs yesterday to stay yesterday waits for the
/// new day instead of starting: longer than any such test takes on a loaded CI machine.
const DAY_MARGIN_S: i64 = 15 * 60;

/// The start (Unix s) of yesterday, UTC, which stays yesterday for at least `DAY_MARGIN_S`.
///
/// These tests make yesterday final with an event stamped now and expect today to be refused
/// as not final; one that straddles midnight finds its "today" final and the pipeline's
/// yesterday a day later than its own (a CI run started at 23:59 failed so). Within the margin
/// it therefore sleeps into the new day first.
pub async fn yesterday() -> i64 {
    let now = chrono::Utc::now().timestamp();
    let left = 86_400 - now.rem_euclid(86_400);
    if left < DAY_MARGIN_S {
        eprintln!(
            "{left} s to midnight (UTC): waiting for the new day so that yesterday stays yesterday"
        );
        tokio::time::sleep(Duration::from_secs(left.unsigned_abs() + 5)).await;
    }
    (chrono::Utc::now().timestamp().div_euclid(86_400) - 1) * 86_400
}

/// One valid event stamped now on every partition of `isolated`'s topics: every task moves
/// past yesterday, which makes it final everywhere.
pub async fn one_event_now_on_every_partition(isolated: &Isolated) {
    let examples = Examples::new(0x2b7e);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &isolated.brokers)
        .create()
        .expect("producer");
    let mut n = 0;
    for topic in &isolated.topics {
        let domain = topic.rsplit('.').next().expect("domain");
        let event_type = examples
            .types()
            .into_iter()
            .find(|t| t.starts_with(&format!("{domain}.")))
            .expect("an example of the domain");
        for partition in 0..isolated.partitions {
            n += 1;
            let payload =
                serde_json::to_vec(&examples.event(&event_type, "tenant-now", n)).expect("json");
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(partition)
                        .key("tenant-now")
                        .payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .expect("produced");
        }
    }
}

/// The tests' traffic without skewed clocks: an event stamped hours ahead of yesterday lands
/// today, where it may be late in a partition and wait for tomorrow's correction.
const UNSKEWED: [&str; 16] = [
    "--tenants",
    "25",
    "--duplicates",
    "0.03",
    "--invalid",
    "0.02",
    "--out-of-order",
    "0.04",
    "--late",
    "0.02",
    "--shared-ids",
    "0.01",
    "--v2",
    "0.3",
    "--new-enum-values",
    "0.01",
];

/// `generate --kafka` arguments for `count` events of [`UNSKEWED`] traffic from `seed`,
/// starting at `start` (Unix s), `rate` a second.
fn traffic(seed: u64, count: u64, start: i64, rate: u64) -> Vec<String> {
    let start = chrono::DateTime::from_timestamp(start, 0)
        .expect("time")
        .to_rfc3339();
    let mut args: Vec<String> = [
        "generate",
        "--seed",
        &seed.to_string(),
        "--count",
        &count.to_string(),
        "--start",
        &start,
        "--rate",
        &rate.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(UNSKEWED.iter().map(|s| s.to_string()));
    args.push("--kafka".into());
    args
}

/// The corrector's settings of these tests: a pass a second.
fn corrected_env(isolated: &Isolated) -> Vec<(&'static str, String)> {
    let mut env = pipeline_env(isolated);
    env.retain(|(key, _)| *key != "SALESTALK__CORRECTIONS__INTERVAL_MS");
    env.push(("SALESTALK__CORRECTIONS__INTERVAL_MS", "1000".to_string()));
    env
}

/// (window, tenant, event type, source) → events.
pub type Volume = BTreeMap<(i64, String, String, String), u64>;
/// (day, tenant, event type, model) → (cost nanos, prompt, completion, total tokens, messages).
pub type Cost = BTreeMap<(i64, String, String, String), (i64, u64, u64, u64, u64)>;

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct VolumeRow {
    window_start: u32,
    tenant_id: String,
    event_type: String,
    source: String,
    events: u64,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct CostRow {
    day: u16,
    tenant_id: String,
    event_type: String,
    model: String,
    cost_nanos: i64,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    messages: u64,
}

/// `event_volume` and `tenant_cost_daily` of the day starting at `day` (an error until the
/// run has made the database).
pub async fn day_views(
    endpoint: &salestalk_store::Endpoint,
    day: i64,
) -> Result<(Volume, Cost), clickhouse::error::Error> {
    let volume = endpoint
        .client()
        .query(
            "SELECT toUInt32(window_start) AS window_start, tenant_id, event_type, source, events \
             FROM event_volume WHERE toUInt32(window_start) >= ? AND toUInt32(window_start) < ?",
        )
        .bind(day)
        .bind(day + 86_400)
        .fetch_all::<VolumeRow>()
        .await?
        .into_iter()
        .map(|r| {
            let key = (
                i64::from(r.window_start),
                r.tenant_id,
                r.event_type,
                r.source,
            );
            (key, r.events)
        })
        .collect();
    let cost = endpoint
        .client()
        .query(
            "SELECT toUInt16(day) AS day, tenant_id, event_type, model, cost_nanos, \
             prompt_tokens, completion_tokens, total_tokens, messages FROM tenant_cost_daily \
             WHERE toUInt16(day) = ?",
        )
        .bind(day / 86_400)
        .fetch_all::<CostRow>()
        .await?
        .into_iter()
        .map(|r| {
            let key = (
                i64::from(r.day) * 86_400,
                r.tenant_id,
                r.event_type,
                r.model,
            );
            let value = (
                r.cost_nanos,
                r.prompt_tokens,
                r.completion_tokens,
                r.total_tokens,
                r.messages,
            );
            (key, value)
        })
        .collect();
    Ok((volume, cost))
}

/// What `expected` holds for the day starting at `day`.
fn expected_day(expected: &Expected, day: i64) -> (Volume, Cost) {
    let in_day = |t: i64| (day..day + 86_400).contains(&t);
    (
        expected
            .volume
            .iter()
            .filter(|(k, _)| in_day(k.0))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        expected
            .cost
            .iter()
            .filter(|(k, _)| in_day(k.0))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    )
}

/// Waits (at most four minutes) until the day's views equal `expected`'s, a run going on
/// meanwhile; returns what they showed last.
async fn until_the_day_equals(
    setup: &Setup,
    day: i64,
    expected: &(Volume, Cost),
    run: &mut std::process::Child,
) -> (Volume, Cost) {
    let endpoint = setup.isolated.endpoint();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let got = day_views(&endpoint, day).await;
        if got.as_ref().is_ok_and(|got| got == expected) || std::time::Instant::now() > deadline {
            return got.expect("the day's views");
        }
        if let Some(status) = run.try_wait().expect("the run's status") {
            panic!("salestalk run stopped ({status}) before the day was corrected");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `(late events archived, late events the day's corrections counted, late events pending)`
/// for `day`, once none is pending (or after 60 s). The day's volume can be right a pass
/// before nothing is pending: a pass that read the late arrivals just before the last flush
/// landed counts that flush's late events from the archive but records the older arrivals
/// count as seen, and the next pass checks the day again.
async fn until_none_waits(
    setup: &Setup,
    day: i64,
    run: &mut std::process::Child,
) -> (u64, i64, u64) {
    let client = setup.isolated.endpoint().client();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counts: (u64, i64, u64) = client
            .query(
                "SELECT (SELECT toUInt64(count()) FROM events_raw FINAL WHERE late = 1 \
                 AND toUInt32(window_start) >= ? AND toUInt32(window_start) < ?), \
                 (SELECT toInt64(sum(late_events)) FROM window_corrections WHERE toUInt16(day) = ?), \
                 (SELECT toUInt64(sum(pending)) FROM late_events_pending WHERE toUInt16(day) = ?)",
            )
            .bind(day)
            .bind(day + 86_400)
            .bind(day / 86_400)
            .bind(day / 86_400)
            .fetch_one()
            .await
            .expect("corrections");
        if counts.2 == 0 || std::time::Instant::now() > deadline {
            return counts;
        }
        if let Some(status) = run.try_wait().expect("the run's status") {
            panic!("salestalk run stopped ({status}) with late events pending");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn total(volume: &Volume) -> u64 {
    volume.values().sum()
}

/// 5 % of a day's events arrive two hours late, beside the traffic's own late and
/// out-of-order events; the pipeline is killed twice; with no command, the day's volume, cost
/// and the month's billing export equal the recomputation with every late event counted.
#[tokio::test(flavor = "multi_thread")]
async fn late_events_are_counted_without_a_command_through_two_sigkills() {
    let isolated = Isolated::create("it-late-days", PARTITIONS).await;
    let env = corrected_env(&isolated);
    let day = yesterday().await;
    let on_time = traffic(81, 3_000, day + 12 * 3600, 10);
    let args: Vec<&str> = on_time.iter().map(String::as_str).collect();
    stdout_of(&salestalk(&args, &env));
    // Two hours before the traffic, sent after it: later than the allowed lateness
    // everywhere, well within the correction horizon.
    let two_hours_late = traffic(82, 150, day + 10 * 3600, 1);
    let args: Vec<&str> = two_hours_late.iter().map(String::as_str).collect();
    stdout_of(&salestalk(&args, &env));
    one_event_now_on_every_partition(&isolated).await;
    let input = read_back(&isolated);
    let total_messages: i64 = input.values().map(|m| m.len() as i64).sum();
    let setup = Setup { isolated, env };

    kill_at_random_moments(
        &setup,
        total_messages,
        2,
        0,
        83,
        Duration::from_millis(1_500),
    )
    .await;
    let live = recompute_with(&input, Some(crate::exactness::LATENESS_MS));
    assert!(
        live.late_archived > 120,
        "the traffic's late events: {}",
        live.late_archived
    );
    let expected = recompute_with(&input, None);
    let wanted = expected_day(&expected, day);
    let mut run = spawn_run(&setup.env, false);
    let got = until_the_day_equals(&setup, day, &wanted, &mut run).await;
    let (late_in_archive, corrected_late, pending) = until_none_waits(&setup, day, &mut run).await;
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    assert!(
        total(&wanted.0) > total(&expected_day(&live, day).0),
        "the day has late events"
    );
    assert_eq!(got.0, wanted.0, "event_volume of the day");
    assert_eq!(got.1, wanted.1, "tenant_cost_daily of the day");
    assert_billing_export_matches(&setup, &expected.cost);
    let endpoint = setup.isolated.endpoint();
    assert_rollups_sum_their_minutes(&endpoint).await;

    let client = endpoint.client();
    assert!(
        late_in_archive > 120,
        "{late_in_archive} late events archived"
    );
    assert_eq!(corrected_late as u64, late_in_archive, "every one counted");
    assert_eq!(pending, 0, "none waits");
    let letters: u64 = client
        .query("SELECT toUInt64(count()) FROM dead_letters WHERE reason IN ('late', 'too_late')")
        .fetch_one()
        .await
        .expect("dead letters");
    assert_eq!(
        letters, 0,
        "no late event is a dead letter within the horizon"
    );
    setup.isolated.remove().await;
}

/// Every partition's messages as one stream: dedup by `(tenantId, eventId)` across them all.
fn as_one_partition(input: &Input) -> Input {
    let mut all: Vec<(i64, i64, Vec<u8>)> = input.values().flatten().cloned().collect();
    all.sort_by_key(|(_, broker_ms, _)| *broker_ms);
    let renumbered = all
        .into_iter()
        .enumerate()
        .map(|(offset, (_, broker_ms, bytes))| (offset as i64, broker_ms, bytes))
        .collect();
    BTreeMap::from([(("all".to_string(), 0), renumbered)])
}

/// A producer that partitions at random (as one using another hash, or a topic that gained
/// partitions, would) sends a day's traffic with its resends: copies of one event land in
/// different partitions, whose dedup is their own. Once the day is final, every event view
/// of it counts each event once, and `cross_partition_duplicates` says how many were counted
/// twice before.
#[tokio::test(flavor = "multi_thread")]
async fn copies_of_an_event_in_two_partitions_count_once_in_every_view() {
    let isolated = Isolated::create("it-random-parts", PARTITIONS).await;
    let env = corrected_env(&isolated);
    let day = yesterday().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("traffic.jsonl");
    let file_arg = file.to_string_lossy().to_string();
    // Resends, but no skewed clocks: a skewed event is counted at its copy's broker time.
    let args = [
        "generate",
        "--seed",
        "84",
        "--count",
        "3000",
        "--start",
        &chrono::DateTime::from_timestamp(day + 12 * 3600, 0)
            .expect("time")
            .to_rfc3339(),
        "--rate",
        "10",
        "--tenants",
        "25",
        "--duplicates",
        "0.08",
        "--invalid",
        "0.01",
        "--new-enum-values",
        "0.01",
        "--output",
        &file_arg,
    ];
    stdout_of(&salestalk(&args, &env));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &isolated.brokers)
        .create()
        .expect("producer");
    let mut rng = ChaCha8Rng::seed_from_u64(85);
    let lines = std::io::BufReader::new(std::fs::File::open(&file).expect("traffic"));
    let mut sent = 0;
    for line in lines.lines() {
        let line = line.expect("a line");
        let domain = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["eventType"].as_str().map(str::to_string))
            .and_then(|t| t.split('.').next().map(str::to_string))
            .unwrap_or_else(|| "tenant".to_string());
        let topic = format!("{}.{domain}", isolated.prefix);
        let topic = if isolated.topics.contains(&topic) {
            topic
        } else {
            format!("{}.tenant", isolated.prefix)
        };
        producer
            .send(
                FutureRecord::<str, str>::to(&topic)
                    .partition(rng.random_range(0..isolated.partitions))
                    .payload(&line),
                Duration::from_secs(30),
            )
            .await
            .expect("produced");
        sent += 1;
    }
    assert!(sent > 3_000);
    one_event_now_on_every_partition(&isolated).await;
    let input = read_back(&isolated);
    let setup = Setup { isolated, env };

    let per_partition = recompute_with(&input, None);
    let expected = recompute_with(&as_one_partition(&input), None);
    let counted_twice = per_partition.accepted - expected.accepted;
    assert!(
        counted_twice > 50,
        "copies crossed partitions: {counted_twice}"
    );
    let wanted = expected_day(&expected, day);
    let mut run = spawn_run(&setup.env, false);
    let got = until_the_day_equals(&setup, day, &wanted, &mut run).await;
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    assert_eq!(got.0, wanted.0, "event_volume of the day");
    assert_eq!(got.1, wanted.1, "tenant_cost_daily of the day");
    assert_billing_export_matches(&setup, &expected.cost);
    let endpoint = setup.isolated.endpoint();
    assert_rollups_sum_their_minutes(&endpoint).await;
    let client = endpoint.client();
    // The other event views of the day.
    let intents: BTreeMap<(i64, String, String, String, String), u64> = client
        .query(
            "SELECT toInt64(toUInt32(window_start)), tenant_id, intent, subject, measure, \
             classifications FROM intents_per_tenant",
        )
        .fetch_all::<(i64, String, String, String, String, u64)>()
        .await
        .expect("intents")
        .into_iter()
        .map(|(w, t, i, s, m, c)| ((w, t, i, s, m), c))
        .collect();
    let expected_intents: BTreeMap<_, _> = expected
        .intents
        .iter()
        .map(|(k, v)| (k.clone(), v.0))
        .collect();
    assert_eq!(intents, expected_intents, "intents_per_tenant");
    let reconciliation: BTreeMap<(i64, String), (i64, i64)> = client
        .query(
            "SELECT toInt64(toUInt32(toDateTime(day))), tenant_id, message_cost_nanos, \
             conversation_total_nanos FROM tenant_cost_reconciliation",
        )
        .fetch_all::<(i64, String, i64, i64)>()
        .await
        .expect("reconciliation")
        .into_iter()
        .map(|(d, t, m, c)| ((d, t), (m, c)))
        .collect();
    let mut expected_reconciliation = expected.reconciliation.clone();
    for ((day, tenant, _, _), value) in &expected.cost {
        expected_reconciliation
            .entry((*day, tenant.clone()))
            .or_default()
            .0 += value.0;
    }
    assert_eq!(
        reconciliation, expected_reconciliation,
        "tenant_cost_reconciliation"
    );
    let reported: i64 = client
        .query("SELECT toInt64(sum(events_counted_twice)) FROM cross_partition_duplicates")
        .fetch_one()
        .await
        .expect("cross_partition_duplicates");
    assert_eq!(
        reported as u64, counted_twice,
        "cross_partition_duplicates reports every extra count"
    );
    setup.isolated.remove().await;
}
