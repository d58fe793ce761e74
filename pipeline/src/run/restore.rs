//! Restoring the tasks of newly assigned partitions off the driver loop: each partition's
//! state is read back from ClickHouse (its checkpoint, open windows and dedup ids, and a
//! Kinesis shard's parents' ids) and its generation claimed by a job of its own, a few at a
//! time, while the loop goes on reading and flushing the partitions it already owns. A new
//! partition stays paused (the group paused it on assignment) until its job is done and the
//! source has moved it to its checkpoint.
//!
//! A partition revoked while its job runs has the job aborted; a job superseded by a newer
//! one for the same partition (revoked and assigned again, or replayed) is ignored when it
//! ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use salestalk_http::probes::Probes;
use salestalk_operators::flush::TaskState;
use salestalk_operators::task::TaskSettings;
use salestalk_sinks::retry::RetryPolicy;
use salestalk_sources::SourcePartition;
use salestalk_store::Endpoint;
use salestalk_store::tables::window_state::task_name;
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};

use super::startup::with_retries;

/// Partitions whose state is read back at the same time: enough to overlap ClickHouse's round
/// trips, few enough that the dedup ids being loaded do not all sit in memory at once.
const RESTORES_AT_ONCE: usize = 4;

/// What a restore job needs, owned (it runs on a tokio task of its own).
#[derive(Clone)]
pub(super) struct RestoreContext {
    /// Where the state is read from and the generation claimed.
    pub endpoint: Endpoint,
    /// The time rules the state is read back under.
    pub settings: TaskSettings,
    /// The retry policy while ClickHouse is unavailable.
    pub policy: RetryPolicy,
    /// Who claims the generation.
    pub owner: String,
    /// Beaten on every retry: retrying a ClickHouse that is down is not a stall.
    pub probes: Arc<Probes>,
}

/// A job's result: its partition, its number, and the state read back.
type Finished = (SourcePartition, u64, anyhow::Result<TaskState>);

/// The restore jobs running.
pub(super) struct Restores {
    context: RestoreContext,
    jobs: JoinSet<Finished>,
    /// The current job of each partition being restored, and when it was asked for.
    current: HashMap<SourcePartition, (u64, AbortHandle, Instant)>,
    next_job: u64,
    permits: Arc<Semaphore>,
    /// Jobs that ended but whose tasks are not yet started.
    done: Vec<Finished>,
    /// A job that panicked: the run fails, as a restore on the loop would have.
    panicked: Option<String>,
}

impl Restores {
    /// No job running yet.
    pub fn new(context: RestoreContext) -> Self {
        Self {
            context,
            jobs: JoinSet::new(),
            current: HashMap::new(),
            next_job: 0,
            permits: Arc::new(Semaphore::new(RESTORES_AT_ONCE)),
            done: Vec::new(),
            panicked: None,
        }
    }

    /// Starts reading `key`'s state back (with `predecessors`' ids), superseding any job
    /// already running for it.
    pub fn start(&mut self, key: SourcePartition, predecessors: Vec<SourcePartition>) {
        self.cancel(&key);
        self.next_job += 1;
        let job = self.next_job;
        let context = self.context.clone();
        let permits = Arc::clone(&self.permits);
        let partition = key.clone();
        let handle = self.jobs.spawn(async move {
            // The semaphore is never closed.
            let _permit = permits.acquire_owned().await;
            let state = read_back(&context, &partition, &predecessors).await;
            (partition, job, state)
        });
        self.current.insert(key, (job, handle, Instant::now()));
    }

    /// Stops restoring `key` (revoked): its job's result, if it comes, is ignored.
    pub fn cancel(&mut self, key: &SourcePartition) {
        if let Some((_, handle, _)) = self.current.remove(key) {
            handle.abort();
        }
    }

    /// Whether any partition is being restored.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Partitions being restored.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// Resolves when a job ends (never while none runs); its result waits in
    /// [`Restores::take_finished`].
    pub async fn next_finished(&mut self) {
        if self.jobs.is_empty() {
            return std::future::pending().await;
        }
        if let Some(joined) = self.jobs.join_next().await {
            self.keep(joined);
        }
    }

