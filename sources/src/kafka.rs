//! The Kafka source: a member of the configured consumer group.
//!
//! Newly assigned partitions are paused by the group until their tasks are restored and
//! [`Source::start`] moves them to the checkpoint. Offsets committed to Kafka follow the
//! checkpoints for lag monitoring only; restarts read the checkpoints (ADR 0004).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use salestalk_kafka::KafkaSettings;
use salestalk_kafka::consumer::{Assignment, GroupMembership, group_member};
use salestalk_kafka::fence::FenceHold;
use salestalk_operators::PublishPath;
use salestalk_operators::flush::Checkpoint;

use super::{Batch, Changes, Source, SourcePartition};
use crate::log_throttle::LogThrottle;
use crate::{SourceError, SourceObserver};

/// The longest one partition's end is waited for in [`Source::read_to_end`].
const ASK_AT_MOST: Duration = Duration::from_secs(1);

/// A consumer-group member reading the configured topics.
pub struct KafkaSource {
    consumer: StreamConsumer<GroupMembership>,
    observer: Arc<dyn SourceObserver>,
    /// An unreachable broker is reported once per partition per poll: one line per 10 s.
    errors: LogThrottle,
}

impl KafkaSource {
    /// Joins the group and subscribes to `settings.topics`.
    pub fn subscribe(
        settings: &KafkaSettings,
        observer: Arc<dyn SourceObserver>,
    ) -> Result<Self, SourceError> {
        let consumer =
            group_member(settings).map_err(SourceError::kafka("creating the Kafka consumer"))?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(SourceError::kafka("subscribing to the topics"))?;
        tracing::info!(brokers = %settings.brokers, ?topics, group = %settings.group_id, "consuming");
        Ok(Self {
            consumer,
            observer,
            errors: LogThrottle::new(Duration::from_secs(10)),
        })
    }

    fn list(partitions: &[SourcePartition]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(partition.topic(), partition.number());
        }
        list
    }

    /// Whether `position` is at `partition`'s end, by the broker's answer within `timeout`
    /// (no answer: no).
    fn at_end(&self, partition: &SourcePartition, position: i64, timeout: Duration) -> bool {
        self.consumer
            .fetch_watermarks(partition.topic(), partition.number(), timeout)
            .is_ok_and(|(_, high)| position >= high)
    }
}

