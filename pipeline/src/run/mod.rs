//! `salestalk run`: the streaming runtime, written against the [`Source`] and
//! [`Sink`](salestalk_sinks::Sink) contracts.
//!
//! One driver loop per instance: it reads a batch from the source, hands each partition's
//! messages to that partition's [`Task`] (partitions side by side on `pipeline.workers`
//! threads, [`workers`]), and every flush interval (or sooner, when `max_pending_bytes` are
//! held) takes all tasks' results and has them written through the configured flush order
//! ([`durable`]) while it goes on reading; once they landed it tells the source which
//! positions are durable. One flush is in flight at a time, and it holds the partitions: a
//! revoked partition moves only after it landed, and its task is gone before any later flush
//! could write it. See `docs/adr/0004-exact-metrics-without-two-phase-commit.md` and
//! `docs/architecture.md`.

pub mod downstream;
mod durable;
pub mod redrive;
mod restore;
pub mod retention;
pub mod settings;
mod signals;
mod startup;
pub mod workers;

use std::collections::HashMap;
use std::sync::Arc;

use salestalk_operators::routing::RoutingTable;
use std::time::{Duration, Instant};

use anyhow::Context;
use salestalk_operators::flush::Flush;
use salestalk_operators::task::Task;
use salestalk_operators::time::{self, now_ms};
use salestalk_operators::{SourceKind, Tally};
use salestalk_store::Endpoint;
use salestalk_store::tables::consumer_group_lag::LagSample;

pub use startup::{migrate, record_versions};

use self::durable::{InFlight, Writer};
use self::restore::{RestoreContext, Restores};
use self::signals::StopRequest;
use self::startup::flush_plan;
use self::workers::Workers;
use crate::settings::Settings;
use crate::telemetry::{self, PartitionLabels, ReasonLabels, Telemetry};
use salestalk_corrections::{CorrectionObserver, Leadership};
use salestalk_sources::{Batch, Source, SourceObserver, SourcePartition, SourceSettings, Sources};

/// When a run ends on its own (besides SIGTERM/SIGINT).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    /// Stop after this long without a message, counted once the group has assigned partitions.
    pub idle_exit: Option<Duration>,
    /// Stop after this many messages.
    pub max_messages: Option<u64>,
}

/// One instance's tasks and the components they read from and write to.
struct Runtime<'a, S: Source> {
    settings: &'a Settings,
    source: S,
    /// Writes flushes through the configured sinks, on a tokio task of its own.
    writer: Arc<Writer>,
    /// The flush being written, if any.
    in_flight: Option<InFlight>,
    tasks: HashMap<SourcePartition, Task>,
    /// Newly assigned partitions whose state is being read back.
    restores: Restores,
    /// The threads a batch's partitions and the tasks' flushes are spread over.
    workers: Workers,
    tally: Tally,
    telemetry: Arc<Telemetry>,
    stop: StopRequest,
    /// Which events the metrics count (`[routing]`'s `metrics` target).
    routing: Arc<RoutingTable>,
    /// Who this process is in the task generations it claims (host, process, instance id).
    owner: String,
    /// Whether this instance corrects past days and heals the routing targets (it owns the
    /// first Kafka topic's partition 0).
    leadership: Leadership,
}

/// The consumer-group name this pipeline's own Kafka partitions are sampled under in
/// `consumer_group_lag` (beside `source.kinesis` for shards).
pub const KAFKA_LAG_GROUP: &str = "source.kafka";

/// How often each instance stores its partitions' lag (the SRE page shows the newest per
/// minute).
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// How often quiet partitions are looked at for clocks to move on (`pipeline.idle_after_ms`):
/// whether one is read to its end may take a round trip to the broker, at most this often.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(60);
/// The longest one look at quiet partitions asks the broker for, all of them together: with
/// brokers down, the driver's loop waits this long a minute, not a timeout per partition.
const IDLE_ASK_WITHIN: Duration = Duration::from_secs(5);

/// How long closing the sources (leaving the consumer group) may take once the run stopped.
/// librdkafka's close waits for the group coordinator without a bound (with tansu, the close
/// of a group's last member was seen never to return), and by then everything read is durable
/// and committed: an exit that stops waiting loses nothing, and the group moves the
/// partitions after `kafka.session_timeout_ms`.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

