//! The dead-letter topic: every dead letter also goes to Kafka, so tools outside ClickHouse
//! can watch and replay it, and a dead letter the `dead_letters` table refuses is still kept.
//!
//! The record value is the raw message; the headers carry what the `dead_letters` table
//! holds besides it; the key is `<topic>/<partition>/<offset>`, unique per source message,
//! so a compacted DLQ topic keeps one record per message even though a replay after a crash
//! may produce one again (the topic is at-least-once; the table is exact).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use salestalk_sinks::clickhouse::writer::SourcedLetter;
use salestalk_sinks::retry::{RetryPolicy, Transient};

use crate::settings::KafkaSettings;

/// Longest error text put in a header.
const MAX_ERROR_HEADER: usize = 4096;

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
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterTopic {
    /// A producer for `topic` on the configured brokers.
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<Self, KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("linger.ms", "5")
            // A record must reach the broker or fail within a flush's patience; the runtime's
            // retry policy decides what happens next.
            .set("message.timeout.ms", "30000")
            .set(
                "message.max.bytes",
                (settings.max_message_bytes * 2 + 65_536).to_string(),
            )
            .create()?;
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
        let keys: Vec<String> = letters
            .iter()
            .map(|l| format!("{}/{}/{}", l.topic, l.partition, l.letter.offset))
            .collect();
        let records = letters.iter().zip(&keys).map(|(sourced, key)| {
            FutureRecord::to(&self.topic)
                .key(key.as_str())
                .payload(&sourced.letter.raw[..])
                .headers(headers(sourced))
        });
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
        let permanent = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::InvalidMessage
            )
        );
        if permanent {
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

/// Enqueues every record at once (waiting out a full queue), then waits for each delivery;
/// returns each record's outcome, in order.
pub async fn deliver<'a>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, str, [u8]>>,
) -> Vec<Result<(), KafkaError>> {
    let mut deliveries = Vec::new();
    for mut record in records {
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((error, _)) => break Err(error),
            }
        };
        deliveries.push(delivery);
    }
    let mut outcomes = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        outcomes.push(match delivery {
            Ok(future) => match future.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(error),
                Err(_) => Err(KafkaError::Canceled),
            },
            Err(error) => Err(error),
        });
    }
    outcomes
}

/// The header names: stable, like the table's columns.
pub mod header {
    /// Source topic.
    pub const TOPIC: &str = "salestalk.source.topic";
    /// Source partition.
    pub const PARTITION: &str = "salestalk.source.partition";
    /// Source offset.
    pub const OFFSET: &str = "salestalk.source.offset";
    /// Reason (the taxonomy's name).
    pub const REASON: &str = "salestalk.reason";
    /// Error text (at most 4 KiB).
    pub const ERROR: &str = "salestalk.error";
    /// Tenant, when readable.
    pub const TENANT: &str = "salestalk.tenant";
    /// Event type, when readable.
    pub const EVENT_TYPE: &str = "salestalk.event_type";
    /// Event id, when readable.
    pub const EVENT_ID: &str = "salestalk.event_id";
    /// Attempts made.
    pub const ATTEMPTS: &str = "salestalk.attempts";
}

fn headers(sourced: &SourcedLetter<'_>) -> OwnedHeaders {
    let letter = sourced.letter;
    let mut end = letter.error.len().min(MAX_ERROR_HEADER);
    while !letter.error.is_char_boundary(end) {
        end -= 1;
    }
    let fields: [(&str, String); 9] = [
        (header::TOPIC, sourced.topic.to_string()),
        (header::PARTITION, sourced.partition.to_string()),
        (header::OFFSET, letter.offset.to_string()),
        (header::REASON, letter.reason.as_str().to_string()),
        (header::ERROR, letter.error[..end].to_string()),
        (header::TENANT, letter.tenant_id.clone()),
        (header::EVENT_TYPE, letter.event_type.clone()),
        (header::EVENT_ID, letter.event_id.clone()),
        (header::ATTEMPTS, letter.attempts.to_string()),
    ];
    fields.iter().fold(
        OwnedHeaders::new_with_capacity(9),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        },
    )
}
