//! The producers: one that counts deliveries for bulk traffic, ones whose every record is
//! awaited ([`Awaited`]: the gateway, the dead-letter topic, delivery, redrive, replay), and
//! [`deliver`], which sends a batch through the latter and reports each record's outcome.

mod awaited;
mod queue_wakeup;

pub use awaited::{Awaited, Landed, Outcome, Refused, Reports};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, FutureRecord, ProducerContext};

use crate::KafkaSettings;

/// How every producer of ours picks a keyed record's partition: the Java client's murmur2 of
/// the key (random for a record without one). Dedup is per partition (ADR 0004), so every copy
/// of an event must land where the others did, whoever sent it: librdkafka's own default
/// (CRC32) would send a service's Java-produced event and its resend through the gateway to
/// different partitions. Producers of other teams are asked to do the same (README,
/// "Publishing"); copies that still cross partitions are counted once by the correction of
/// their day (ADR 0016).
pub const PARTITIONER: &str = "murmur2_random";

/// The client configuration every producer starts from: [`KafkaSettings::client_config`] and
/// the [`PARTITIONER`].
pub fn producer_config(settings: &KafkaSettings) -> rdkafka::ClientConfig {
    let mut config = settings.client_config();
    config.set("partitioner", PARTITIONER);
    config
}

/// Counts producer deliveries as the broker confirms or refuses them.
#[derive(Default)]
pub struct DeliveryCounter {
    /// Messages the broker acknowledged.
    pub delivered: AtomicU64,
    /// Messages that failed for good.
    pub failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err((error, _)) = result {
            tracing::warn!(%error, "delivery failed");
        }
    }
}

/// A producer for bulk traffic (the generator) whose deliveries are counted, not awaited.
pub fn counted(settings: &KafkaSettings) -> KafkaResult<BaseProducer<DeliveryCounter>> {
    producer_config(settings)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set(
            "message.max.bytes",
            (settings.max_message_bytes * 2).to_string(),
        )
        .set("enable.idempotence", "false")
        .create_with_context(DeliveryCounter::default())
}

/// A producer whose records are each awaited: a record reaches the broker or fails within
/// 30 s, and the caller's retry policy decides what happens next. Records may be twice the
/// largest message plus room for headers (a dead letter carries the message and its reason).
pub fn acknowledged(settings: &KafkaSettings) -> KafkaResult<Awaited> {
    producer_config(settings)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set(
            "message.max.bytes",
            (settings.max_message_bytes * 2 + 65_536).to_string(),
        )
        .create_with_context(Reports)
}

/// The ingest gateway's producer: acknowledged by every in-sync replica, idempotent when
/// asked (the broker drops a retried batch it already wrote, so a retry inside librdkafka
/// never duplicates an entry), and giving up on a record after `timeout_ms` so a publisher
/// hears `PublishFailed` while it can still retry.
pub fn publishing(
    settings: &KafkaSettings,
    idempotent: bool,
    timeout_ms: u64,
) -> KafkaResult<Awaited> {
    producer_config(settings)
        .set("enable.idempotence", idempotent.to_string())
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", timeout_ms.to_string())
        .set(
            "message.max.bytes",
            (settings.max_message_bytes * 2 + 65_536).to_string(),
        )
        .create_with_context(Reports)
}

/// The routing targets' producer: acknowledged by every in-sync replica, and giving up on a
/// record after `timeout_ms` (a missing topic too), so an unavailable target costs a flush
/// a bounded wait and the delivery's own retries decide what happens next.
pub fn delivering(settings: &KafkaSettings, timeout_ms: u64) -> KafkaResult<Awaited> {
    producer_config(settings)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("topic.metadata.propagation.max.ms", timeout_ms.to_string())
        .set(
            "message.max.bytes",
            (settings.max_message_bytes * 2 + 65_536).to_string(),
        )
        .create_with_context(Reports)
}

/// Enqueues every record at once (waiting out a full queue), then waits for each delivery;
/// returns each record's outcome, in order.
pub async fn deliver<'a>(
    producer: &Awaited,
    records: impl IntoIterator<Item = FutureRecord<'a, str, [u8]>>,
) -> Vec<Result<(), KafkaError>> {
    deliver_acknowledged(producer, records)
        .await
        .into_iter()
        .map(|outcome| outcome.map(|_| ()))
        .collect()
}

/// Where a record landed, and when that was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    /// The moment (Unix ms) it was seen acknowledged: no earlier than the broker's
    /// acknowledgement, and later by at most the wait for the records before it.
    pub at_ms: u64,
    /// Its partition.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// [`deliver`], saying where and when each record was acknowledged.
pub async fn deliver_acknowledged<'a>(
    producer: &Awaited,
    records: impl IntoIterator<Item = FutureRecord<'a, str, [u8]>>,
) -> Vec<Result<Acknowledged, KafkaError>> {
    let records = records.into_iter();
    // Sized for the records up front (a flush's worth, new each time; see docs/performance.md).
    let mut deliveries = Vec::with_capacity(records.size_hint().0);
    for mut record in records {
        let delivery = loop {
            match producer.send(record) {
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
                Ok(Ok(landed)) => Ok(Acknowledged {
                    at_ms: unix_ms(),
                    partition: landed.partition,
                    offset: landed.offset,
                }),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(KafkaError::Canceled),
            },
            Err(error) => Err(error),
        });
    }
    outcomes
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether the record itself is wrong (too large, malformed): sending it again, anywhere,
/// cannot help. Every other failure may pass (a topic created, a broker back, an ACL fixed).
pub fn is_bad_record(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// Whether the broker refused a record for good (retrying the same record cannot help).
pub fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_producer_partitions_as_the_java_client() {
        let settings = KafkaSettings {
            brokers: "127.0.0.1:9092".into(),
            topics: vec!["t".into()],
            group_id: "g".into(),
            instance_id: String::new(),
            topic_template: "salestalk.{domain}".into(),
            max_message_bytes: 1 << 20,
            prefetch_kbytes: 65_536,
            session_timeout_ms: 45_000,
            assignment_strategy: "cooperative-sticky".into(),
            security: Default::default(),
        };
        assert_eq!(
            producer_config(&settings).get("partitioner"),
            Some("murmur2_random")
        );
    }
}
