//! Fault tests: the pipeline's promises while its services fail under it. ClickHouse and the
//! broker are stopped and restarted with the project's own scripts on a private pair of
//! services (so the tests sharing the suite's services are not disturbed); every test ends
//! by comparing every public view with the batch recomputation of the topics' contents.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::exactness::{
    PARTITIONS, Setup, assert_views_match, durable, kill_at_random_moments, pipeline_env, produce,
    read_back, wait_durable,
};
use crate::support::eventually::eventually;
use crate::support::{
    Isolated, KillIfPanicking, PrivateServices, RUN_LIMIT, finish, free_port, http_get,
    one_heavy_test_at_a_time, read_and_lags, salestalk_command, scrape, send_signal, value,
};

/// Resident anonymous memory of a process (its heap and stacks), in bytes: what it holds.
/// File-backed pages are left out: the binary's code paths first taken during an outage (its
/// error and retry paths) would otherwise count as memory held, by a few MiB that vary with
/// how loaded the machine is.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Offsets the group has committed to Kafka, per partition (without joining the group).
pub(crate) fn committed(setup: &Setup) -> BTreeMap<(String, i32), i64> {
    let group = setup
        .env
        .iter()
        .find(|(k, _)| *k == "SALESTALK__KAFKA__GROUP_ID")
        .map(|(_, v)| v.clone())
        .expect("a group");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.isolated.brokers)
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for topic in &setup.isolated.topics {
        for partition in 0..setup.isolated.partitions {
            list.add_partition(topic, partition);
        }
    }
    let Ok(offsets) = consumer.committed_offsets(list, Duration::from_secs(10)) else {
        return BTreeMap::new();
    };
    offsets
        .elements()
        .iter()
        .filter_map(|e| Some(((e.topic().to_string(), e.partition()), e.offset().to_raw()?)))
        .filter(|(_, offset)| *offset >= 0)
        .collect()
}

/// Each partition's end offset.
pub(crate) fn ends(setup: &Setup) -> BTreeMap<(String, i32), i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.isolated.brokers)
        .create()
        .expect("consumer");
    let mut out = BTreeMap::new();
    for topic in &setup.isolated.topics {
        for partition in 0..setup.isolated.partitions {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("watermarks");
            out.insert((topic.clone(), partition), high);
        }
    }
    out
}

