//! Making every task's pending results durable: the flushes go through the configured sinks
//! (ADR 0006 for what a refusal or an outage does), then the source hears which positions
//! are durable, and tasks with a refused event are replayed from their checkpoints.
//!
//! A flush is written by its own tokio task ([`Writer::write`]) while the driver loop goes on
//! reading and processing (`pipeline.overlap_flush`). At most one flush is in flight: the next
//! one, and any wait for memory (`max_pending_bytes`), first waits for it to land, so a slow
//! ClickHouse still slows reading. The flush holds the source's partitions while in flight
//! (`Source::hold_partitions`), so a revoked partition moves to its next owner only after the
//! flush landed (ADR 0004, "Parallel runtime").

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use salestalk_operators::SourcePartition;
use salestalk_operators::flush::Flush;
use salestalk_operators::time::epoch::generation_of;
use salestalk_sinks::clickhouse::record_outcomes;
use salestalk_sinks::outcomes::Outcomes;
use salestalk_sinks::retry::RetryPolicy;
use salestalk_sinks::{FlushBatch, FlushPlan, SinkError};
use salestalk_store::Endpoint;
use salestalk_store::tables::window_state::task_name;
use tokio::task::JoinHandle;

use super::signals::StopRequest;
use super::{Runtime, now_ms};
use crate::telemetry::{self, Telemetry};
use salestalk_sources::Source;

/// Writes flushes through the sinks, retrying while a sink is down.
pub(super) struct Writer {
    pub(super) plan: FlushPlan,
    /// Where each landed flush's delivery outcomes are stored (`sink_outcomes`).
    pub(super) outcomes_to: Endpoint,
    pub(super) policy: RetryPolicy,
    pub(super) telemetry: Arc<Telemetry>,
    /// Set once the run is stopping: an outage then ends the write instead of waiting it out.
    pub(super) stop: StopRequest,
}

/// A flush that landed.
pub(super) struct Written {
    flushes: Vec<Flush>,
    /// Indexes of the flushes whose tasks must be replayed instead of committed.
    replay: BTreeSet<usize>,
    /// Indexes of the flushes whose task another instance claimed since it was restored: they
    /// count nowhere (ADR 0014), so their tasks restore instead of being committed.
    superseded: BTreeSet<usize>,
    /// Indexes of the flushes whose final windows were sealed (ADR 0023).
    sealed: BTreeSet<usize>,
    started: Instant,
}

/// The flush being written.
pub(super) struct InFlight {
    handle: JoinHandle<anyhow::Result<Written>>,
    /// Its outcome, once awaited (a join handle yields it only once).
    outcome: Option<anyhow::Result<Written>>,
}

impl InFlight {
    /// Waits for it to land (or fail), keeping the outcome.
    async fn wait(&mut self) {
        if self.outcome.is_none() {
            let outcome = match (&mut self.handle).await {
                Ok(result) => result,
                Err(error) => Err(anyhow::anyhow!("the flush task failed: {error}")),
            };
            self.outcome = Some(outcome);
        }
    }

    /// Whether it has landed (or failed).
    fn is_done(&self) -> bool {
        self.outcome.is_some() || self.handle.is_finished()
    }

    /// Its outcome, waiting for it if need be.
    async fn landed(mut self) -> anyhow::Result<Written> {
        self.wait().await;
        self.outcome
            .unwrap_or_else(|| Err(anyhow::anyhow!("the flush task ended without an outcome")))
    }
}

