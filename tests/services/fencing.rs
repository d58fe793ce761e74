//! Fenced writers (ADR 0014): an owner that lost its partitions while stalled, and flushes
//! when it wakes, changes no number. First the mechanism, driven step by step against the
//! real server (a zombie's flush lands between its successor's restore and that successor's
//! own restart); then whole processes, one stopped with SIGSTOP past its session timeout.

use salestalk_operators::flush::TaskState;
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_operators::{PublishPath, RawMessage};
use salestalk_sinks::clickhouse::write_flushes;
use salestalk_store::Endpoint;
use salestalk_store::codec::task_name;

use crate::exactness::{
    Input, LATENESS_MS, SKEW_MS, assert_views_equal, read_back, recompute, seeded_setup,
};
use crate::support::settings;

fn task_settings() -> TaskSettings {
    TaskSettings {
        allowed_lateness_ms: LATENESS_MS,
        max_future_skew_ms: SKEW_MS,
        ..salestalk::runtime::task_settings(&settings())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A task owner as the runtime is one: it restores, claims a generation, processes, flushes.
struct Owner {
    name: &'static str,
    task: Task,
}

impl Owner {
    /// Restores `topic`/`partition` from what is durable and claims a generation for it.
    async fn restore(endpoint: &Endpoint, name: &'static str, topic: &str, partition: i32) -> Self {
        let settings = task_settings();
        let mut state: TaskState = endpoint
            .task_state(
                topic,
                partition,
                settings.allowed_lateness_ms,
                settings.dedup_horizon_ms,
            )
            .await
            .expect("restore");
        let task = task_name(topic, partition);
        let generation = endpoint
            .claim_generation(&task, state.checkpoint.epoch, name)
            .await
            .expect("claim");
        state.generation = Some(generation);
        Self {
            name,
            task: Task::resume(topic, partition, settings, state),
        }
    }

    /// Processes `messages[from..to]`, writes the flush and returns its epoch and how many
    /// window rows it wrote.
    async fn step(
        &mut self,
        endpoint: &Endpoint,
        topic: &str,
        partition: i32,
        messages: &[(i64, i64, Vec<u8>)],
        to: usize,
    ) -> (u64, usize) {
        let from = messages
            .iter()
            .position(|(offset, ..)| *offset >= self.task.checkpoint().next_offset)
            .unwrap_or(messages.len());
        let raw: Vec<RawMessage<'_>> = messages[from..to.max(from)]
            .iter()
            .map(|(offset, broker_ms, bytes)| RawMessage {
                topic,
                partition,
                offset: *offset,
                timestamp_ms: Some(*broker_ms),
                payload: Some(bytes),
                path: PublishPath::Direct,
                sequence: None,
            })
            .collect();
        self.task.process(&raw);
        let durable_at = now_ms();
        let flush = self.task.flush(durable_at);
        write_flushes(endpoint, std::slice::from_ref(&flush), durable_at as u64)
            .await
            .unwrap_or_else(|e| panic!("{}'s flush: {e}", self.name));
        (flush.checkpoint.epoch, flush.rows.len())
    }
}

/// Each partition goes through the same story: A owns it and flushes a quarter; B restores
/// from that (A is stalled, B's session has it now); A wakes and flushes up to three quarters,
/// B flushes up to half and dies; C restores from B's checkpoint, A flushes the rest once more,
/// C finishes. Without fencing, C's restore would take A's rows of the third quarter as its
/// own state and count them twice; with equal generations, A's late rows could win.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_owner_s_flushes_after_losing_its_partition_change_no_view() {
    let setup = seeded_setup("it-fence-steps", 41, 24_000, 60).await;
    let input: Input = read_back(&setup.isolated);
    let endpoint = setup.isolated.endpoint();
    let profile = endpoint.probe().await.expect("probe");
    endpoint.migrate(&profile).await.expect("migrate");
    for ((topic, partition), messages) in &input {
        let (topic, partition) = (topic.as_str(), *partition);
        let n = messages.len();
        let mut a = Owner::restore(&endpoint, "owner-a", topic, partition).await;
        let (first, _) = a.step(&endpoint, topic, partition, messages, n / 4).await;
        let mut b = Owner::restore(&endpoint, "owner-b", topic, partition).await;
        // A wakes, unaware, and flushes on from where it was.
        let (zombie, rows) = a
            .step(&endpoint, topic, partition, messages, 3 * n / 4)
            .await;
        assert!(rows > 0, "the stalled owner's flush wrote rows");
        b.step(&endpoint, topic, partition, messages, n / 2).await;
        drop(b);
        let mut c = Owner::restore(&endpoint, "owner-c", topic, partition).await;
        let (later_zombie, _) = a.step(&endpoint, topic, partition, messages, n).await;
        let (last, _) = c.step(&endpoint, topic, partition, messages, n).await;
        assert!(
            last > later_zombie,
            "the last owner's epochs outrank the stalled one's"
        );
        // The last checkpoint's lineage holds A's flush before B resumed, not A's later ones.
        let lineage = endpoint
            .lineage(&task_name(topic, partition), last)
            .await
            .expect("lineage");
        assert_eq!(lineage.generations.len(), 3, "{lineage:?}");
        assert!(lineage.admits(first) && lineage.admits(last));
        assert!(!lineage.admits(zombie) && !lineage.admits(later_zombie));
    }
    let expected = recompute(&input);
    assert_views_equal(&setup, expected, true).await;
    setup.isolated.remove().await;
}

/// Owners restoring one task at the same moment (a rebalance that flaps) each end up with a
/// generation of their own, and only confirmed ones count in a lineage.
#[tokio::test(flavor = "multi_thread")]
async fn owners_claiming_together_never_share_a_generation() {
    let endpoint = crate::support::endpoint(&crate::support::unique("it_claims").replace('-', "_"));
    let profile = endpoint.probe().await.expect("probe");
    endpoint.migrate(&profile).await.expect("migrate");
    let claims = (0..6).map(|i| {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            endpoint
                .claim_generation("race/0", 0, &format!("owner-{i}"))
                .await
        })
    });
    let mut generations = Vec::new();
    for claim in claims {
        generations.push(claim.await.expect("joined").expect("claimed"));
    }
    generations.sort_unstable();
    let distinct = generations.len();
    generations.dedup();
    assert_eq!(generations.len(), distinct, "{generations:?}");
    let confirmed: Vec<(u64, u64)> = endpoint
        .client()
        .query(
            "SELECT generation, count() AS owners FROM task_claims WHERE confirmed = 1 \
             GROUP BY generation ORDER BY generation",
        )
        .fetch_all()
        .await
        .expect("confirmed claims");
    assert_eq!(
        confirmed,
        generations.iter().map(|g| (*g, 1)).collect::<Vec<_>>(),
        "one confirmation per generation kept"
    );
    crate::support::drop_database(&endpoint.database).await;
}