impl<S: Source> Runtime<'_, S> {
    /// Drops the tasks of revoked partitions, starts restoring newly assigned ones, and starts
    /// the tasks whose state has been read back. Partitions already owned are not touched:
    /// they go on being read while the new ones restore.
    async fn apply_changes(&mut self) -> anyhow::Result<()> {
        let changes = self.source.take_changes();
        for key in &changes.revoked {
            self.tasks.remove(key);
            self.restores.cancel(key);
            self.telemetry
                .partition_owned
                .get_or_create(&PartitionLabels::of(key))
                .set(0);
        }
        self.restore(changes.assigned);
        self.start_restored().await?;
        self.share_dedup_budget();
        self.leadership
            .set(leads_corrections(self.settings, &self.tasks));
        Ok(())
    }

    /// Shares the instance's dedup budget (`pipeline.dedup_memory_mib`) evenly among the
    /// partitions it owns, those still restoring included, so the ids held stay within it
    /// whatever a rebalance gives this instance; a task whose part shrank forgets its oldest
    /// minutes at once (counted in `salestalk_dedup_forgotten_early_ids`).
    fn share_dedup_budget(&mut self) {
        let owned = self.tasks.len() + self.restores.len();
        let (cap, tenant_cap) = self.settings.pipeline.dedup_caps(owned);
        for task in self.tasks.values_mut() {
            if task.dedup_caps() != (cap, tenant_cap) {
                task.set_dedup_caps(cap, tenant_cap);
            }
        }
        self.telemetry.dedup_cap_ids.set(cap as i64);
    }

    /// Starts reading back the state of `partitions` (each paused until its task starts).
    fn restore(&mut self, partitions: Vec<SourcePartition>) {
        for key in partitions {
            let predecessors = self.source.predecessors(&key);
            self.restores.start(key, predecessors);
        }
    }

    /// Makes a task of every state read back, and starts its partition at its checkpoint.
    async fn start_restored(&mut self) -> anyhow::Result<()> {
        for (key, state, waited) in self.restores.take_finished()? {
            let (topic, partition) = (key.topic(), key.number());
            let task = Task::resume(topic, partition, self.settings.task_settings(), state)
                .with_aggregates(self.settings.graph.aggregates.clone())
                .with_routing(Some(Arc::clone(&self.routing)))
                .with_flush_rows(self.settings.pipeline.max_flush_rows);
            if !self.source.start(&key, task.checkpoint()).await? {
                tracing::info!(topic, partition, "not restored: no longer assigned");
                continue;
            }
            let next = task.checkpoint().next_offset;
            tracing::info!(topic, partition, offset = next, "task restored");
            let labels = PartitionLabels::of(&key);
            self.telemetry.task_restores.get_or_create(&labels).inc();
            self.telemetry.partition_owned.get_or_create(&labels).set(1);
            self.telemetry.restore_seconds.observe(waited.as_secs_f64());
            self.tasks.insert(key, task);
        }
        Ok(())
    }

    /// Drops the tasks of `partitions` and reads them again from their checkpoints: what a
    /// sink refused is then dead-lettered instead of counted (ADR 0006).
    fn replay(&mut self, partitions: Vec<SourcePartition>) -> anyhow::Result<()> {
        for key in &partitions {
            let (topic, partition) = (key.topic(), key.number());
            tracing::warn!(%topic, partition, "a sink refused events: replaying from the checkpoint");
            self.telemetry.replays.inc();
        }
        self.restart(partitions)
    }

    /// Drops the tasks of `partitions`, pauses them and restores them from their newest
    /// checkpoints (claiming a new generation each).
    fn restart(&mut self, partitions: Vec<SourcePartition>) -> anyhow::Result<()> {
        for key in &partitions {
            self.tasks.remove(key);
        }
        self.source.pause(&partitions)?;
        self.restore(partitions);
        Ok(())
    }

    /// Hands each partition's messages, in order, to its task; partitions run side by side.
    /// With `only`, to those partitions' tasks alone.
    fn process(&mut self, batch: &Batch, only: Option<&[SourcePartition]>) {
        let mut parts = batch.by_partition();
        // A partition without a task is being restored; it will be read again from its
        // checkpoint, so its messages here are not lost.
        let work = self
            .tasks
            .iter_mut()
            .filter(|(key, _)| only.is_none_or(|only| only.contains(key)))
            .filter_map(|(key, task)| {
                let messages = parts.remove(&(key.topic(), key.number()))?;
                Some((task, messages))
            })
            .collect();
        self.workers.process(work);
    }

    /// Processes `batch`, flushing whenever a task stopped because half a flush's rows are
    /// changed (`pipeline.max_flush_rows`) and giving it the rest of its messages after: each
    /// flush's state insert stays one block. A task replaced meanwhile (replayed after a
    /// refusal) is not given them again: its partition is read again from its checkpoint.
    async fn process_all(&mut self, batch: &Batch) -> anyhow::Result<()> {
        self.process(batch, None);
        loop {
            let full: Vec<(SourcePartition, i64)> = self
                .tasks
                .iter()
                .filter(|(_, task)| task.is_full())
                .map(|(key, task)| (key.clone(), task.checkpoint().next_offset))
                .collect();
            if full.is_empty() {
                return Ok(());
            }
            self.flush().await?;
            let same: Vec<SourcePartition> = full
                .into_iter()
                .filter(|(key, next)| {
                    self.tasks
                        .get(key)
                        .is_some_and(|task| task.checkpoint().next_offset == *next)
                })
                .map(|(key, _)| key)
                .collect();
            self.process(batch, Some(&same));
        }
    }

    /// Updates the telemetry from a flush that became durable.
    fn observe(&self, flush: &Flush) {
        let t = &self.telemetry;
        t.count("accepted", flush.archive.len() as u64);
        t.count("duplicate", flush.duplicates);
        t.count("dead_lettered", flush.dead_letters.len() as u64);
        for letter in &flush.dead_letters {
            t.dead_letters
                .get_or_create(&ReasonLabels {
                    reason: letter.reason.as_str().to_string(),
                })
                .inc();
        }
    }

    /// Each task's partition and next position.
    fn positions(&self) -> Vec<(SourcePartition, i64)> {
        self.tasks
            .iter()
            .map(|(key, task)| (key.clone(), task.checkpoint().next_offset))
            .collect()
    }

    /// Stores the lag of this instance's Kafka partitions (Kinesis shards sample themselves)
    /// as group `source.kafka`, naming the instance: the SRE page's lag table then shows which
    /// instance owns which partitions and how far behind each is. Written in the background: a
    /// sample is a gauge, and a lost one is said again by the next.
    fn sample_own_lag(&self) {
        let now = now_ms();
        let samples: Vec<LagSample> = self
            .tasks
            .iter()
            .filter(|(key, _)| key.kind() == SourceKind::Kafka)
            .filter_map(|(key, task)| {
                let checkpoint = task.checkpoint();
                let lag = (self.source.end(key)? - checkpoint.next_offset).max(0) as u64;
                let behind_ms = match checkpoint.broker_watermark_ms {
                    Some(newest) if lag > 0 => (now as i64 - newest).max(0) as u64,
                    _ => 0,
                };
                Some(LagSample {
                    minute: time::minute_datetime(now),
                    consumer_group: KAFKA_LAG_GROUP.to_string(),
                    topic: key.topic().to_string(),
                    partition: key.number(),
                    lag_messages: lag,
                    lag_ms: behind_ms,
                    measured_at_ms: now,
                    throttled: 0,
                    instance: self.owner.clone(),
                })
            })
            .collect();
        if samples.is_empty() {
            return;
        }
        let endpoint = self.settings.clickhouse.clone();
        tokio::spawn(async move {
            if let Err(error) = endpoint.record_lag(&samples).await {
                tracing::debug!(%error, "storing the partitions' lag");
            }
        });
    }

    /// Moves on the clocks of tasks whose partitions are read to their end and have been quiet
    /// for `pipeline.idle_after_ms`, when that makes an hour final ([`Task::idle_watermark`],
    /// ADR 0023); the next flush seals it. Only such a task costs a look at its partition's
    /// end, so a quiet partition asks the broker about once an hour; the questions of one
    /// look take at most [`IDLE_ASK_WITHIN`] together (this runs on the driver's loop).
    fn move_idle_clocks(&mut self) {
        let Ok(idle_after_ms) = i64::try_from(self.settings.pipeline.idle_after_ms) else {
            return;
        };
        if idle_after_ms == 0 {
            return;
        }
        let now = now_ms() as i64;
        let mut quiet = Vec::new();
        let mut positions = Vec::new();
        for (key, task) in &mut self.tasks {
            let Some(to_ms) = task.idle_watermark(now, idle_after_ms) else {
                continue;
            };
            let next = task.checkpoint().next_offset;
            // The statistics' end first (no round trip): a partition behind is not quiet.
            if self.source.end(key).is_some_and(|end| end > next) {
                continue;
            }
            quiet.push(to_ms);
            positions.push((key.clone(), next));
        }
        if positions.is_empty() {
            return;
        }
        let read_to_end = self.source.read_to_end(&positions, IDLE_ASK_WITHIN);
        for (((key, _), to_ms), at_end) in positions.iter().zip(quiet).zip(read_to_end) {
            if !at_end {
                continue;
            }
            let Some(task) = self.tasks.get_mut(key) else {
                continue;
            };
            tracing::info!(
                topic = key.topic(),
                partition = key.number(),
                watermark_ms = to_ms,
                "a quiet partition's clocks move on with this machine's"
            );
            task.move_while_idle(to_ms);
        }
    }

    /// Updates the per-partition and state gauges from every task.
    fn observe_state(&self) {
        let t = &self.telemetry;
        let (mut windows, mut ids, mut forgotten, mut unchecked) = (0, 0, 0, 0);
        for (key, task) in &self.tasks {
            let labels = PartitionLabels {
                topic: key.topic().to_string(),
                partition: key.number(),
            };
            let checkpoint = task.checkpoint();
            if let Some(end) = self.source.end(key) {
                t.partition_lag
                    .get_or_create(&labels)
                    .set((end - checkpoint.next_offset).max(0));
            }
            if let Some(watermark) = checkpoint.event_watermark_ms {
                let lag = (now_ms() as i64 - watermark) as f64 / 1000.0;
                t.watermark_lag_seconds.get_or_create(&labels).set(lag);
            }
            let (task_windows, task_ids) = task.state_size();
            windows += task_windows;
            ids += task_ids;
            let (task_forgotten, task_unchecked) = task.dedup_capped();
            forgotten += task_forgotten;
            unchecked += task_unchecked;
        }
        t.dedup_forgotten_early.set(forgotten as i64);
        t.dedup_unchecked.set(unchecked as i64);
        t.open_windows.set(windows as i64);
        t.remembered_ids.set(ids as i64);
    }
}

