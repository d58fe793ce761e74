//! Fenced writers (ADR 0014): an owner that lost its partitions while stalled, and flushes
//! when it wakes, changes no number. First the mechanism, driven step by step against the
//! real server (a zombie's flush lands between its successor's restore and that successor's
//! own restart); then whole processes, one stopped with SIGSTOP past its session timeout.

use std::time::{Duration, Instant};

use salestalk_operators::flush::TaskState;
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_operators::{PublishPath, RawMessage};
use salestalk_sinks::clickhouse::write_flushes;
use salestalk_store::Endpoint;
use salestalk_store::tables::window_state::task_name;

use crate::exactness::{
    Input, LATENESS_MS, SKEW_MS, assert_views_equal, assert_views_match, durable, read_back,
    recompute, seeded_setup, wait_durable,
};
use crate::support::{
    KillIfPanicking, RUN_LIMIT, finish, past_a_dead_members_session, send_signal,
    session_timeout_env, settings,
};

fn task_settings() -> TaskSettings {
    TaskSettings {
        allowed_lateness_ms: LATENESS_MS,
        correction_horizon_ms: 7 * 86_400_000,
        max_future_skew_ms: SKEW_MS,
        ..settings().task_settings()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A task owner as the runtime is one: it restores, claims a generation, processes, flushes.
struct Owner {
    name: &'static str,
    task: Task,
    /// When its flushes become durable (Unix ms).
    clock_ms: i64,
}

impl Owner {
    /// Restores `topic`/`partition` from what is durable and claims a generation for it; its
    /// flushes become durable at `clock_ms`.
    async fn restore(
        endpoint: &Endpoint,
        name: &'static str,
        topic: &str,
        partition: i32,
        clock_ms: i64,
    ) -> Self {
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
            clock_ms,
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
        let durable_at = self.clock_ms;
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
/// own state and count them twice; with equal generations, A's late rows could win. Each
/// owner's flushes become durable in a minute of its own, so A's late latency rows (windowed
/// by that minute) are in a minute neither successor writes: only the fence keeps them out.
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
        let minute = 60_000;
        let start = now_ms();
        let mut a = Owner::restore(&endpoint, "owner-a", topic, partition, start).await;
        let (first, _) = a.step(&endpoint, topic, partition, messages, n / 4).await;
        let mut b = Owner::restore(&endpoint, "owner-b", topic, partition, start + minute).await;
        // A wakes, unaware, and flushes on from where it was.
        let (zombie, rows) = a
            .step(&endpoint, topic, partition, messages, 3 * n / 4)
            .await;
        assert!(rows > 0, "the stalled owner's flush wrote rows");
        b.step(&endpoint, topic, partition, messages, n / 2).await;
        drop(b);
        let mut c =
            Owner::restore(&endpoint, "owner-c", topic, partition, start + 2 * minute).await;
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
    let endpoint = crate::support::migrated_database("it_claims").await;
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

/// The views' fence row by row, with rows and claims written straight into the tables, as
/// claims were before they recorded their lineage (`task_lineage`): a row counts unless a later
/// generation of its task resumed from an epoch before it, whether the writer went on after
/// losing the task or its claim led nowhere (a successor resumed from the same checkpoint).
/// Unconfirmed claims fence nothing; tasks without claims keep every row.
#[tokio::test(flavor = "multi_thread")]
async fn views_count_no_row_written_after_a_successor_resumed() {
    let endpoint = crate::support::migrated_database("it_fence_views").await;
    let rows = [
        ("t/0", at(1, 1), "counts.1", 1),
        ("t/0", at(1, 2), "counts.2", 2),
        ("t/0", at(1, 3), "after-generation-2-resumed", 4),
        ("t/0", at(2, 1), "counts.8", 8),
        ("t/0", at(2, 2), "after-generations-3-and-4-resumed", 16),
        ("t/0", at(3, 1), "a-claim-that-led-nowhere", 32),
        ("t/0", at(4, 1), "counts.64", 64),
        ("u/0", 5, "counts.128", 128),
    ];
    insert_volume_rows(&endpoint, &rows).await;
    // (generation, the epoch it resumed from, confirmed)
    let claims = [
        (1, 0, 1),
        (2, at(1, 2), 1),
        (3, at(2, 1), 1),
        (4, at(2, 1), 1),
        (5, 0, 0),
    ];
    let values: Vec<String> = claims
        .iter()
        .map(|(generation, base, confirmed)| {
            format!("('t/0', {generation}, {base}, 'owner', {generation}, {confirmed}, 0)")
        })
        .collect();
    endpoint
        .client()
        .query(&format!(
            "INSERT INTO task_claims (task, generation, base_epoch, owner, nonce, confirmed, \
             claimed_at_ms) VALUES {}",
            values.join(", ")
        ))
        .execute()
        .await
        .expect("claims");
    assert_eq!(counted(&endpoint).await, of_kind(&rows, "counts."));
    crate::support::drop_database(&endpoint.database).await;
}

/// Claims that branch, as when a broker hands a partition to two instances at once: two
/// generations resume from different epochs of the same one (the second read the state after
/// one more flush of it landed). The views count the rows of the newest claim's lineage, as
/// that claim's restore counted them, whichever branch it is; claims made by the pipeline's
/// own `claim_generation`. A rule read off the claims alone (a generation counts up to the
/// lowest epoch any later one resumed from) fails both checks: it hid generation 2's epoch 10
/// from generation 4's chain and all of generation 3 from generation 5's.
#[tokio::test(flavor = "multi_thread")]
async fn views_follow_the_newest_claim_when_claims_branch() {
    let endpoint = crate::support::migrated_database("it_fence_branch").await;
    let claim = |base: u64| {
        let endpoint = endpoint.clone();
        async move {
            endpoint
                .claim_generation("t/0", base, "owner")
                .await
                .expect("claim")
        }
    };
    assert_eq!(claim(0).await, 1);
    assert_eq!(claim(at(1, 2)).await, 2);
    assert_eq!(
        claim(at(2, 9)).await,
        3,
        "one instance resumes from epoch 9"
    );
    assert_eq!(claim(at(2, 10)).await, 4, "the other from epoch 10");
    let rows = [
        ("t/0", at(1, 2), "chain.1", 1),
        ("t/0", at(1, 3), "generation-1-after-2-resumed", 2),
        ("t/0", at(2, 9), "chain.4", 4),
        ("t/0", at(2, 10), "generation-2-up-to-4-s-base", 8),
        ("t/0", at(3, 1), "generation-3", 16),
        ("t/0", at(4, 1), "generation-4", 32),
    ];
    insert_volume_rows(&endpoint, &rows).await;
    let mut expected = of_kind(&rows, "chain.");
    expected.extend(of_kind(&rows, "generation-2-"));
    expected.extend(of_kind(&rows, "generation-4"));
    expected.sort_by_key(|(_, events)| *events);
    assert_eq!(counted(&endpoint).await, expected, "generation 4's chain");

    // Generation 3's owner restores again from its own checkpoint, the newest: its chain wins.
    assert_eq!(claim(at(3, 1)).await, 5);
    let later = [("t/0", at(5, 1), "generation-5", 64)];
    insert_volume_rows(&endpoint, &later).await;
    let mut expected = of_kind(&rows, "chain.");
    expected.extend(of_kind(&rows, "generation-3"));
    expected.extend(of_kind(&later, "generation-5"));
    expected.sort_by_key(|(_, events)| *events);
    assert_eq!(counted(&endpoint).await, expected, "generation 5's chain");
    crate::support::drop_database(&endpoint.database).await;
}

/// The epoch `n` of `generation`.
fn at(generation: u64, n: u64) -> u64 {
    (generation << 32) + n
}

/// (task, epoch, event type, events): each row a key of its own, so only the fence decides.
type VolumeRow = (&'static str, u64, &'static str, u64);

/// Writes `rows` as minute rows of the volume family, straight into `window_state`.
async fn insert_volume_rows(endpoint: &Endpoint, rows: &[VolumeRow]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(task, epoch, event_type, events)| {
            format!(
                "('volume', '{task}', {epoch}, now(), 'tenant-a', '{event_type}', 'src', '', \
                 [{events}], [], [], [])"
            )
        })
        .collect();
    endpoint
        .client()
        .query(&format!(
            "INSERT INTO window_state (family, task, epoch, window_start, tenant_id, d1, d2, d3, \
             ints, floats, hist_buckets, hist_counts) VALUES {}",
            values.join(", ")
        ))
        .execute()
        .await
        .expect("rows");
}

/// What `event_volume` counts, by event type, fewest first.
async fn counted(endpoint: &Endpoint) -> Vec<(String, u64)> {
    endpoint
        .client()
        .query("SELECT event_type, events FROM event_volume ORDER BY events")
        .fetch_all()
        .await
        .expect("event_volume")
}

/// The (event type, events) of `rows` whose event type starts with `prefix`, fewest first.
fn of_kind(rows: &[VolumeRow], prefix: &str) -> Vec<(String, u64)> {
    let mut kind: Vec<(String, u64)> = rows
        .iter()
        .filter(|(_, _, event_type, _)| event_type.starts_with(prefix))
        .map(|(_, _, event_type, events)| (event_type.to_string(), *events))
        .collect();
    kind.sort_by_key(|(_, events)| *events);
    kind
}

/// Window rows a generation wrote after its successor resumed from it: a stalled owner's
/// flushes once it woke. Merges fold them away as later epochs replace them, so this is
/// sampled while they are fresh.
async fn rows_written_after_losing(endpoint: &Endpoint) -> u64 {
    endpoint
        .client()
        .query(
            "SELECT count() FROM window_state AS w ANY INNER JOIN ( \
               SELECT task, base_epoch FROM task_claims WHERE confirmed = 1 AND base_epoch > 0 \
             ) AS c USING task \
             WHERE intDiv(w.epoch, 4294967296) = intDiv(c.base_epoch, 4294967296) \
               AND w.epoch > c.base_epoch",
        )
        .fetch_one()
        .await
        .expect("rows written after losing")
}

/// The last `count` lines of the file at `path` (what a child wrote there).
fn last_lines(path: &std::path::Path, count: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// The scenario with whole processes: A reads, is stopped with SIGSTOP past its
/// session timeout, B takes every partition over, A is resumed and goes on (flushing what it
/// held, then rejoining the group). Every view equals the batch recomputation.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_stopped_past_its_session_timeout_changes_no_view() {
    let _heavy = crate::support::one_heavy_test_at_a_time().await;
    let mut setup = seeded_setup("it-fence-stop", 43, 60_000, 60).await;
    setup.env.extend([
        session_timeout_env(),
        // Small batches: the stopped instance holds read, unflushed events when stopped.
        ("SALESTALK__PIPELINE__BATCH_SIZE", "500".to_string()),
    ]);
    let total: i64 = read_back(&setup.isolated)
        .values()
        .map(|m| m.len() as i64)
        .sum();
    let run = |env: &[(&'static str, String)]| {
        crate::support::salestalk_command(&["run", "--idle-exit", "20s"], env)
            .spawn()
            .expect("salestalk run starts")
    };
    let mut watched = KillIfPanicking::default();
    let mut a = run(&setup.env);
    watched.watch(&a);
    wait_durable(&setup, 1, &mut [&mut a]).await;
    send_signal(&a, "-STOP");
    let at_stop = durable(&setup.isolated).await;
    assert!(
        0 < at_stop && at_stop < total,
        "A stopped mid-stream: {at_stop} of {total}"
    );
    // B joins once the group has given up on A: A is stopped past its session timeout when
    // B takes over.
    past_a_dead_members_session().await;

    // B gets every partition and makes progress past A's. Its log (at info) is kept so a B
    // that gets nothing says why.
    let b_log = tempfile::NamedTempFile::new().expect("a log file");
    let mut b_env = setup.env.clone();
    b_env.push(("SALESTALK__LOG__LEVEL", "info".to_string()));
    let mut b = crate::support::salestalk_command(&["run", "--idle-exit", "20s"], &b_env)
        .stderr(b_log.reopen().expect("the log file"))
        .spawn()
        .expect("salestalk run starts");
    watched.watch(&b);
    let before_wake = wait_durable(&setup, at_stop + 2_000, &mut [&mut b]).await;
    assert!(
        before_wake > at_stop,
        "B took over: {before_wake} after {at_stop}; B's log ends with:\n{}",
        last_lines(b_log.path(), 40)
    );
    send_signal(&a, "-CONT");
    let mut after_losing = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        after_losing =
            after_losing.max(rows_written_after_losing(&setup.isolated.endpoint()).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("A wrote {after_losing} rows under its old generation after B resumed from it");
    for (child, name) in [(a, "A"), (b, "B")] {
        let out = finish(child, RUN_LIMIT, name);
        assert!(out.status.success(), "{name} exits 0");
    }
    assert_eq!(durable(&setup.isolated).await, total, "durable once each");
    let owners: u64 = setup
        .isolated
        .endpoint()
        .client()
        .query("SELECT uniqExact(owner) FROM task_claims WHERE confirmed = 1")
        .fetch_one()
        .await
        .expect("owners");
    assert!(owners >= 2, "both instances owned partitions: {owners}");
    assert_views_match(&setup).await;
    setup.isolated.remove().await;
}
