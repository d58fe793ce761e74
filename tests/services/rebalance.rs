//! Rebalances that move only what moves: three instances share 20 partitions (five topics of
//! four) while events keep arriving; a fourth joins, then leaves. With the cooperative-sticky
//! assignor a partition that keeps its owner through both rebalances is never revoked, so it
//! is never paused nor restored again: its task is restored exactly once, at the start. The
//! partitions that move are restored by their new owner off its driver loop. Afterwards every
//! view equals the recomputation. The restore pauses are printed for docs/performance.md.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::exactness::{Setup, assert_views_match, pipeline_env, produce};
use crate::faults::{committed, ends, terminate};
use crate::support::eventually::eventually;
use crate::support::{Isolated, free_port, one_heavy_test_at_a_time, salestalk_command, scrape};

/// Partitions per topic (five topics: 20 partitions).
const PER_TOPIC: i32 = 4;
/// Every partition of the test.
const PARTITIONS: usize = 5 * PER_TOPIC as usize;

/// A pipeline instance and its metrics port.
struct Instance {
    name: &'static str,
    port: u16,
    child: Child,
}

/// Starts an instance with dynamic membership (it leaves the group when it stops, so its
/// partitions move at once) and its own metrics port.
fn start(setup: &Setup, name: &'static str, extra: &[(&'static str, String)]) -> Instance {
    let port = free_port();
    let mut env = setup.env.clone();
    env.extend_from_slice(extra);
    env.push(("SALESTALK__TELEMETRY__LISTEN", format!("127.0.0.1:{port}")));
    env.push(("SALESTALK__KAFKA__INSTANCE_ID", String::new()));
    let child = salestalk_command(&["run"], &env)
        .spawn()
        .expect("salestalk run starts");
    Instance { name, port, child }
}