impl Source for KafkaSource {
    fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        for change in self.consumer.context().take_changes() {
            match change {
                Assignment::Revoked(partitions) => {
                    for (topic, number) in partitions {
                        let key = SourcePartition::kafka(&topic, number);
                        changes.assigned.retain(|a| *a != key);
                        changes.revoked.push(key);
                    }
                }
                Assignment::Assigned(partitions) => {
                    for (topic, number) in partitions {
                        let key = SourcePartition::kafka(&topic, number);
                        if !changes.assigned.contains(&key) {
                            changes.assigned.push(key);
                        }
                    }
                }
            }
        }
        changes
    }

    fn has_changes_pending(&self) -> bool {
        self.consumer.context().has_changes_pending()
    }

    fn has_partitions(&self) -> bool {
        self.consumer.context().has_partitions()
    }

    /// librdkafka refuses a seek (`Erroneous state`) until the partition's fetcher has started,
    /// which right after an assignment waits for the broker's answer about committed offsets;
    /// a slow broker makes that window long (over a minute was seen on a loaded test machine),
    /// so the seek is retried while the partition is ours, with a warning each minute: a
    /// broker that never answers is what `/health/live`'s stall limit is for, not an exit.
    async fn start(
        &mut self,
        partition: &SourcePartition,
        checkpoint: &Checkpoint,
    ) -> Result<bool, SourceError> {
        let (topic, number) = (partition.topic(), partition.number());
        let position = checkpoint.next_offset;
        let mut warn_at = Instant::now() + Duration::from_secs(60);
        loop {
            let error = match self.consumer.seek(
                topic,
                number,
                Offset::Offset(position),
                Duration::from_secs(10),
            ) {
                Ok(()) => break,
                Err(error) => error,
            };
            let owned = self
                .consumer
                .assignment()
                .is_ok_and(|list| list.find_partition(topic, number).is_some());
            if !owned {
                // Revoked meanwhile: the revocation waits in the next batch of changes.
                return Ok(false);
            }
            // rdkafka reports seek failures as text only.
            let not_ready =
                matches!(&error, KafkaError::Seek(text) if text.contains("Erroneous state"));
            if !not_ready {
                return Err(SourceError::kafka(format!(
                    "seeking {topic}/{number} to {position}"
                ))(error));
            }
            if Instant::now() > warn_at {
                tracing::warn!(
                    topic,
                    partition = number,
                    position,
                    "the broker has not let this partition be read for a minute; still trying"
                );
                warn_at = Instant::now() + Duration::from_secs(60);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.consumer
            .resume(&Self::list(std::slice::from_ref(partition)))
            .map_err(SourceError::kafka(format!("resuming {topic}/{number}")))?;
        Ok(true)
    }

    /// The group member's revocation callback waits for it (`salestalk_kafka::fence`).
    type Hold = FenceHold;

    fn hold_partitions(&self) -> FenceHold {
        self.consumer.context().fence().hold()
    }

    fn pause(&mut self, partitions: &[SourcePartition]) -> Result<(), SourceError> {
        self.consumer
            .pause(&Self::list(partitions))
            .map_err(SourceError::kafka("pausing partitions"))
    }

    async fn read(&mut self, batch: &mut Batch, max: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    message.timestamp().to_millis(),
                    message.payload(),
                    gateway_header(&message),
                    None,
                ),
                Ok(Err(error)) => {
                    self.observer.read_failed();
                    if let Some(held_back) = self.errors.admit(Instant::now()) {
                        tracing::warn!(%error, held_back, "consumer error (held_back: similar errors since the last line)");
                    }
                }
                Err(_) => break,
            }
            // An assignment change must be acted on before more of the stream is read.
            if self.has_changes_pending() {
                break;
            }
        }
    }

    fn commit(&mut self, positions: &[(SourcePartition, i64)]) {
        let mut offsets = TopicPartitionList::new();
        for (partition, position) in positions {
            let (topic, partition) = (partition.topic(), partition.number());
            if let Err(error) =
                offsets.add_partition_offset(topic, partition, Offset::Offset(*position))
            {
                tracing::warn!(%error, topic, partition, "building the offset list");
            }
        }
        if offsets.count() > 0
            && let Err(error) = self.consumer.commit(&offsets, CommitMode::Async)
        {
            tracing::warn!(%error, "committing offsets to Kafka");
        }
    }

    /// From librdkafka's periodic statistics: no round trip to the broker.
    fn end(&self, partition: &SourcePartition) -> Option<i64> {
        self.consumer
            .context()
            .high_watermark(partition.topic(), partition.number())
    }

    /// One partition at a time, each question given at most [`ASK_AT_MOST`] of what is left:
    /// a partition whose leader does not answer costs that, and the others still get asked.
    fn read_to_end(&self, positions: &[(SourcePartition, i64)], within: Duration) -> Vec<bool> {
        let deadline = Instant::now() + within;
        positions
            .iter()
            .map(|(partition, position)| {
                let left = deadline.saturating_duration_since(Instant::now());
                !left.is_zero() && self.at_end(partition, *position, left.min(ASK_AT_MOST))
            })
            .collect()
    }

    fn caught_up(&self, positions: &[(SourcePartition, i64)]) -> bool {
        positions
            .iter()
            .all(|(partition, position)| self.at_end(partition, *position, Duration::from_secs(5)))
    }
}

/// The path a message's `salestalk-published-by` header names (a header lookup only when the
/// message has headers at all, which direct producers' messages usually do not).
fn gateway_header(message: &impl Message) -> PublishPath {
    let value = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == PublishPath::HEADER)
            .and_then(|header| header.value)
    });
    PublishPath::from_header(value)
}
