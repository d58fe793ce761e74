//! Metadata lookups: which topics exist (`salestalk check`, the dead-letter topic at start)
//! and how far each partition's log reaches (lag on the SRE page, "caught up").

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;

use crate::KafkaSettings;

/// A client for metadata only (it joins no group).
fn metadata_client(settings: &KafkaSettings) -> KafkaResult<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()
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