impl Writer {
    /// Makes `flushes` durable. While a sink is down this holds them and keeps trying; once the
    /// run is stopping it gives up instead, without committing: a restart reads the data again.
    async fn write(
        self: Arc<Self>,
        flushes: Vec<Flush>,
        durable_at: u64,
    ) -> anyhow::Result<Written> {
        let started = Instant::now();
        let mut stop = self.stop.clone();
        let mut outage: Option<Instant> = None;
        // Failed attempts of the tries an outage cut short count with the one that landed.
        let mut earlier = Outcomes::default();
        let (replay, mut outcomes) = loop {
            let mut batch = FlushBatch::new(&flushes, durable_at, self.policy, &*self.telemetry);
            match self.plan.make_durable(&mut batch).await {
                Ok(()) => break (batch.to_replay(), std::mem::take(&mut batch.outcomes)),
                Err(error @ SinkError::Fatal { .. }) => return Err(error.into()),
                Err(SinkError::Down { service, message }) => {
                    earlier.add_failed_attempts(&batch.outcomes);
                    // Retrying a sink that is down is not a stall: a restart would not help.
                    self.telemetry.probes.beat();
                    let since = *outage.get_or_insert_with(Instant::now);
                    self.telemetry.set_sink_up(service, false);
                    self.telemetry
                        .outage_seconds
                        .set(since.elapsed().as_secs_f64());
                    tracing::error!(
                        sink = service,
                        error = %message,
                        outage_s = since.elapsed().as_secs(),
                        "a sink is down: reading is paused until it is back"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(self.policy.jittered_backoff(u32::MAX)) => {}
                        () = stop.requested() => {
                            anyhow::bail!(
                                "stopping while {service} is down: exiting without committing; \
                                 the unflushed messages will be read again"
                            );
                        }
                    }
                }
            }
        };
        for sink in telemetry::SINKS {
            self.telemetry.set_sink_up(sink, true);
        }
        self.telemetry.outage_seconds.set(0.0);
        if let Some(since) = outage {
            tracing::info!(outage_s = since.elapsed().as_secs(), "sinks are back");
        }
        self.telemetry
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        outcomes.add_failed_attempts(&earlier);
        if let Err(error) = record_outcomes(&self.outcomes_to, durable_at, &outcomes).await {
            tracing::warn!(%error, "could not store the flush's delivery outcomes");
        }
        let superseded = self.superseded(&flushes).await;
        let sealed = self
            .seal(&flushes, |i| replay.contains(&i) || superseded.contains(&i))
            .await;
        Ok(Written {
            flushes,
            replay,
            superseded,
            sealed,
            started,
        })
    }

    /// Seals the windows the landed flushes made final (ADR 0023), each on its task's home
    /// writer, except for the flushes `skip` names (their tasks restore or replay instead).
    /// Returns the indexes of the flushes whose seal landed; a seal that failed is due again
    /// with its task's next flush, and sealing again writes the same values.
    async fn seal(&self, flushes: &[Flush], skip: impl Fn(usize) -> bool) -> BTreeSet<usize> {
        let mut sealed = BTreeSet::new();
        for (i, flush) in flushes.iter().enumerate() {
            let Some(seal) = &flush.seal else { continue };
            if skip(i) {
                continue;
            }
            let task = task_name(&flush.topic, flush.partition);
            let home = self.outcomes_to.home(&flush.topic, flush.partition);
            let started = Instant::now();
            match home.seal(&task, seal, flush.checkpoint.epoch).await {
                Ok(()) => {
                    sealed.insert(i);
                    tracing::debug!(
                        task,
                        hours = ?seal.hours,
                        days = ?seal.days,
                        ms = started.elapsed().as_millis() as u64,
                        "sealed"
                    );
                }
                Err(error) => tracing::warn!(
                    %error,
                    task,
                    "could not seal the task's final hours and days: tried again with its next flush"
                ),
            }
        }
        sealed
    }

    /// The flushes whose task has a newer generation claimed than theirs. The group may give
    /// a partition to two instances for a moment (a broker that hands the assignor stale
    /// ownership; a stalled owner waking): the newer claim wins, and an owner that keeps the
    /// partition with the older one would otherwise write rows that count nowhere until its
    /// next restore. A failed check is tried again with the next flush.
    async fn superseded(&self, flushes: &[Flush]) -> BTreeSet<usize> {
        let tasks: Vec<String> = flushes
            .iter()
            .map(|f| task_name(&f.topic, f.partition))
            .collect();
        let latest = match self.outcomes_to.latest_generations(&tasks).await {
            Ok(latest) => latest,
            Err(error) => {
                tracing::warn!(%error, "could not check the tasks' generations; checked again next flush");
                return BTreeSet::new();
            }
        };
        flushes
            .iter()
            .zip(&tasks)
            .enumerate()
            .filter(|(_, (flush, task))| {
                latest
                    .get(*task)
                    .is_some_and(|newest| *newest > generation_of(flush.checkpoint.epoch))
            })
            .map(|(i, _)| i)
            .collect()
    }
}