fn spawn_with_metrics(setup: &Setup, port: u16, extra: &[(&'static str, String)]) -> Child {
    let mut env = setup.env.clone();
    env.extend_from_slice(extra);
    env.push(("SALESTALK__TELEMETRY__LISTEN", format!("127.0.0.1:{port}")));
    env.push((
        "SALESTALK__KAFKA__INSTANCE_ID",
        "fault-instance".to_string(),
    ));
    salestalk_command(&["run"], &env)
        .spawn()
        .expect("salestalk run starts")
}

/// Waits until every message produced is read and durable (all partition lags 0).
fn wait_caught_up(port: u16, total: u64, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(body) = scrape(port) {
            let (read, lags) = read_and_lags(&body);
            if read as u64 >= total && !lags.is_empty() && lags.iter().all(|lag| *lag == 0.0) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("not caught up with {total} messages in {within:?}:\n{last}");
}

/// SIGTERM to a `salestalk run`: it must drain and exit 0.
pub fn terminate(child: Child) {
    send_signal(&child, "-TERM");
    let exit = finish(child, RUN_LIMIT, "the drain after SIGTERM").status;
    assert!(
        exit.success(),
        "the run must drain and exit 0 on SIGTERM, got {exit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_outage_bounds_memory_holds_offsets_and_loses_nothing() {
    let _heavy = one_heavy_test_at_a_time().await;
    let services = PrivateServices::start("it-ch-outage");
    let isolated = Isolated::create_at(
        "it-ch-outage",
        6,
        &services.brokers,
        &services.clickhouse_url,
    )
    .await;
    let env = pipeline_env(&isolated);
    let setup = Setup { isolated, env };
    produce(&setup.env, 11, 20_000, 40);
    let port = free_port();
    let pending_mb = 8;
    let prefetch_mb = 8;
    let child = spawn_with_metrics(
        &setup,
        port,
        &[
            (
                "SALESTALK__PIPELINE__MAX_PENDING_BYTES",
                (pending_mb << 20).to_string(),
            ),
            (
                "SALESTALK__KAFKA__PREFETCH_KBYTES",
                (prefetch_mb << 10).to_string(),
            ),
            ("SALESTALK__RETRY__MAX_BACKOFF_MS", "1000".to_string()),
        ],
    );
    let mut watched = KillIfPanicking::default();
    watched.watch(&child);
    let before_total: u64 = ends(&setup).values().map(|e| *e as u64).sum();
    wait_caught_up(port, before_total, Duration::from_secs(120));
    let baseline = rss_bytes(child.id()).expect("rss");

    services.stop("clickhouse");
    let stopped_at = ends(&setup);
    // Much more data than the memory bound arrives while ClickHouse is away, stamped after
    // the first batch (so it is not late).
    produce(&setup.env, 12, 120_000, 2_000);
    let produced_bytes: u64 = read_back(&setup.isolated)
        .values()
        .flatten()
        .map(|(_, _, bytes)| bytes.len() as u64)
        .sum();
    let mut peak = baseline;
    let mut saw_outage = false;
    let outage_until = Instant::now() + Duration::from_secs(25);
    while Instant::now() < outage_until {
        peak = peak.max(rss_bytes(child.id()).expect("still running"));
        if let Some((503, body)) = http_get(port, "/health")
            && body.contains("clickhouse")
        {
            saw_outage = true;
            // Not ready, but alive: an orchestrator must not restart it for the outage.
            let (status, _) = http_get(port, "/health/live").expect("liveness answers");
            assert_eq!(status, 200, "/health/live during the outage");
        }
        // Nothing read after the stop can be durable, so no commit may pass the stop's ends.
        for (partition, offset) in committed(&setup) {
            let end = stopped_at.get(&partition).copied().unwrap_or(0);
            assert!(
                offset <= end,
                "{partition:?} committed {offset} past durable data (end {end} at the stop)"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(saw_outage, "/health never reported ClickHouse down");
    let metrics = scrape(port).expect("metrics during the outage");
    assert_eq!(
        value(&metrics, "salestalk_sink_up{sink=\"clickhouse\"}"),
        Some(0.0),
        "{metrics}"
    );
    // The bound: the flush in flight and the next one held behind it (`overlap_flush`, on by
    // default: twice max_pending_bytes), the prefetch queue and a fetch in flight, each at
    // most twice its raw bytes once decoded, with room for allocator slack; an unbounded
    // reader would hold the whole backlog.
    let growth = peak.saturating_sub(baseline);
    let bound = ((2 * pending_mb + prefetch_mb + prefetch_mb / 2) << 20) * 2 + (32 << 20);
    eprintln!(
        "outage: baseline {} MiB, peak {} MiB, growth {} MiB (bound {} MiB)",
        baseline >> 20,
        peak >> 20,
        growth >> 20,
        bound >> 20
    );
    assert!(
        growth < bound,
        "memory grew by {} MiB during the outage (bound {} MiB, backlog {} MiB)",
        growth >> 20,
        bound >> 20,
        produced_bytes >> 20
    );
    assert!(
        produced_bytes > bound,
        "the backlog must exceed the bound for the test to mean anything"
    );

    services.restart("clickhouse");
    let total: u64 = ends(&setup).values().map(|e| *e as u64).sum();
    wait_caught_up(port, total, Duration::from_secs(300));
    let (status, _) = http_get(port, "/health").expect("health");
    assert_eq!(status, 200, "healthy again once ClickHouse is back");
    terminate(child);
    assert_views_match(&setup).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_mid_run_loses_nothing_and_lag_returns_to_zero() {
    let _heavy = one_heavy_test_at_a_time().await;
    let services = PrivateServices::start("it-broker-restart");
    let isolated = Isolated::create_at(
        "it-broker-restart",
        PARTITIONS,
        &services.brokers,
        &services.clickhouse_url,
    )
    .await;
    let env = pipeline_env(&isolated);
    let setup = Setup { isolated, env };
    produce(&setup.env, 21, 40_000, 60);
    let port = free_port();
    let child = spawn_with_metrics(&setup, port, &[]);
    let first = eventually(
        Duration::from_secs(120),
        || durable(&setup.isolated),
        |n| *n > 0,
    )
    .await;
    assert!(first > 0, "nothing durable before the restart");
    services.stop("broker");
    tokio::time::sleep(Duration::from_secs(3)).await;
    services.restart("broker");
    // Traffic continues after the restart, on the same (durable) topics.
    produce(&setup.env, 22, 10_000, 60);
    let total: u64 = ends(&setup).values().map(|e| *e as u64).sum();
    wait_caught_up(port, total, Duration::from_secs(300));
    terminate(child);
    assert_eq!(
        durable(&setup.isolated).await as u64,
        total,
        "every message made durable once"
    );
    assert_views_match(&setup).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_200k_events_several_times_changes_no_view() {
    let _heavy = one_heavy_test_at_a_time().await;
    let services = PrivateServices::start("it-kill-200k");
    let isolated = Isolated::create_at(
        "it-kill-200k",
        12,
        &services.brokers,
        &services.clickhouse_url,
    )
    .await;
    let env = pipeline_env(&isolated);
    let setup = Setup { isolated, env };
    produce(&setup.env, 31, 200_000, 150);
    let total: i64 = ends(&setup).values().sum();
    kill_at_random_moments(&setup, total, 4, 3, 31, Duration::from_millis(3_000)).await;
    assert_views_match(&setup).await;
}

/// One pipeline instance of the three, with its static-membership id.
fn spawn_instance(setup: &Setup, id: &str) -> Child {
    salestalk_command(&["run", "--idle-exit", "15s"], &setup.env)
        .env("SALESTALK__KAFKA__INSTANCE_ID", id)
        .spawn()
        .expect("salestalk run starts")
}

/// The SRE page's lag table for the pipeline's own partitions, newest minute: partitions per
/// instance (the panel reads the `consumer_lag` view).
async fn partitions_per_instance(setup: &Setup) -> BTreeMap<String, u64> {
    setup
        .isolated
        .endpoint()
        .client()
        .query(
            "SELECT instance, toUInt64(sum(partitions)) AS owned FROM consumer_lag \
             WHERE consumer_group = 'source.kafka' \
             AND window_start = (SELECT max(window_start) FROM consumer_lag) GROUP BY instance",
        )
        .fetch_all::<(String, u64)>()
        .await
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Three instances share 60 partitions through a 500,000-event backlog while each is
/// restarted in turn (SIGTERM, drained, started again) and two are killed with SIGKILL and
/// started again: every message is durable once and every view equals the recomputation. The
/// SRE page's lag table shows the three instances and the partitions each owns.
#[tokio::test(flavor = "multi_thread")]
async fn three_instances_through_rolling_restarts_and_sigkills_on_500k_events_change_no_view() {
    let _heavy = one_heavy_test_at_a_time().await;
    // Durable (sqlite) storage: with memory storage tansu 0.6.0 reported high watermarks a
    // few hundred below the offsets it had handed out on a 515,000-event backlog.
    let services = PrivateServices::start("it-three");
    let isolated =
        Isolated::create_at("it-three", 12, &services.brokers, &services.clickhouse_url).await;
    let env = pipeline_env(&isolated);
    let setup = Setup { isolated, env };
    produce(&setup.env, 53, 500_000, 400);
    let ends = ends(&setup);
    let total: i64 = ends.values().sum();
    let partitions = ends.len() as u64;
    let ids = ["it-three-a", "it-three-b", "it-three-c"];
    let mut instances: Vec<Option<Child>> = ids
        .iter()
        .map(|id| Some(spawn_instance(&setup, id)))
        .collect();

    // The lag table shows every instance with its share, all partitions owned.
    let mut shown = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        shown = partitions_per_instance(&setup).await;
        if shown.len() == 3 && shown.values().sum::<u64>() == partitions {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        shown.len(),
        3,
        "three instances on the SRE lag table: {shown:?}"
    );
    assert!(
        shown.keys().zip(ids).all(|(name, id)| name.ends_with(id)),
        "named by their instance ids: {shown:?}"
    );
    assert_eq!(shown.values().sum::<u64>(), partitions, "{shown:?}");

    // A rolling restart: each instance drains on SIGTERM and starts again.
    let mut progress = vec![durable(&setup.isolated).await];
    for (i, id) in ids.iter().enumerate() {
        let before = *progress.last().expect("progress");
        let mut running: Vec<&mut Child> = instances.iter_mut().flatten().collect();
        wait_durable(&setup, before + total / 20, &mut running).await;
        terminate(instances[i].take().expect("running"));
        instances[i] = Some(spawn_instance(&setup, id));
        progress.push(durable(&setup.isolated).await);
    }
    // Two crashes.
    for i in [1, 2] {
        let before = *progress.last().expect("progress");
        let mut running: Vec<&mut Child> = instances.iter_mut().flatten().collect();
        wait_durable(&setup, before + total / 20, &mut running).await;
        let mut victim = instances[i].take().expect("running");
        victim.kill().expect("SIGKILL");
        victim.wait().expect("reaped");
        instances[i] = Some(spawn_instance(&setup, ids[i]));
        progress.push(durable(&setup.isolated).await);
    }
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]) && *progress.last().expect("last") < total,
        "every restart and kill landed mid-stream with progress between: {progress:?} of {total}"
    );
    for (child, id) in instances.into_iter().zip(ids) {
        let out = finish(child.expect("running"), RUN_LIMIT, id);
        assert!(out.status.success(), "{id} exits 0");
    }
    let checkpoints: Vec<(String, i64, u64, u64)> = setup
        .isolated
        .endpoint()
        .client()
        .query(
            "SELECT task, argMax(ints[1], epoch) AS next, max(epoch) AS last, count() AS flushes \
             FROM window_state WHERE family = 'checkpoint' GROUP BY task",
        )
        .fetch_all()
        .await
        .expect("checkpoints");
    let off: Vec<String> = checkpoints
        .iter()
        .filter(|(task, next, ..)| {
            let (topic, partition) = task.rsplit_once('/').expect("topic/partition");
            ends.get(&(topic.to_string(), partition.parse().expect("partition"))) != Some(next)
        })
        .map(|(task, next, last, flushes)| {
            format!("{task}: checkpoint {next} (epoch {last:#x}, {flushes} rows)")
        })
        .collect();
    assert!(
        off.is_empty(),
        "checkpoints not at their partition's end: {off:?} (ends {ends:?})"
    );
    assert_eq!(durable(&setup.isolated).await, total, "durable once each");
    assert_views_match(&setup).await;
}