    /// The states read back since the last call, each of a partition still being restored by
    /// that job (superseded and aborted jobs are dropped), with how long ago it was asked
    /// for. A job that failed for good fails the run, as a restore on the loop did.
    pub fn take_finished(&mut self) -> anyhow::Result<Vec<(SourcePartition, TaskState, Duration)>> {
        while let Some(joined) = self.jobs.try_join_next() {
            self.keep(joined);
        }
        if let Some(error) = self.panicked.take() {
            anyhow::bail!("a restore job panicked: {error}");
        }
        let mut ready = Vec::new();
        for (key, job, state) in std::mem::take(&mut self.done) {
            let Some((current, _, asked)) = self.current.get(&key) else {
                continue;
            };
            if *current == job {
                let waited = asked.elapsed();
                self.current.remove(&key);
                ready.push((key, state?, waited));
            }
        }
        Ok(ready)
    }

    fn keep(&mut self, joined: Result<Finished, tokio::task::JoinError>) {
        match joined {
            Ok(finished) => self.done.push(finished),
            Err(error) if error.is_cancelled() => {}
            Err(error) => self.panicked = Some(error.to_string()),
        }
    }
}

/// `partition`'s state as its flushes stored it, waiting for ClickHouse as long as it takes.
async fn stored_state(
    context: &RestoreContext,
    partition: &SourcePartition,
    what: &str,
) -> anyhow::Result<TaskState> {
    let settings = context.settings;
    // A task's state is on its home shard (ADR 0022).
    let home = context.endpoint.home(partition.topic(), partition.number());
    with_retries(
        &context.policy,
        what,
        || context.probes.beat(),
        || {
            home.task_state(
                partition.topic(),
                partition.number(),
                settings.allowed_lateness_ms,
                settings.dedup_horizon_ms,
            )
        },
    )
    .await
}

/// `key`'s state as its flushes stored it, with its predecessors' ids, and a generation
/// claimed for it.
async fn read_back(
    context: &RestoreContext,
    key: &SourcePartition,
    predecessors: &[SourcePartition],
) -> anyhow::Result<TaskState> {
    let mut state = stored_state(context, key, "restoring a task").await?;
    inherit(context, key, predecessors, &mut state).await?;
    let task = task_name(key.topic(), key.number());
    let base = state.checkpoint.epoch;
    let home = context.endpoint.home(key.topic(), key.number());
    let generation = with_retries(
        &context.policy,
        "claiming a task's generation",
        || context.probes.beat(),
        || home.claim_generation(&task, base, &context.owner),
    )
    .await?;
    state.generation = Some(generation);
    Ok(state)
}

/// Adds to `state` what the partition's predecessors (a Kinesis shard's parents and their
/// ancestors) counted: their ids within the dedup horizon, so a resend that crosses a
/// reshard is recognised, and, for a task that never flushed, their watermarks, so the
/// shard's lateness continues theirs as one stream's would.
async fn inherit(
    context: &RestoreContext,
    key: &SourcePartition,
    predecessors: &[SourcePartition],
    state: &mut TaskState,
) -> anyhow::Result<()> {
    if predecessors.is_empty() {
        return Ok(());
    }
    let fresh = state.checkpoint.epoch == 0;
    for parent in predecessors {
        let earlier = stored_state(context, parent, "restoring a parent shard's ids").await?;
        if fresh {
            let later = |a: Option<i64>, b: Option<i64>| a.max(b);
            let own = &mut state.checkpoint;
            own.event_watermark_ms = later(
                own.event_watermark_ms,
                earlier.checkpoint.event_watermark_ms,
            );
            own.broker_watermark_ms = later(
                own.broker_watermark_ms,
                earlier.checkpoint.broker_watermark_ms,
            );
        }
        state.seen.extend(earlier.seen);
    }
    tracing::info!(
        topic = %key.topic(),
        partition = key.number(),
        ?predecessors,
        "dedup continues the parent shards'"
    );
    Ok(())
}
