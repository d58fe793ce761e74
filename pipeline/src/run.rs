//! `salestalk run`: the streaming runtime. Reads the configured topics as a consumer group,
//! passes each batch through the operator graph, and commits offsets once a batch is done.
//!
//! At this stage the graph is validate → tally; windowed aggregates and the ClickHouse sink
//! plug in after the tally (see the streaming-core issue).

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use salestalk_operators::{RawMessage, Tally, validate_batch};
use tokio::signal::unix::{SignalKind, signal};

use crate::kafka;
use crate::settings::Settings;

/// When a run ends on its own (besides SIGTERM/SIGINT).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    /// Stop after this long without a message, counted once the group has assigned partitions.
    pub idle_exit: Option<Duration>,
    /// Stop after this many messages.
    pub max_messages: Option<u64>,
}

/// Consumes until a limit or a signal stops it, and returns what it counted.
pub async fn run(settings: &Settings, limits: RunLimits) -> anyhow::Result<Tally> {
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
    let mut tally = Tally::default();
    let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
    let mut last_message = Instant::now();
    let mut last_report = Instant::now();

    'consume: loop {
        let mut batch = Vec::with_capacity(settings.pipeline.batch_size);
        let deadline = tokio::time::Instant::now() + batch_timeout;
        while batch.len() < settings.pipeline.batch_size {
            tokio::select! {
                received = tokio::time::timeout_at(deadline, consumer.recv()) => match received {
                    Ok(Ok(message)) => batch.push(message),
                    Ok(Err(error)) => tracing::warn!(%error, "consumer error"),
                    Err(_) => break,
                },
                _ = terminate.recv() => { tracing::info!("SIGTERM: draining"); break 'consume; }
                _ = interrupt.recv() => { tracing::info!("SIGINT: draining"); break 'consume; }
            }
        }
        if batch.is_empty() {
            if limits
                .idle_exit
                .is_some_and(|idle| last_message.elapsed() >= idle)
            {
                tracing::info!("idle: stopping");
                break;
            }
            continue;
        }
        last_message = Instant::now();
        let raw: Vec<RawMessage<'_>> = batch
            .iter()
            .map(|m| RawMessage {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                payload: m.payload(),
            })
            .collect();
        accepted.clear();
        rejected.clear();
        validate_batch(
            &raw,
            settings.kafka.max_message_bytes,
            &mut accepted,
            &mut rejected,
        );
        tally.add(&accepted, &rejected);
        for message in &batch {
            consumer
                .store_offset_from_message(message)
                .context("storing an offset")?;
        }
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .context("committing offsets")?;
        if last_report.elapsed() >= Duration::from_secs(5) {
            tracing::info!(
                messages = tally.messages,
                valid = tally.valid_total(),
                rejected = tally.rejected_total(),
                "progress"
            );
            last_report = Instant::now();
        }
        if limits.max_messages.is_some_and(|max| tally.messages >= max) {
            break;
        }
    }
    tracing::info!(
        messages = tally.messages,
        valid = tally.valid_total(),
        rejected = tally.rejected_total(),
        "stopped"
    );
    Ok(tally)
}
