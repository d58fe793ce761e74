//! Rebalances that move only what moves: three instances share 20 partitions (five topics of
//! four) while events keep arriving; a fourth joins, then leaves. Who reads what is sampled
//! every 250 ms throughout. With the cooperative-sticky assignor a partition that keeps its
//! owner in every sample is never revoked, so it is never paused nor restored again: its task
//! is restored exactly once, at the start (an eager assignor revokes every partition at each
//! rebalance, and this fails). The partitions that move are restored by their new owner off
//! its driver loop. Afterwards every view equals the recomputation.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::exactness::{Setup, assert_views_equal_recomputation, pipeline_env, produce};
use crate::faults::{committed, ends, terminate};
use crate::support::eventually::eventually;
use crate::support::{
    Isolated, free_port, one_heavy_test_at_a_time, salestalk_command, scrape, value,
};

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
    // The default, which the suite's other runs leave (tests/services/exactness.rs).
    env.push((
        "SALESTALK__KAFKA__ASSIGNMENT_STRATEGY",
        "cooperative-sticky".to_string(),
    ));
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

/// Who reads each partition now, by every instance of `instances` that answers (a partition
/// may show two owners for a moment while it moves, or none).
type Sample = BTreeMap<(String, i32), Vec<&'static str>>;

fn sample(instances: &[&Instance]) -> Sample {
    let mut owners = Sample::new();
    for instance in instances {
        let Some(body) = scrape(instance.port) else {
            continue;
        };
        for (partition, owned) in per_partition(&body, "salestalk_partition_owned") {
            if owned == 1.0 {
                owners.entry(partition).or_default().push(instance.name);
            }
        }
    }
    owners
}

/// The single owner of every partition in `sample`, when each has exactly one and every one
/// of `instances` owns at least one.
fn settled_owners(
    sample: &Sample,
    instances: &[&Instance],
) -> Option<BTreeMap<(String, i32), &'static str>> {
    let owners: BTreeMap<(String, i32), &'static str> = sample
        .iter()
        .filter(|(_, owners)| owners.len() == 1)
        .map(|(partition, owners)| (partition.clone(), owners[0]))
        .collect();
    let everyone = instances
        .iter()
        .all(|i| owners.values().any(|name| *name == i.name));
    (owners.len() == PARTITIONS && sample.len() == PARTITIONS && everyone).then_some(owners)
}

/// Samples who reads what every 250 ms into `seen` until every partition has one owner among
/// `instances` (each owning one or more) and that stays so for five seconds; returns it.
async fn settled(
    instances: &[&Instance],
    seen: &mut Vec<Sample>,
) -> BTreeMap<(String, i32), &'static str> {
    let mut last = None;
    let mut stable_since = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while std::time::Instant::now() < deadline {
        let now = sample(instances);
        let owners = settled_owners(&now, instances);
        seen.push(now);
        if let Some(current) = &owners
            && owners == last
        {
            if stable_since.elapsed() >= Duration::from_secs(5) {
                return current.clone();
            }
        } else {
            stable_since = std::time::Instant::now();
            last = owners;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "the partitions never settled over {} instances: {:?}",
        instances.len(),
        seen.last()
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

/// The partitions every one of `seen` shows read by one and the same instance: untouched by
/// the rebalances, as far as anyone looking could tell.
fn untouched(seen: &[Sample]) -> BTreeMap<(String, i32), &'static str> {
    let Some(first) = seen.first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(_, owners)| owners.len() == 1)
        .filter(|(partition, owners)| seen.iter().all(|s| s.get(*partition) == Some(*owners)))
        .map(|(partition, owners)| (partition.clone(), owners[0]))
        .collect()
}

/// Asserts that each of `partitions` was restored by its owner exactly once (at the start):
/// it was never revoked, so it never paused.
fn restored_once(partitions: &BTreeMap<(String, i32), &'static str>, instances: &[&Instance]) {
    for (partition, owner) in partitions {
        let instance = instances
            .iter()
            .find(|i| i.name == *owner)
            .expect("a known owner");
        let restored = restores(instance).get(partition).copied();
        assert_eq!(
            restored,
            Some(1.0),
            "{partition:?} was read by {owner} throughout but restored {restored:?} times: it was revoked"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_joining_and_leaving_moves_only_the_partitions_that_change_owner() {
    let _heavy = one_heavy_test_at_a_time().await;
    let isolated = Isolated::create("it-rebalance", PER_TOPIC).await;
    let env = pipeline_env(&isolated);
    let setup = Setup { isolated, env };
    // A backlog with every kind of event (conversations complete over minutes).
    produce(&setup.env, 301, 6_000, 60);
    let extra = [("SALESTALK__PIPELINE__FLUSH_INTERVAL_MS", "300".to_string())];
    let a = start(&setup, "a", &extra);
    let b = start(&setup, "b", &extra);
    let c = start(&setup, "c", &extra);
    let mut reaper = crate::support::KillIfPanicking::default();
    for instance in [&a, &b, &c] {
        reaper.watch(&instance.child);
    }
    settled(&[&a, &b, &c], &mut Vec::new()).await;

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

    // Who reads what, sampled from before the fourth instance starts until the group has
    // settled again after it left.
    let mut seen = vec![sample(&[&a, &b, &c])];
    let mut d = start(&setup, "d", &extra);
    reaper.watch(&d.child);
    let joined = settled(&[&a, &b, &c, &d], &mut seen).await;
    let moved_in = joined.values().filter(|o| **o == "d").count();
    assert!(moved_in >= 1, "the new instance got no partition");
    let (count, sum) = pauses(&d);
    eprintln!(
        "d joined: {moved_in} of {PARTITIONS} partitions moved to it; its restores: {count}, \
         {:.3} s on average from assignment to reading",
        sum / count.max(1.0)
    );
    send_term_and_wait(&mut d);
    settled(&[&a, &b, &c], &mut seen).await;
    let kept = untouched(&seen);
    let doubled = seen
        .iter()
        .filter(|s| s.values().any(|owners| owners.len() > 1))
        .count();
    eprintln!(
        "through both rebalances {} of {PARTITIONS} partitions kept their owner in all {} \
         samples; {doubled} samples showed a partition read by two instances for a moment",
        kept.len(),
        seen.len()
    );
    restored_once(&kept, &[&a, &b, &c]);
    // The newcomer's share moved, the rest could stay: most partitions never paused (an eager
    // assignor revokes every partition at each rebalance, and restored_once fails for all).
    assert!(
        kept.len() >= PARTITIONS / 2,
        "only {} partitions were untouched by the rebalances",
        kept.len()
    );
    let superseded: f64 = [&a, &b, &c]
        .iter()
        .filter_map(|i| value(&scrape(i.port)?, "salestalk_superseded_tasks_total "))
        .sum();
    eprintln!("tasks restored again because another instance had claimed them: {superseded}");
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
    // An empty partition has nothing to commit.
    let ends: BTreeMap<(String, i32), i64> = ends(&setup)
        .into_iter()
        .filter(|(_, end)| *end > 0)
        .collect();
    let reached = eventually(
        Duration::from_secs(180),
        || async {
            let committed = committed(&setup);
            ends.keys()
                .filter_map(|p| Some((p.clone(), *committed.get(p)?)))
                .collect::<BTreeMap<_, _>>()
        },
        |committed| *committed == ends,
    )
    .await;
    assert_eq!(reached, ends, "every partition durable to its end");
    for instance in [a, b, c] {
        terminate(instance.child);
    }
    assert_views_equal_recomputation(&setup, false).await;
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
