//! Metadata lookups: which topics exist (`salestalk check`, the dead-letter topic at start),
//! a topic's own configuration (the dead-letter topic's retention) and how far each
//! partition's log reaches (lag on the SRE page, "caught up").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

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

/// Every partition's high watermark for each of `topics`, complete or an error: a topic the
/// broker reports with an error or without partitions (a leader moving, a broker busy) and a
/// watermark it cannot give (-1) fail the whole answer rather than leave a partition out. A
/// caller judging stalls must not read "no partition" as "nothing waits": that would resolve
/// a stall alert in the middle of a stall. Blocking: call it off the async runtime.
pub fn high_watermarks(
    settings: &KafkaSettings,
    topics: &[String],
) -> KafkaResult<BTreeMap<(String, i32), i64>> {
    let client = metadata_client(settings)?;
    let timeout = Duration::from_secs(5);
    let mut out = BTreeMap::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        // A topic that does not exist holds nothing: it is left out, not an error.
        let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
            tracing::debug!(topic, "high watermarks: topic not in the metadata");
            continue;
        };
        match found.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                tracing::debug!(topic, "high watermarks: unknown topic");
                continue;
            }
            Some(error) => return Err(KafkaError::MetadataFetch(error)),
        }
        if found.partitions().is_empty() {
            return Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::LeaderNotAvailable,
            ));
        }
        for partition in found.partitions() {
            let (_, high) = client.fetch_watermarks(topic, partition.id(), timeout)?;
            if high < 0 {
                return Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::OffsetNotAvailable,
                ));
            }
            out.insert((topic.clone(), partition.id()), high);
        }
    }
    Ok(out)
}

/// Where a consumer group stands on one partition of a topic it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// The partition.
    pub partition: i32,
    /// Messages written and not yet committed by the group (all of them when it never
    /// committed).
    pub messages: i64,
    /// Broker time (Unix ms) of the oldest message the group has not committed, when there is
    /// one and it could be read.
    pub oldest_unread_ms: Option<i64>,
}

/// A consumer group's committed offsets, asked again and again through one client (an
/// OffsetFetch each time: the group is not joined, nothing is committed).
pub struct GroupOffsets {
    group: String,
    member: BaseConsumer,
}

impl GroupOffsets {
    /// A client asking for `group`'s offsets.
    pub fn new(settings: &KafkaSettings, group: &str) -> KafkaResult<Self> {
        let member = settings
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            group: group.to_string(),
            member,
        })
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group's committed offset on each of `partitions` of `topic` that has one.
    /// Blocking: call it off the async runtime.
    pub fn committed(&self, topic: &str, partitions: &[i32]) -> KafkaResult<Vec<(i32, i64)>> {
        use rdkafka::{Offset, TopicPartitionList};
        let mut wanted = TopicPartitionList::new();
        for &partition in partitions {
            wanted.add_partition(topic, partition);
        }
        let committed = self
            .member
            .committed_offsets(wanted, Duration::from_secs(5))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => Some((element.partition(), offset)),
                _ => None,
            })
            .collect())
    }
}

/// Samples one consumer group's lag on one topic, again and again through the same two
/// clients: the group's [`GroupOffsets`] (shared with its other watchers) asks for its
/// committed offsets (an OffsetFetch: the group is not joined), the partitions and their
/// watermarks; the other reads the oldest unread message of each partition and commits
/// nothing. Making them once matters: three fresh clients per group every sample, the last
/// prefetching with librdkafka's defaults (1 MiB a partition, queueing up to 100,000 messages
/// before the pause lands) from a group's committed offset, raised the p99 event-to-durable
/// latency of the pipeline sharing the broker from about 2.3 s to 5-7 s (docs/performance.md,
/// issue 31's tenth part).
pub struct LagProbe {
    topic: String,
    offsets: Arc<GroupOffsets>,
    reader: BaseConsumer,
}

impl LagProbe {
    /// A probe of `offsets`' group on `topic`, asking through `offsets`' client, which the
    /// group's other watchers may share.
    pub fn new(
        settings: &KafkaSettings,
        offsets: Arc<GroupOffsets>,
        topic: &str,
    ) -> KafkaResult<Self> {
        let reader = settings
            .client_config()
            .set("group.id", "salestalk-lag-probe")
            .set("enable.auto.commit", "false")
            // One message a partition is wanted: fetch it alone rather than fill a queue. A
            // first message larger than this still comes whole (the protocol returns at
            // least one), so the limit costs nothing but the prefetch.
            .set("max.partition.fetch.bytes", "65536")
            .set("queued.min.messages", "1")
            .set("queued.max.messages.kbytes", "1024")
            .create()?;
        Ok(Self {
            topic: topic.to_string(),
            offsets,
            reader,
        })
    }

    /// The group.
    pub fn group(&self) -> &str {
        self.offsets.group()
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The group's lag on every partition of the topic now. Blocking: call it off the async
    /// runtime.
    pub fn sample(&self) -> KafkaResult<Vec<GroupLag>> {
        use rdkafka::{Message, Offset, TopicPartitionList};
        let timeout = Duration::from_secs(5);
        let topic = self.topic.as_str();
        let client = &self.offsets.member;
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let committed = self.offsets.committed(topic, &partitions)?;
        let mut lags = Vec::new();
        // Where each partition's read starts: a message before it (one the reused reader
        // fetched for an earlier sample) is not this sample's oldest unread.
        let mut positions = Vec::new();
        let mut unread = TopicPartitionList::new();
        for &partition in &partitions {
            let (low, high) = client.fetch_watermarks(topic, partition, timeout)?;
            let position = committed
                .iter()
                .find(|(p, _)| *p == partition)
                .map_or(low, |&(_, offset)| offset.clamp(low, high));
            if position < high {
                unread.add_partition_offset(topic, partition, Offset::Offset(position))?;
            }
            positions.push(position);
            lags.push(GroupLag {
                partition,
                messages: high - position,
                oldest_unread_ms: None,
            });
        }
        if unread.count() == 0 {
            return Ok(lags);
        }
        self.reader.assign(&unread)?;
        let deadline = std::time::Instant::now() + timeout;
        let mut missing = unread.count();
        while missing > 0 && std::time::Instant::now() < deadline {
            let Some(Ok(message)) = self.reader.poll(Duration::from_millis(200)) else {
                continue;
            };
            let Some((lag, _)) = lags.iter_mut().zip(&positions).find(|(l, position)| {
                l.partition == message.partition()
                    && l.oldest_unread_ms.is_none()
                    && message.offset() >= **position
            }) else {
                continue;
            };
            lag.oldest_unread_ms = message.timestamp().to_millis();
            missing -= 1;
        }
        // Nothing stays assigned between samples: the reader fetches nothing while it waits.
        self.reader.unassign()?;
        Ok(lags)
    }
}
