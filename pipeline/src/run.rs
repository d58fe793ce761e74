//! `salestalk run`: the streaming runtime.
//!
//! One driver loop per instance: it reads batches from the consumer group, hands each
//! partition's messages to that partition's [`Task`], and every flush interval (or sooner,
//! when `max_pending_bytes` are held) makes all tasks' results durable (the archive, the
//! dead letters in their topic and table, then one atomic insert of window rows and
//! checkpoints), then commits the offsets to Kafka. Failed writes follow ADR 0006. Polling, processing and flushing never
//! overlap, so a revoked partition's task is gone before any later flush could write it.
//! See `docs/adr/0004-exact-metrics-without-two-phase-commit.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use salestalk_kafka::admin;
use salestalk_kafka::consumer::{Assignment, GroupMembership, group_member};
use salestalk_operators::flush::Flush;
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_operators::{RawMessage, Tally};
use salestalk_sinks::clickhouse::{Archive, DeadLetterTable, WindowState};
use salestalk_sinks::kafka::DeadLetterTopic;
use salestalk_sinks::retry::RetryPolicy;
use salestalk_sinks::{FlushBatch, FlushPlan, Sink, SinkError, SinkKind};
use salestalk_store::{ClickHouseError, Endpoint};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::settings::Settings;
use crate::telemetry::{self, PartitionLabels, ReasonLabels, Telemetry};

/// When a run ends on its own (besides SIGTERM/SIGINT).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    /// Stop after this long without a message, counted once the group has assigned partitions.
    pub idle_exit: Option<Duration>,
    /// Stop after this many messages.
    pub max_messages: Option<u64>,
}

type PartitionKey = (String, i32);

