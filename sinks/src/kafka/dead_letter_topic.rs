//! The dead-letter topic: every dead letter also goes to Kafka, so tools outside ClickHouse
//! can watch and replay it, and a dead letter the `dead_letters` table refuses is still kept.
//!
//! The record value is the raw message; the headers carry the `dead_letters` row's columns
//! ([`DeadLetterRow::headers`]); the key is `<topic>/<partition>/<offset>`, unique per source message,
//! so a compacted DLQ topic keeps one record per message even though a replay after a crash
//! may produce one again (the topic is at-least-once; the table is exact).

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use salestalk_kafka::KafkaSettings;
use salestalk_kafka::producer::{self, deliver};
use salestalk_store::tables::dead_letters::DeadLetterRow;
pub use salestalk_store::tables::dead_letters::header;

use crate::retry::{RetryPolicy, Transient};
use crate::sink::{FlushBatch, Sink, SinkError, SinkFuture, SinkKind, SourcedLetter};

/// `[dlq]`: the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct DlqSettings {
    /// Topic every dead letter is produced to; empty for the ClickHouse table only.
    topic: String,
    /// How long the topic keeps a record (its `retention.ms`), in milliseconds.
    pub retention_ms: i64,
}

/// Shortest and longest `dlq.retention_ms`: an hour, ten years.
const RETENTION_MS: std::ops::RangeInclusive<i64> = 3_600_000..=315_360_000_000;

impl DlqSettings {
    /// The topic, unless none is configured.
    pub fn topic(&self) -> Option<&str> {
        Some(self.topic.trim()).filter(|t| !t.is_empty())
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(topic) = self.topic().filter(|t| !salestalk_kafka::is_topic_name(t)) {
            problems.push(format!("dlq.topic: '{topic}' is not a valid topic name"));
        }
        if !RETENTION_MS.contains(&self.retention_ms) {
            problems.push(format!(
                "dlq.retention_ms: {} is outside {}..={}",
                self.retention_ms,
                RETENTION_MS.start(),
                RETENTION_MS.end()
            ));
        }
        problems
    }
}

/// Failures producing to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterTopicError {
    /// The broker did not take the records in time: try again later.
    #[error("producing to dead-letter topic {topic}: {source}")]
    Unavailable {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The broker refused a record for good.
    #[error("dead-letter topic {topic} refused a record: {source}")]
    Refused {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
}

impl Transient for DeadLetterTopicError {
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A producer for the dead-letter topic.
pub struct DeadLetterTopic {
    producer: producer::Awaited,
    topic: String,
}

impl DeadLetterTopic {
    /// A producer for `topic` on the configured brokers.
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<Self, KafkaError> {
        let producer = producer::acknowledged(settings)?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
        })
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces `letters` and waits until the broker has them all, retrying per `policy`.
    pub async fn publish(
        &self,
        letters: &[SourcedLetter<'_>],
        policy: &RetryPolicy,
        on_failure: impl FnMut(&DeadLetterTopicError),
    ) -> Result<(), DeadLetterTopicError> {
        if letters.is_empty() {
            return Ok(());
        }
        policy.run(|| self.produce_all(letters), on_failure).await
    }

    async fn produce_all(&self, letters: &[SourcedLetter<'_>]) -> Result<(), DeadLetterTopicError> {
        let keys: Vec<String> = letters.iter().map(|l| l.address.to_string()).collect();
        // Collected first: a lazy iterator's closure held across the await below would keep
        // the future from being `Send` (rustc cannot prove it for every lifetime).
        let records: Vec<FutureRecord<'_, str, [u8]>> = letters
            .iter()
            .zip(&keys)
            .map(|(sourced, key)| {
                FutureRecord::to(&self.topic)
                    .key(key.as_str())
                    .payload(&sourced.letter.raw[..])
                    .headers(headers(sourced))
            })
            .collect();
        // A transient failure of any record retries them all (the topic is at-least-once);
        // only when every failure is permanent is the batch given up on.
        let mut worst: Option<DeadLetterTopicError> = None;
        for outcome in deliver(&self.producer, records).await {
            if let Err(error) = outcome {
                let judged = self.judge(error);
                if worst.as_ref().is_none_or(|w| !w.is_retryable()) {
                    worst = Some(judged);
                }
            }
        }
        worst.map_or(Ok(()), Err)
    }

    fn judge(&self, error: KafkaError) -> DeadLetterTopicError {
        let topic = self.topic.clone();
        if producer::is_permanent(&error) {
            DeadLetterTopicError::Refused {
                topic,
                source: error,
            }
        } else {
            DeadLetterTopicError::Unavailable {
                topic,
                source: error,
            }
        }
    }
}

/// What health and telemetry call the dead-letter topic.
pub use crate::sink::services::DLQ_TOPIC as SERVICE;

impl Sink for DeadLetterTopic {
    fn kind(&self) -> SinkKind {
        SinkKind::DeadLetterTopic
    }

    fn write<'a>(&'a self, batch: &'a mut FlushBatch<'_>) -> SinkFuture<'a> {
        Box::pin(async move {
            let observer = batch.observer;
            let letters = batch.dead_letters();
            let tenants: Vec<String> = letters
                .iter()
                .map(|sourced| sourced.letter.tenant_id.clone())
                .collect();
            let mut failed_attempts = 0;
            let published = self
                .publish(&letters, &batch.policy, |_| {
                    failed_attempts += 1;
                    observer.write_failed(SERVICE);
                })
                .await;
            drop(letters);
            let consumer = self.consumer();
            batch.outcomes.attempts_failed(consumer, failed_attempts);
            match published {
                Ok(()) => {
                    for tenant in &tenants {
                        batch.outcomes.attempted(consumer, tenant);
                    }
                    batch.letters_kept_by(self.name());
                    Ok(())
                }
                Err(error) if error.is_retryable() => Err(SinkError::Down {
                    service: SERVICE,
                    message: error.to_string(),
                }),
                // The dead-letter table, after this sink, still takes them.
                Err(error) => {
                    observer.rows_refused(SERVICE, 1);
                    for tenant in &tenants {
                        batch.outcomes.attempted(consumer, tenant);
                        batch.outcomes.failed(consumer, tenant);
                    }
                    tracing::error!(%error, "the dead-letter topic refused records");
                    Ok(())
                }
            }
        })
    }
}

fn headers(sourced: &SourcedLetter<'_>) -> OwnedHeaders {
    // The row the table stores: the headers carry its columns, so they cannot drift apart.
    let row = DeadLetterRow::new(&sourced.address, sourced.letter, 0);
    let fields = row.headers();
    fields.iter().fold(
        OwnedHeaders::new_with_capacity(fields.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        },
    )
}