/// `(topic, partition)` -> value of every series of `metric` in `body`.
fn per_partition(body: &str, metric: &str) -> BTreeMap<(String, i32), f64> {
    let prefix = format!("{metric}{{topic=\"");
    body.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (topic, rest) = rest.split_once("\",partition=\"")?;
            let (partition, value) = rest.split_once("\"} ")?;
            Some((
                (topic.to_string(), partition.parse().ok()?),
                value.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// Who reads each partition now, if every partition has exactly one owner among `instances`.
fn owners(instances: &[&Instance]) -> Option<BTreeMap<(String, i32), &'static str>> {
    let mut owners = BTreeMap::new();
    for instance in instances {
        let body = scrape(instance.port)?;
        for (partition, owned) in per_partition(&body, "salestalk_partition_owned") {
            if owned == 1.0 && owners.insert(partition, instance.name).is_some() {
                return None;
            }
        }
    }
    (owners.len() == PARTITIONS).then_some(owners)
}

/// Waits until every partition has one owner among `instances` (each owning one or more) and
/// that stays so for a few seconds; returns it.
async fn settled(instances: &[&Instance]) -> BTreeMap<(String, i32), &'static str> {
    let mut last = None;
    let mut stable_since = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while std::time::Instant::now() < deadline {
        let now = owners(instances)
            .filter(|o| instances.iter().all(|i| o.values().any(|n| *n == i.name)));
        if let Some(current) = &now
            && now == last
        {
            if stable_since.elapsed() >= Duration::from_secs(5) {
                return current.clone();
            }
        } else {
            stable_since = std::time::Instant::now();
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "the partitions never settled over {} instances: {last:?}",
        instances.len()
    );
}

/// How many times `instance` restored each partition's task.
fn restores(instance: &Instance) -> BTreeMap<(String, i32), f64> {
    per_partition(
        &scrape(instance.port).expect("metrics"),
        "salestalk_task_restores_total",
    )
}

/// `instance`'s restore pauses so far: (count, sum in seconds).
fn pauses(instance: &Instance) -> (f64, f64) {
    let body = scrape(instance.port).expect("metrics");
    let read = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        read("salestalk_restore_seconds_count "),
        read("salestalk_restore_seconds_sum "),
    )
}

/// Asserts that every partition owned by the same instance in each of `rounds` was restored
/// by it exactly once; returns how many such partitions there are.
fn kept_were_restored_once(
    rounds: &[&BTreeMap<(String, i32), &'static str>],
    instances: &[&Instance],
) -> usize {
    let mut kept = 0;
    for (partition, owner) in rounds[0] {
        if rounds
            .iter()
            .all(|round| round.get(partition) == Some(owner))
        {
            let instance = instances
                .iter()
                .find(|i| i.name == *owner)
                .expect("a known owner");
            let restored = restores(instance).get(partition).copied();
            assert_eq!(
                restored,
                Some(1.0),
                "{partition:?} stayed with {owner} but was restored {restored:?} times: it was revoked"
            );
            kept += 1;
        }
    }
    kept
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_joining_and_leaving_moves_only_the_partitions_that_change_owner() {
    let _heavy = one_heavy_test_at_a_time().await;
    let isolated = Isolated::create("it-rebalance", PER_TOPIC).await;
    let env = pipeline_env(&isolated);
    let setup = Setup { isolated, env };
    produce(&setup.env, 301, 6_000, 1_000);
    let extra = [("SALESTALK__PIPELINE__FLUSH_INTERVAL_MS", "300".to_string())];
    let a = start(&setup, "a", &extra);
    let b = start(&setup, "b", &extra);
    let c = start(&setup, "c", &extra);
    let first = settled(&[&a, &b, &c]).await;

    // Events keep arriving through both rebalances.
    let producing = Arc::new(AtomicBool::new(true));
    let rounds = Arc::new(AtomicU64::new(0));
    let producer = {
        let (producing, rounds, env) = (
            Arc::clone(&producing),
            Arc::clone(&rounds),
            setup.env.clone(),
        );
        std::thread::spawn(move || {
            let mut seed = 400;
            while producing.load(Ordering::Relaxed) {
                produce(&env, seed, 1_000, 1_000);
                seed += 1;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut d = start(&setup, "d", &extra);
    let joined = settled(&[&a, &b, &c, &d]).await;
    let moved_in = joined.values().filter(|o| **o == "d").count();
    let kept = kept_were_restored_once(&[&first, &joined], &[&a, &b, &c, &d]);
    eprintln!(
        "d joined: {moved_in} of {PARTITIONS} partitions moved to it, {kept} kept their owner \
         and were never revoked"
    );
    assert_eq!(kept + moved_in, PARTITIONS, "only d's partitions moved");
    assert!(moved_in >= 1, "the new instance got no partition");
    let (count, sum) = pauses(&d);
    eprintln!(
        "d's restores: {count} partitions, {:.3} s on average from assignment to reading",
        sum / count.max(1.0)
    );

    send_term_and_wait(&mut d);
    let left = settled(&[&a, &b, &c]).await;
    let kept_through_both = kept_were_restored_once(&[&first, &joined, &left], &[&a, &b, &c]);
    let moved_back = left
        .iter()
        .filter(|(p, _)| joined.get(*p) == Some(&"d"))
        .count();
    eprintln!(
        "d left: {moved_back} partitions moved back, {kept_through_both} kept one owner \
         through both rebalances"
    );
    assert_eq!(
        kept_through_both + moved_back,
        PARTITIONS,
        "only d's partitions moved when it left"
    );
    for instance in [&a, &b, &c] {
        let (count, sum) = pauses(instance);
        eprintln!(
            "{}'s restores: {count} partitions, {:.3} s on average from assignment to reading",
            instance.name,
            sum / count.max(1.0)
        );
    }

    producing.store(false, Ordering::Relaxed);
    producer.join().expect("the producer");
    assert!(
        rounds.load(Ordering::Relaxed) >= 1,
        "events arrived meanwhile"
    );
    // Caught up: the group's committed offsets (which follow the durable checkpoints) reach
    // every partition's end.
    let ends = ends(&setup);
    let reached = eventually(
        Duration::from_secs(180),
        || async { committed(&setup) },
        |committed| *committed == ends,
    )
    .await;
    assert_eq!(reached, ends, "every partition durable to its end");
    for instance in [a, b, c] {
        terminate(instance.child);
    }
    assert_views_match(&setup).await;
}

/// SIGTERM, and the drain's clean exit.
fn send_term_and_wait(instance: &mut Instance) {
    crate::support::send_signal(&instance.child, "-TERM");
    let status = instance.child.wait().expect("the instance exits");
    assert!(
        status.success(),
        "{} drained and exited 0: {status}",
        instance.name
    );
}
