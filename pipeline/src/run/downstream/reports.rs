//! Failures reported by downstream consumers. A consumer that cannot process an event it read
//! from its target's topic produces the event to the dead-letter topic with the header
//! `salestalk.consumer` naming its group (and, as delivery set them, `salestalk.event_id`,
//! `salestalk.event_type`, `salestalk.tenant`; optionally `salestalk.error`). This reader, in
//! a consumer group of its own on the dead-letter topic, stores each report
//! (`consumer_failures`) before committing past it; a report read twice is one row (keyed by
//! its partition and offset). The pipeline's own dead letters carry no such header and are
//! skipped.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use salestalk_operators::time;
use salestalk_sinks::retry::RetryPolicy;
use salestalk_store::Endpoint;
use salestalk_store::tables::consumer_failures::FailureReport;

use crate::settings::Settings;

/// The header naming the reporting consumer group.
pub const CONSUMER_HEADER: &str = "salestalk.consumer";

/// Longest value kept from a report's header (the error text: 4 KiB; the rest: 256 bytes).
const MAX_ERROR: usize = 4096;
const MAX_FIELD: usize = 256;

/// Most reports stored in one insert.
const BATCH: usize = 1_000;

/// Most dead-letter records the reader holds prefetched, in KiB (`queued.max.messages.kbytes`).
const REPORTS_PREFETCH_KBYTES: u32 = 4_096;

/// The report a record of the dead-letter topic carries, if it is one: `None` for the
/// pipeline's own dead letters, and for a report whose consumer name is not a group name.
pub fn report_of(message: &BorrowedMessage<'_>) -> Option<FailureReport> {
    let headers = message.headers()?;
    let header = |key: &str, max: usize| -> Option<String> {
        let value = headers.iter().find(|h| h.key == key)?.value?;
        let text = String::from_utf8_lossy(&value[..value.len().min(max)]);
        Some(text.into_owned())
    };
    let group = header(CONSUMER_HEADER, MAX_FIELD)?;
    if !is_group_name(&group) {
        tracing::warn!(
            partition = message.partition(),
            offset = message.offset(),
            "a failure report whose consumer is not a group name: skipped"
        );
        return None;
    }
    let payload: Option<serde_json::Value> = message
        .payload()
        .and_then(|bytes| serde_json::from_slice(bytes).ok());
    let field = |key: &str, json: &str| -> String {
        header(key, MAX_FIELD)
            .or_else(|| {
                let value = payload.as_ref()?.get(json)?.as_str()?;
                Some(value.chars().take(MAX_FIELD).collect())
            })
            .unwrap_or_default()
    };
    let at_ms = message.timestamp().to_millis().unwrap_or(0).max(0);
    Some(FailureReport {
        minute: time::datetime(time::minute_start(at_ms)),
        consumer_group: group,
        tenant_id: field("salestalk.tenant", "tenantId"),
        event_id: field("salestalk.event_id", "eventId"),
        event_type: field("salestalk.event_type", "eventType"),
        error: header("salestalk.error", MAX_ERROR).unwrap_or_default(),
        partition: message.partition(),
        offset: message.offset(),
    })
}

/// Whether `name` can be a Kafka consumer group (and so a consumer in the error rate).
pub fn is_group_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Reads the dead-letter topic for reports while the run lasts (not without `dlq.topic`).
pub fn schedule(settings: &Settings) {
    let Some(topic) = settings.dlq.topic().map(str::to_string) else {
        tracing::info!("dlq.topic is empty: consumers' failure reports are not read");
        return;
    };
    let group = format!("{}.consumer-reports", settings.kafka.group_id);
    let consumer: StreamConsumer = match settings
        .kafka
        .client_config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // The dead-letter topic also holds every dead letter of the pipeline's own, which this
        // reader skips: with librdkafka's defaults a backlog of them would be prefetched into
        // a queue of up to 64 MiB. Reports are small and read as they come, so a few MiB keeps
        // the pace and bounds the memory.
        .set(
            "queued.max.messages.kbytes",
            REPORTS_PREFETCH_KBYTES.to_string(),
        )
        .create()
    {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::warn!(%error, "cannot read consumers' failure reports");
            return;
        }
    };
    if let Err(error) = consumer.subscribe(&[&topic]) {
        tracing::warn!(%error, "cannot read consumers' failure reports");
        return;
    }
    let endpoint = settings.clickhouse.clone();
    tokio::spawn(async move { read(consumer, endpoint).await });
}

/// The pauses after the broker answers an error, and between attempts to store reports:
/// while the broker is down the client returns its error at once, and asking again without a
/// pause would spin (and log) ten times a second. Neither gives up, so `max_attempts` is unused.
const PAUSES: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    initial_backoff: Duration::from_millis(500),
    max_backoff: Duration::from_secs(30),
};

async fn read(consumer: StreamConsumer, endpoint: Endpoint) {
    let mut read_errors = 0;
    loop {
        let mut reports = Vec::new();
        let mut read_any = false;
        let mut failed = false;
        while reports.len() < BATCH {
            match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
                Ok(Ok(message)) => {
                    read_any = true;
                    reports.extend(report_of(&message));
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, errors_in_a_row = read_errors + 1, "reading failure reports");
                    failed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // Only a message read shows the broker is back: between its errors the client may
        // also just time out.
        if read_any {
            read_errors = 0;
        }
        if failed {
            read_errors += 1;
            tokio::time::sleep(PAUSES.jittered_backoff(read_errors)).await;
        }
        if !read_any {
            continue;
        }
        // Stored before the commit: a crash in between reads them again, and the same
        // (partition, offset) replaces its row.
        let mut retry = 0;
        while let Err(error) = endpoint.record_failure_reports(&reports).await {
            tracing::warn!(%error, "could not store failure reports; retrying");
            retry += 1;
            tokio::time::sleep(PAUSES.jittered_backoff(retry)).await;
        }
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::warn!(%error, "committing past failure reports");
        }
    }
}
