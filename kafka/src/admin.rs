//! Metadata lookups: which topics exist (`salestalk check`, the dead-letter topic at start),
//! a topic's own configuration (the dead-letter topic's retention) and how far each
//! partition's log reaches (lag on the SRE page, "caught up").

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};

use crate::KafkaSettings;

/// A client for metadata only (it joins no group).
fn metadata_client(settings: &KafkaSettings) -> KafkaResult<BaseConsumer> {
    settings.client_config().create()
}

/// Which of `topics` the configured brokers do not know.
pub fn missing_topics(settings: &KafkaSettings, topics: &[String]) -> KafkaResult<Vec<String>> {
    let client = metadata_client(settings)?;
    let metadata = client.fetch_metadata(None, Duration::from_secs(10))?;
    let known: Vec<&str> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name())
        .collect();
    Ok(topics
        .iter()
        .filter(|t| !known.contains(&t.as_str()))
        .cloned()
        .collect())
}

/// The value of configuration entry `name` of `topic` as the broker reports it (`None` when
/// the broker reports no such entry).
pub async fn topic_config(
    settings: &KafkaSettings,
    topic: &str,
    name: &str,
) -> KafkaResult<Option<String>> {
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create()?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await?;
    for resource in described {
        let resource = resource.map_err(KafkaError::AdminOp)?;
        if let Some(entry) = resource.get(name) {
            return Ok(entry.value.clone());
        }
    }
    Ok(None)
}

/// The high watermark (next offset to be written) of every partition of `topics`. Blocking:
/// call it off the async runtime.
pub fn high_watermarks(
    settings: &KafkaSettings,
    topics: &[String],
) -> KafkaResult<BTreeMap<(String, i32), i64>> {
    let client = metadata_client(settings)?;
    let timeout = Duration::from_secs(5);
    let mut out = BTreeMap::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                let (_, high) = client.fetch_watermarks(topic, partition.id(), timeout)?;
                out.insert((topic.clone(), partition.id()), high);
            }
        }
    }
    Ok(out)
}