fn task_settings(settings: &Settings) -> TaskSettings {
    TaskSettings {
        allowed_lateness_ms: settings.pipeline.allowed_lateness_ms,
        max_future_skew_ms: settings.pipeline.max_future_skew_ms,
        dedup_horizon_ms: settings.pipeline.dedup_horizon_ms,
        max_message_bytes: settings.kafka.max_message_bytes,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Retries `attempt` while ClickHouse is unavailable (start-up and restores, where nothing
/// else can proceed without it): backoff per `policy`, capped, without an attempt limit.
async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClickHouseError>>,
{
    let mut retry = 0;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() => {
                retry += 1;
                let pause = policy.jittered_backoff(retry);
                tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "{what} failed; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(error).with_context(|| what.to_string()),
        }
    }
}

/// Applies the migrations this server lacks (run at start-up and by `salestalk migrate`).
pub async fn migrate(settings: &Settings) -> anyhow::Result<usize> {
    let endpoint = &settings.clickhouse;
    let policy = settings.retry.policy();
    let profile = with_retries(&policy, "probing ClickHouse", || endpoint.probe()).await?;
    tracing::info!(version = %profile.version, modern = profile.is_modern(), "ClickHouse");
    with_retries(&policy, "migrating", || endpoint.migrate(&profile)).await
}

struct Runtime<'a> {
    settings: &'a Settings,
    /// Where tasks are restored from.
    store: Endpoint,
    /// The sinks every flush goes through, in the configured order.
    plan: FlushPlan,
    tasks: HashMap<PartitionKey, Task>,
    tally: Tally,
    telemetry: Arc<Telemetry>,
    signals: Signals,
}

/// SIGTERM and SIGINT, which ask for a drain.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Resolves when either arrives, naming it.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

impl Runtime<'_> {
    /// Restores tasks for newly assigned partitions and drops revoked ones.
    async fn apply_assignments(
        &mut self,
        consumer: &StreamConsumer<GroupMembership>,
    ) -> anyhow::Result<()> {
        // Changes are folded first: a partition assigned and revoked again before we got
        // here is not ours, and seeking it would fail.
        let mut assigned: Vec<PartitionKey> = Vec::new();
        for change in consumer.context().take_changes() {
            match change {
                Assignment::Revoked(partitions) => {
                    for key in partitions {
                        assigned.retain(|a| *a != key);
                        self.tasks.remove(&key);
                    }
                }
                Assignment::Assigned(partitions) => {
                    for key in partitions {
                        if !assigned.contains(&key) {
                            assigned.push(key);
                        }
                    }
                }
            }
        }
        // The group paused them on assignment.
        self.restore(consumer, assigned).await
    }

    /// Rebuilds the tasks of `partitions` (paused) from ClickHouse, moves each partition to
    /// its task's checkpoint and resumes them.
    async fn restore(
        &mut self,
        consumer: &StreamConsumer<GroupMembership>,
        partitions: Vec<PartitionKey>,
    ) -> anyhow::Result<()> {
        let policy = self.settings.retry.policy();
        let mut resume = TopicPartitionList::new();
        for (topic, partition) in partitions {
            let settings = task_settings(self.settings);
            let state = with_retries(&policy, "restoring a task", || {
                self.store.task_state(
                    &topic,
                    partition,
                    settings.allowed_lateness_ms,
                    settings.dedup_horizon_ms,
                )
            })
            .await?;
            let task = Task::resume(&topic, partition, settings, state)
                .with_aggregates(self.settings.graph.aggregates.clone());
            let next = task.checkpoint().next_offset;
            if !seek_when_ready(consumer, &topic, partition, next).await? {
                tracing::info!(%topic, partition, "not restored: no longer assigned");
                continue;
            }
            tracing::info!(%topic, partition, offset = next, "task restored");
            resume.add_partition(&topic, partition);
            self.tasks.insert((topic, partition), task);
        }
        consumer
            .resume(&resume)
            .context("resuming restored partitions")
    }

    /// Drops the tasks of `partitions` and reads them again from their checkpoints: what a
    /// sink refused is then dead-lettered instead of counted (ADR 0006).
    async fn replay(
        &mut self,
        consumer: &StreamConsumer<GroupMembership>,
        partitions: Vec<PartitionKey>,
    ) -> anyhow::Result<()> {
        let mut pause = TopicPartitionList::new();
        for (topic, partition) in &partitions {
            pause.add_partition(topic, *partition);
            self.tasks.remove(&(topic.clone(), *partition));
            tracing::warn!(%topic, partition, "a sink refused events: replaying from the checkpoint");
            self.telemetry.replays.inc();
        }
        consumer
            .pause(&pause)
            .context("pausing partitions to replay")?;
        self.restore(consumer, partitions).await
    }

    /// Hands each partition's messages, in order, to its task.
    fn process(&mut self, batch: &[rdkafka::message::BorrowedMessage<'_>]) {
        let mut by_partition: HashMap<(&str, i32), Vec<RawMessage<'_>>> = HashMap::new();
        for message in batch {
            by_partition
                .entry((message.topic(), message.partition()))
                .or_default()
                .push(RawMessage {
                    topic: message.topic(),
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp_ms: message.timestamp().to_millis(),
                    payload: message.payload(),
                });
        }
        for ((topic, partition), messages) in by_partition {
            // A partition without a task is being restored; it will be read again from its
            // checkpoint, so these messages are not lost.
            if let Some(task) = self.tasks.get_mut(&(topic.to_string(), partition)) {
                task.process(&messages);
            }
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

    /// Whether every owned partition has been read to its end (asks the broker).
    fn caught_up(&self, consumer: &StreamConsumer<GroupMembership>) -> bool {
        self.tasks.iter().all(|((topic, partition), task)| {
            consumer
                .fetch_watermarks(topic, *partition, Duration::from_secs(5))
                .is_ok_and(|(_, high)| task.checkpoint().next_offset >= high)
        })
    }

    /// Updates the per-partition and state gauges from every task.
    fn observe_state(&self, consumer: &StreamConsumer<GroupMembership>) {
        let t = &self.telemetry;
        let (mut windows, mut ids) = (0, 0);
        for ((topic, partition), task) in &self.tasks {
            let labels = PartitionLabels {
                topic: topic.clone(),
                partition: *partition,
            };
            let checkpoint = task.checkpoint();
            // From librdkafka's periodic statistics: no round trip to the broker.
            if let Some(high) = consumer.context().high_watermark(topic, *partition) {
                t.partition_lag
                    .get_or_create(&labels)
                    .set((high - checkpoint.next_offset).max(0));
            }
            if let Some(watermark) = checkpoint.event_watermark_ms {
                let lag = (now_ms() as i64 - watermark) as f64 / 1000.0;
                t.watermark_lag_seconds.get_or_create(&labels).set(lag);
            }
            let (task_windows, task_ids) = task.state_size();
            windows += task_windows;
            ids += task_ids;
        }
        t.open_windows.set(windows as i64);
        t.remembered_ids.set(ids as i64);
    }

    /// Makes every task's pending results durable, then commits their offsets. While a sink
    /// is down this holds everything and keeps trying (reading stays paused: backpressure);
    /// a signal then ends the run without committing, and a restart reads the data again.
    async fn flush(&mut self, consumer: &StreamConsumer<GroupMembership>) -> anyhow::Result<()> {
        let durable_at = now_ms();
        let flushes: Vec<Flush> = self
            .tasks
            .values_mut()
            .filter(|task| task.has_pending())
            .map(|task| task.flush(durable_at as i64))
            .collect();
        if flushes.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let policy = self.settings.retry.policy();
        let mut outage: Option<Instant> = None;
        let replay = loop {
            let mut batch = FlushBatch::new(&flushes, durable_at, policy, &*self.telemetry);
            match self.plan.make_durable(&mut batch).await {
                Ok(()) => break batch.to_replay(),
                Err(error @ SinkError::Fatal { .. }) => return Err(error.into()),
                Err(SinkError::Down { service, message }) => {
                    drop(batch);
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
                        _ = tokio::time::sleep(policy.jittered_backoff(u32::MAX)) => {}
                        name = self.signals.recv() => {
                            anyhow::bail!(
                                "{name} while {service} is down: stopping without committing; \
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
        let mut offsets = TopicPartitionList::new();
        let mut to_replay = Vec::new();
        for (i, flush) in flushes.iter().enumerate() {
            if replay.contains(&i) {
                to_replay.push((flush.topic.clone(), flush.partition));
                continue;
            }
            self.tally.add(flush);
            self.observe(flush);
            offsets
                .add_partition_offset(
                    &flush.topic,
                    flush.partition,
                    Offset::Offset(flush.checkpoint.next_offset),
                )
                .context("building the offset list")?;
        }
        // Kafka's offsets follow the checkpoints for lag monitoring; restarts use the checkpoints.
        if offsets.count() > 0
            && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
        {
            tracing::warn!(%error, "committing offsets to Kafka");
        }
        if !to_replay.is_empty() {
            self.replay(consumer, to_replay).await?;
        }
        let rows: usize = flushes.iter().map(|f| f.rows.len()).sum();
        tracing::debug!(
            tasks = flushes.len(),
            rows,
            ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
        Ok(())
    }
}

/// Moves an assigned partition to `offset`; `false` if it is no longer assigned.
///
/// librdkafka refuses a seek (`Erroneous state`) until the partition's fetcher has started,
/// which right after an assignment waits for the broker's answer about committed offsets; a
/// slow broker makes that window long, so the seek is retried while the partition is ours.
async fn seek_when_ready(
    consumer: &StreamConsumer<GroupMembership>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let error = match consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            Ok(()) => return Ok(true),
            Err(error) => error,
        };
        let owned = consumer
            .assignment()
            .is_ok_and(|list| list.find_partition(topic, partition).is_some());
        if !owned {
            // Revoked meanwhile: the revocation waits in the next batch of changes.
            return Ok(false);
        }
        // rdkafka reports seek failures as text only.
        let not_ready =
            matches!(&error, KafkaError::Seek(text) if text.contains("Erroneous state"));
        if !not_ready || Instant::now() > deadline {
            return Err(error).with_context(|| format!("seeking {topic}/{partition} to {offset}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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

/// The sinks `sinks.flush_order` names, built from their settings. The dead-letter topic takes
/// part only when `dlq.topic` is set, and must exist: a broker too busy to answer in time is
/// not a reason to stop, only a topic the broker says is missing is.
fn flush_plan(settings: &Settings) -> anyhow::Result<FlushPlan> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for kind in settings.sinks.flush_order.kinds() {
        let endpoint = settings.clickhouse.clone();
        match kind {
            SinkKind::Archive => sinks.push(Box::new(Archive::new(endpoint))),
            SinkKind::DeadLetterTable => sinks.push(Box::new(DeadLetterTable::new(endpoint))),
            SinkKind::WindowState => sinks.push(Box::new(WindowState::new(endpoint))),
            SinkKind::DeadLetterTopic => {
                let Some(topic) = &settings.dlq.topic else {
                    tracing::info!("dlq.topic is empty: dead letters go to the table only");
                    continue;
                };
                let missing = admin::missing_topics(&settings.kafka, std::slice::from_ref(topic))
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, %topic, "could not look up the dead-letter topic");
                        Vec::new()
                    });
                anyhow::ensure!(
                    missing.is_empty(),
                    "the dead-letter topic '{topic}' does not exist: create it \
                     (deploy/services/up does) or set dlq.topic"
                );
                let sink = DeadLetterTopic::new(&settings.kafka, topic)
                    .context("creating the dead-letter topic producer")?;
                sinks.push(Box::new(sink));
            }
        }
    }
    anyhow::ensure!(
        sinks
            .iter()
            .any(|s| matches!(s.name(), "dead_letter_topic" | "dead_letter_table")),
        "no dead-letter sink: sinks.flush_order lists only dead_letter_topic and dlq.topic is empty"
    );
    Ok(FlushPlan::new(sinks))
}

/// Consumes until a limit or a signal stops it; returns what it made durable.
pub async fn run(settings: &Settings, limits: RunLimits) -> anyhow::Result<Tally> {
    migrate(settings).await?;
    let consumer = group_member(&settings.kafka).context("creating the Kafka consumer")?;
    let topics: Vec<&str> = settings.kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the topics")?;
    tracing::info!(brokers = %settings.kafka.brokers, ?topics, group = %settings.kafka.group_id, "consuming");

    let signals = Signals::install()?;
    let plan = flush_plan(settings)?;
    let batch_timeout = Duration::from_millis(settings.pipeline.batch_timeout_ms);
    let flush_interval = Duration::from_millis(settings.pipeline.flush_interval_ms);
    let telemetry = Arc::new(Telemetry::default());
    if let Some(listen) = settings.metrics.listen {
        let bound = telemetry::serve(listen, Arc::clone(&telemetry))
            .await
            .with_context(|| format!("serving metrics on {listen}"))?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    for sink in telemetry::SINKS {
        telemetry.set_sink_up(sink, true);
    }
    watch_dlq_depth(settings.clickhouse.clone(), Arc::clone(&telemetry));
    let mut runtime = Runtime {
        settings,
        store: settings.clickhouse.clone(),
        plan,
        tasks: HashMap::new(),
        tally: Tally::default(),
        telemetry,
        signals,
    };
    let mut read: u64 = 0;
    let mut last_message = Instant::now();
    let mut last_flush = Instant::now();
    let mut last_report = Instant::now();
    // An unreachable broker is reported once per partition per poll: one line per 10 s.
    let mut consumer_errors = telemetry::LogThrottle::new(Duration::from_secs(10));

    'consume: loop {
        runtime.apply_assignments(&consumer).await?;
        let mut batch = Vec::with_capacity(settings.pipeline.batch_size);
        let deadline = tokio::time::Instant::now() + batch_timeout;
        let mut stopping = false;
        while batch.len() < settings.pipeline.batch_size {
            tokio::select! {
                received = tokio::time::timeout_at(deadline, consumer.recv()) => match received {
                    Ok(Ok(message)) => batch.push(message),
                    Ok(Err(error)) => {
                        runtime.telemetry.consumer_errors.inc();
                        if let Some(held_back) = consumer_errors.admit(Instant::now()) {
                            tracing::warn!(%error, held_back, "consumer error (held_back: similar errors since the last line)");
                        }
                    }
                    Err(_) => break,
                },
                name = runtime.signals.recv() => { tracing::info!("{name}: draining"); stopping = true; break; }
            }
            // An assignment change must be acted on before more of the stream is read.
            if consumer.context().has_changes_pending() {
                break;
            }
        }
        // A revocation announced while the batch was read must take effect before anything of
        // that partition is processed or flushed: its next owner may already be restoring it.
        runtime.apply_assignments(&consumer).await?;
        if !batch.is_empty() {
            last_message = Instant::now();
            read += batch.len() as u64;
            runtime.telemetry.count("read", batch.len() as u64);
            runtime.telemetry.batch_size.observe(batch.len() as f64);
            runtime.process(&batch);
        } else if !consumer.context().has_partitions() {
            last_message = Instant::now();
        }
        drop(batch);
        let mut idle = limits
            .idle_exit
            .is_some_and(|idle| last_message.elapsed() >= idle);
        // Quiet is not enough: a slow broker can pause a backlog for seconds. Idle means
        // every owned partition is read to its end.
        if idle && !runtime.caught_up(&consumer) {
            idle = false;
            last_message = Instant::now();
        }
        let enough = limits.max_messages.is_some_and(|max| read >= max);
        // The memory bound: held raw bytes start the flush early.
        let pending: usize = runtime.tasks.values().map(Task::pending_bytes).sum();
        let full = pending >= settings.pipeline.max_pending_bytes;
        if stopping || idle || enough || full || last_flush.elapsed() >= flush_interval {
            runtime.flush(&consumer).await?;
            last_flush = Instant::now();
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            runtime.observe_state(&consumer);
            log_tally(&runtime.tally, "progress");
            last_report = Instant::now();
        }
        if stopping || idle || enough {
            break 'consume;
        }
    }
    log_tally(&runtime.tally, "stopped");
    Ok(runtime.tally)
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
