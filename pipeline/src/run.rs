//! `salestalk run`: the streaming runtime.
//!
//! One driver loop per instance: it reads batches from the consumer group, hands each
//! partition's messages to that partition's [`Task`], and every flush interval makes all
//! tasks' results durable in ClickHouse (side outputs, then one atomic insert of window rows
//! and checkpoints), then commits the offsets to Kafka. Polling, processing and flushing never
//! overlap, so a revoked partition's task is gone before any later flush could write it.
//! See `docs/adr/0004-exact-metrics-without-two-phase-commit.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use salestalk_operators::task::{Flush, Task, TaskSettings};
use salestalk_operators::{RawMessage, Tally};
use salestalk_sinks::clickhouse::Endpoint;
use tokio::signal::unix::{SignalKind, signal};

use crate::kafka::{self, Assignment, GroupMembership};
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

/// The ClickHouse endpoint the settings describe.
pub fn endpoint(settings: &Settings) -> Endpoint {
    Endpoint {
        url: settings.clickhouse.url.clone(),
        database: settings.clickhouse.database.clone(),
        user: settings.clickhouse.user.clone(),
        password: settings.clickhouse.password.clone(),
    }
}

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

/// Retries `attempt` with exponential backoff (100 ms doubling to 5 s) until it succeeds or
/// fails permanently.
async fn with_retries<T, F, Fut>(what: &str, attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, salestalk_sinks::clickhouse::ClickHouseError>>,
{
    with_retries_observed(what, attempt, || {}).await
}

/// [`with_retries`], calling `on_failure` after every failed attempt.
async fn with_retries_observed<T, F, Fut>(
    what: &str,
    mut attempt: F,
    on_failure: impl Fn(),
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, salestalk_sinks::clickhouse::ClickHouseError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        let result = attempt().await;
        if result.is_err() {
            on_failure();
        }
        match result {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error).with_context(|| what.to_string()),
        }
    }
}

/// Applies the migrations this server lacks (run at start-up and by `salestalk migrate`).
pub async fn migrate(settings: &Settings) -> anyhow::Result<usize> {
    let endpoint = endpoint(settings);
    let profile = with_retries("probing ClickHouse", || endpoint.probe()).await?;
    tracing::info!(version = %profile.version, modern = profile.is_modern(), "ClickHouse");
    with_retries("migrating", || endpoint.migrate(&profile)).await
}

struct Runtime<'a> {
    settings: &'a Settings,
    endpoint: Endpoint,
    tasks: HashMap<PartitionKey, Task>,
    tally: Tally,
    telemetry: Arc<Telemetry>,
}

impl Runtime<'_> {
    /// Restores tasks for newly assigned partitions and drops revoked ones.
    async fn apply_assignments(
        &mut self,
        consumer: &StreamConsumer<GroupMembership>,
    ) -> anyhow::Result<()> {
        for change in consumer.context().take_changes() {
            match change {
                Assignment::Revoked(partitions) => {
                    for key in partitions {
                        self.tasks.remove(&key);
                    }
                }
                Assignment::Assigned(partitions) => {
                    let mut resume = TopicPartitionList::new();
                    for (topic, partition) in partitions {
                        let settings = task_settings(self.settings);
                        let task = with_retries("restoring a task", || {
                            self.endpoint.restore_task(&topic, partition, settings)
                        })
                        .await?
                        .with_aggregates(self.settings.graph.aggregates.clone());
                        let next = task.checkpoint().next_offset;
                        consumer
                            .seek(
                                &topic,
                                partition,
                                Offset::Offset(next),
                                Duration::from_secs(10),
                            )
                            .with_context(|| format!("seeking {topic}/{partition} to {next}"))?;
                        tracing::info!(%topic, partition, offset = next, "task restored");
                        resume.add_partition(&topic, partition);
                        self.tasks.insert((topic, partition), task);
                    }
                    consumer
                        .resume(&resume)
                        .context("resuming restored partitions")?;
                }
            }
        }
        Ok(())
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

    /// Makes every task's pending results durable, then commits their offsets.
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
        let telemetry = Arc::clone(&self.telemetry);
        with_retries_observed(
            "writing to ClickHouse",
            || self.endpoint.write_flushes(&flushes, durable_at),
            || {
                telemetry.flush_failures.inc();
                telemetry.clickhouse_up.set(0);
            },
        )
        .await?;
        telemetry.clickhouse_up.set(1);
        telemetry
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut offsets = TopicPartitionList::new();
        for flush in &flushes {
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
        if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(%error, "committing offsets to Kafka");
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

/// Consumes until a limit or a signal stops it; returns what it made durable.
pub async fn run(settings: &Settings, limits: RunLimits) -> anyhow::Result<Tally> {
    migrate(settings).await?;
    let consumer = kafka::consumer(&settings.kafka).context("creating the Kafka consumer")?;
    let topics: Vec<&str> = settings.kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the topics")?;
    tracing::info!(brokers = %settings.kafka.brokers, ?topics, group = %settings.kafka.group_id, "consuming");

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let batch_timeout = Duration::from_millis(settings.pipeline.batch_timeout_ms);
    let flush_interval = Duration::from_millis(settings.pipeline.flush_interval_ms);
    let telemetry = Arc::new(Telemetry::default());
    if let Some(listen) = settings.metrics.listen {
        let bound = telemetry::serve(listen, Arc::clone(&telemetry))
            .await
            .with_context(|| format!("serving metrics on {listen}"))?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let mut runtime = Runtime {
        settings,
        endpoint: endpoint(settings),
        tasks: HashMap::new(),
        tally: Tally::default(),
        telemetry,
    };
    let mut read: u64 = 0;
    let mut last_message = Instant::now();
    let mut last_flush = Instant::now();
    let mut last_report = Instant::now();

    'consume: loop {
        runtime.apply_assignments(&consumer).await?;
        let mut batch = Vec::with_capacity(settings.pipeline.batch_size);
        let deadline = tokio::time::Instant::now() + batch_timeout;
        let mut stopping = false;
        while batch.len() < settings.pipeline.batch_size {
            tokio::select! {
                received = tokio::time::timeout_at(deadline, consumer.recv()) => match received {
                    Ok(Ok(message)) => batch.push(message),
                    Ok(Err(error)) => tracing::warn!(%error, "consumer error"),
                    Err(_) => break,
                },
                _ = terminate.recv() => { tracing::info!("SIGTERM: draining"); stopping = true; break; }
                _ = interrupt.recv() => { tracing::info!("SIGINT: draining"); stopping = true; break; }
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
        let idle = limits
            .idle_exit
            .is_some_and(|idle| last_message.elapsed() >= idle);
        let enough = limits.max_messages.is_some_and(|max| read >= max);
        if stopping || idle || enough || last_flush.elapsed() >= flush_interval {
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
