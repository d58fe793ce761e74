//! Kafka clients configured the one way the pipeline uses them.
//!
//! Fetch sizes are raised well above librdkafka's defaults: measured against tansu, that
//! takes consumption from ~27k to ~100k messages/s (see ENVIRONMENT notes in the README).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};

use crate::settings::KafkaSettings;

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

/// A producer whose deliveries are counted.
pub fn producer(settings: &KafkaSettings) -> KafkaResult<BaseProducer<DeliveryCounter>> {
    ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
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

/// Logs partition assignments and remembers whether this member owns any partition.
#[derive(Default)]
pub struct GroupMembership {
    assigned: AtomicBool,
}

impl GroupMembership {
    /// Whether the group has given this member at least one partition.
    pub fn has_partitions(&self) -> bool {
        self.assigned.load(Ordering::Relaxed)
    }
}

impl ClientContext for GroupMembership {}

impl ConsumerContext for GroupMembership {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.assigned
                    .store(partitions.count() > 0, Ordering::Relaxed);
                tracing::info!(partitions = partitions.count(), "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                self.assigned.store(false, Ordering::Relaxed);
                tracing::info!(partitions = partitions.count(), "partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

/// A consumer in the configured group that never commits on its own.
pub fn consumer(settings: &KafkaSettings) -> KafkaResult<StreamConsumer<GroupMembership>> {
    ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", "8388608")
        .set("fetch.max.bytes", "52428800")
        .set("session.timeout.ms", "10000")
        .create_with_context(GroupMembership::default())
}

/// The topic an event type is produced to.
pub fn topic_for(settings: &KafkaSettings, domain: &str) -> String {
    settings.topic_template.replace("{domain}", domain)
}

/// The configured topics the brokers do not know.
pub fn missing_topics(settings: &KafkaSettings) -> KafkaResult<Vec<String>> {
    use rdkafka::consumer::Consumer;
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()?;
    let metadata = client.fetch_metadata(None, std::time::Duration::from_secs(10))?;
    let known: Vec<&str> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name())
        .collect();
    Ok(settings
        .topics
        .iter()
        .filter(|t| !known.contains(&t.as_str()))
        .cloned()
        .collect())
}