/// Whether the instance owning `tasks` corrects past days: one instance at a time, the owner
/// of the first Kafka topic's partition 0 (Kinesis alone: instance 0).
fn leads_corrections(settings: &Settings, tasks: &HashMap<SourcePartition, Task>) -> bool {
    if settings.pipeline.reads(SourceKind::Kafka) {
        settings
            .kafka
            .topics
            .first()
            .is_some_and(|topic| tasks.contains_key(&SourcePartition::kafka(topic, 0)))
    } else {
        settings.kinesis.instance_index == 0
    }
}

/// Keeps the DLQ depth gauge current (every 15 s) without holding up the runtime.
fn watch_dlq_depth(endpoint: Endpoint, telemetry: Arc<Telemetry>) {
    tokio::spawn(async move {
        loop {
            match endpoint.dlq_depth().await {
                Ok(depth) => {
                    telemetry.dlq_depth.set(depth as i64);
                }
                Err(error) => tracing::debug!(%error, "reading the DLQ depth"),
            }
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
    });
}

/// Consumes until a limit or a signal stops it; returns what it made durable.
///
/// The metrics listener (with `/health/live`) is bound first: a start during a ClickHouse
/// outage answers its probes, not ready, while it waits.
pub async fn run(settings: &Settings, limits: RunLimits) -> anyhow::Result<Tally> {
    let telemetry = Arc::new(Telemetry::default());
    if let Some(listen) = settings.telemetry.listen() {
        let bound = telemetry::serve(listen, Arc::clone(&telemetry))
            .await
            .with_context(|| format!("serving metrics on {listen}"))?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    migrate(settings, &telemetry.probes).await?;
    startup::record_versions(settings).await;
    telemetry.probes.wait_for("the sources");
    let sources = SourceSettings {
        kinds: &settings.pipeline.source_kinds(),
        kafka: &settings.kafka,
        kinesis: &settings.kinesis,
        endpoint: &settings.clickhouse,
        instance: crate::instance::name(&format!("kinesis-{}", settings.kinesis.instance_index)),
    };
    let observer: Arc<dyn SourceObserver> = telemetry.clone();
    let source = Sources::open(sources, &observer).await?;
    let stop = StopRequest::on_signals()?;
    let routing = Arc::new(
        RoutingTable::compile(&settings.routing)
            .map_err(|problems| anyhow::anyhow!("routing: {}", problems.join("; ")))?,
    );
    let groups = crate::run::downstream::watched_groups(settings, &routing);
    let awaiting = crate::run::downstream::awaiting_commits(&groups);
    let plan = flush_plan(settings, &routing, awaiting.clone())?;
    startup::check_dead_letter_retention(settings).await;
    let workers = Workers::new(settings.pipeline.workers);
    tracing::info!(workers = workers.count(), "processing");
    for sink in telemetry::SINKS {
        telemetry.set_sink_up(sink, true);
    }
    watch_dlq_depth(settings.clickhouse.clone(), Arc::clone(&telemetry));
    retention::schedule(
        settings.clickhouse.clone(),
        settings.retention,
        Arc::clone(&telemetry),
    );
    crate::run::downstream::watch(settings, &groups, awaiting, Arc::clone(&telemetry));
    let leadership = Leadership::default();
    let observer: Arc<dyn CorrectionObserver> = telemetry.clone();
    salestalk_corrections::schedule(settings.corrector(), leadership.clone(), observer);
    crate::run::downstream::heal::schedule(
        settings,
        &routing,
        leadership.clone(),
        Arc::clone(&telemetry),
    );
    let writer = Arc::new(Writer {
        plan,
        outcomes_to: settings.clickhouse.clone(),
        policy: settings.retry.policy(),
        telemetry: Arc::clone(&telemetry),
        stop: stop.clone(),
    });
    let owner = crate::instance::name(&settings.kafka.instance_id);
    let restores = Restores::new(RestoreContext {
        endpoint: settings.clickhouse.clone(),
        settings: settings.task_settings(),
        policy: settings.retry.policy(),
        owner: owner.clone(),
        probes: Arc::clone(&telemetry.probes),
    });
    telemetry
        .probes
        .fail_liveness_after(Duration::from_millis(settings.pipeline.stall_after_ms));
    telemetry.probes.ready();
    let runtime = Runtime {
        settings,
        source,
        writer,
        in_flight: None,
        tasks: HashMap::new(),
        restores,
        workers,
        tally: Tally::default(),
        telemetry,
        stop,
        routing,
        owner,
        leadership,
    };
    runtime.drive(limits).await
}

impl<S: Source + Send + 'static> Runtime<'_, S> {
    /// Drives the run until a limit, a signal or an error stops it, then closes the sources
    /// (bounded, either way) and returns what it made durable.
    async fn drive(mut self, limits: RunLimits) -> anyhow::Result<Tally> {
        let outcome = self.read_until_stopped(limits).await;
        let Runtime { source, tally, .. } = self;
        close(source).await;
        outcome.map(|()| tally)
    }

    /// The driver loop: read, process, flush when due, until a limit or a signal.
    async fn read_until_stopped(&mut self, limits: RunLimits) -> anyhow::Result<()> {
        let settings = self.settings;
        let batch_timeout = Duration::from_millis(settings.pipeline.batch_timeout_ms);
        let flush_interval = Duration::from_millis(settings.pipeline.flush_interval_ms);
        let mut read: u64 = 0;
        let mut last_message = Instant::now();
        let mut last_flush = Instant::now();
        let mut last_report = Instant::now();
        let mut last_lag_sample = Instant::now();
        let mut last_idle_check = Instant::now();
        let mut batch = Batch::default();
        loop {
            self.telemetry.probes.beat();
            self.apply_changes().await?;
            batch.clear();
            // A partial batch waits no longer than the next flush is due: a flush taken late
            // is latency every event in it pays.
            let read_timeout = batch_timeout
                .min(flush_interval.saturating_sub(last_flush.elapsed()))
                .max(Duration::from_millis(1));
            tokio::select! {
                () = self.source.read(&mut batch, settings.pipeline.batch_size, read_timeout) => {}
                () = self.stop.requested() => {}
                // A flush that lands is committed at once, not after a whole batch.
                () = Self::flush_landed(&mut self.in_flight) => {}
                // A restored partition starts at once, not after a whole batch.
                () = self.restores.next_finished() => {}
            }
            let stopping = self.stop.is_set();
            // A revocation announced while the batch was read must take effect before
            // anything of that partition is processed or flushed: its next owner may already
            // be restoring it (the flush in flight, if any, has landed: the revocation waited
            // for it).
            self.apply_changes().await?;
            if !batch.is_empty() {
                last_message = Instant::now();
                read += batch.len() as u64;
                self.telemetry.count("read", batch.len() as u64);
                self.telemetry.batch_size.observe(batch.len() as f64);
                self.process_all(&batch).await?;
            } else if !self.source.has_partitions() {
                last_message = Instant::now();
            }
            // After the batch, never before: a replay (a sink refused an event) moves its
            // partition back to the checkpoint, and this batch's messages of it are past that.
            if self.flush_has_landed() {
                self.land().await?;
            }
            let mut idle = limits
                .idle_exit
                .is_some_and(|idle| last_message.elapsed() >= idle);
            // Quiet is not enough: a slow broker can pause a backlog for seconds. Idle means
            // every owned partition is read to its end.
            if idle && (!self.restores.is_empty() || !self.source.caught_up(&self.positions())) {
                idle = false;
                last_message = Instant::now();
            }
            let enough = limits.max_messages.is_some_and(|max| read >= max);
            // The memory bound: held raw bytes start the flush early.
            let pending: usize = self.tasks.values().map(Task::pending_bytes).sum();
            let full = pending >= settings.pipeline.max_pending_bytes;
            let due = last_flush.elapsed() >= flush_interval;
            if due && !stopping && last_idle_check.elapsed() >= IDLE_CHECK_EVERY {
                self.move_idle_clocks();
                last_idle_check = Instant::now();
            }
            if stopping || idle || enough || full || due {
                self.flush().await?;
                last_flush = Instant::now();
            }
            if last_lag_sample.elapsed() >= LAG_SAMPLE_EVERY {
                self.sample_own_lag();
                last_lag_sample = Instant::now();
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                self.observe_state();
                log_tally(&self.tally, "progress");
                last_report = Instant::now();
            }
            if stopping || idle || enough {
                self.land().await?;
                // Seals that just landed are recorded before leaving (one more checkpoint),
                // so the next start does not seal them again.
                if self.tasks.values().any(Task::has_pending) {
                    self.flush().await?;
                    self.land().await?;
                }
                break;
            }
        }
        log_tally(&self.tally, "stopped");
        Ok(())
    }
}

/// Closes `source` off the runtime, waiting at most [`CLOSE_WITHIN`]; a close that takes
/// longer is left behind (the command shuts the runtime down without waiting for it).
async fn close<S: Source + Send + 'static>(source: S) {
    let closing = tokio::task::spawn_blocking(move || drop(source));
    if tokio::time::timeout(CLOSE_WITHIN, closing).await.is_err() {
        tracing::warn!(
            within_s = CLOSE_WITHIN.as_secs(),
            "closing the sources (leaving the consumer group) did not finish; exiting without \
             waiting (everything read is durable; the group moves the partitions after \
             kafka.session_timeout_ms)"
        );
    }
}

fn log_tally(t: &Tally, what: &str) {
    tracing::info!(
        messages = t.messages,
        valid = t.valid_total(),
        duplicates = t.duplicates,
        rejected = t.rejected_total(),
        "{what}"
    );
}