impl<S: Source> Runtime<'_, S> {
    /// Takes every task's pending results and starts writing them, after the flush before has
    /// landed. Without `pipeline.overlap_flush` it also waits for this one.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        self.land().await?;
        let durable_at = now_ms();
        let flushes: Vec<Flush> = self
            .workers
            .flush(self.tasks.values_mut().collect(), durable_at as i64);
        if flushes.is_empty() {
            return Ok(());
        }
        let hold = self.source.hold_partitions();
        let writer = Arc::clone(&self.writer);
        let handle = tokio::spawn(async move {
            let written = writer.write(flushes, durable_at).await;
            // The partitions may move only once the flush landed (or never will).
            drop(hold);
            written
        });
        self.telemetry.flush_in_flight.set(1);
        self.in_flight = Some(InFlight {
            handle,
            outcome: None,
        });
        if !self.settings.pipeline.overlap_flush {
            self.land().await?;
        }
        Ok(())
    }

    /// Whether the flush in flight, if any, has landed (its results wait to be committed).
    pub(super) fn flush_has_landed(&self) -> bool {
        self.in_flight.as_ref().is_some_and(InFlight::is_done)
    }

    /// Resolves when the flush in flight has landed; never, when there is none.
    pub(super) async fn flush_landed(in_flight: &mut Option<InFlight>) {
        match in_flight {
            Some(flight) => flight.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Waits for the flush in flight, if any, then commits what it made durable and replays
    /// the tasks a sink refused events of.
    pub(super) async fn land(&mut self) -> anyhow::Result<()> {
        let Some(flight) = self.in_flight.take() else {
            return Ok(());
        };
        let written = flight.landed().await;
        self.telemetry.flush_in_flight.set(0);
        let written = written?;
        let mut durable = Vec::new();
        let mut to_replay = Vec::new();
        let mut superseded = Vec::new();
        for (i, flush) in written.flushes.iter().enumerate() {
            let key = SourcePartition::stored(&flush.topic, flush.partition);
            // A partition revoked while its flush was in flight is its next owner's now; the
            // flush landed before it moved, and the next owner restored from it.
            let owned = self.tasks.contains_key(&key);
            if written.superseded.contains(&i) {
                if owned {
                    tracing::warn!(
                        topic = %flush.topic,
                        partition = flush.partition,
                        "another instance claimed this task after this one restored it: \
                         restoring from the newest checkpoint (ADR 0014)"
                    );
                    self.telemetry.superseded_tasks.inc();
                    superseded.push(key);
                }
                continue;
            }
            if written.replay.contains(&i) {
                if owned {
                    to_replay.push(key);
                }
                continue;
            }
            self.tally.add(flush);
            self.observe(flush);
            if let (Some(seal), true) = (&flush.seal, written.sealed.contains(&i))
                && let Some(task) = self.tasks.get_mut(&key)
            {
                task.sealed(seal);
            }
            if owned {
                durable.push((key, flush.checkpoint.next_offset));
            }
        }
        self.source.commit(&durable);
        if !to_replay.is_empty() {
            self.replay(to_replay)?;
        }
        if !superseded.is_empty() {
            self.restart(superseded)?;
        }
        let rows: usize = written.flushes.iter().map(|f| f.rows.len()).sum();
        tracing::debug!(
            tasks = written.flushes.len(),
            rows,
            ms = written.started.elapsed().as_millis() as u64,
            "flushed"
        );
        Ok(())
    }
}
