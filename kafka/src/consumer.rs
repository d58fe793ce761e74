//! The consumer group the Kafka source reads with, and how it tells the runtime about
//! partitions it gains and loses.
//!
//! Fetch sizes are raised well above librdkafka's defaults: measured against tansu, that
//! takes consumption from ~27k to ~100k messages/s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::KafkaSettings;
use crate::fence::RevocationFence;

/// A change of the partitions this member owns, as the group announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// These partitions are now ours (paused until their tasks are restored).
    Assigned(Vec<(String, i32)>),
    /// These partitions are no longer ours.
    Revoked(Vec<(String, i32)>),
}

/// Records assignment changes for the runtime, which acts on them between polls.
///
/// Newly assigned partitions are paused at once, so nothing is read from them before their
/// task has been restored and the partition moved to the task's checkpoint. Revoked
/// partitions are let go only once no flush is in flight ([`RevocationFence`]).
#[derive(Default)]
pub struct GroupMembership {
    changes: Mutex<Vec<Assignment>>,
    owned: AtomicUsize,
    high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    fence: Arc<RevocationFence>,
}

impl GroupMembership {
    /// The fence a flush in flight holds so that its partitions do not move meanwhile.
    pub fn fence(&self) -> &Arc<RevocationFence> {
        &self.fence
    }

    /// Whether the group has given this member at least one partition.
    pub fn has_partitions(&self) -> bool {
        self.owned.load(Ordering::Relaxed) > 0
    }

    /// Whether changes wait to be taken.
    pub fn has_changes_pending(&self) -> bool {
        self.changes.lock().map(|c| !c.is_empty()).unwrap_or(false)
    }

    /// Takes the changes announced since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<Assignment> {
        self.changes
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// The partition's high watermark from librdkafka's latest statistics, if reported.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        let marks = self.high_watermarks.lock().ok()?;
        marks
            .get(&(topic.to_string(), partition))
            .copied()
            .filter(|h| *h >= 0)
    }

    fn push(&self, change: Assignment) {
        if let Ok(mut changes) = self.changes.lock() {
            changes.push(change);
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for GroupMembership {
    fn stats(&self, statistics: Statistics) {
        if let Ok(mut marks) = self.high_watermarks.lock() {
            for (name, topic) in statistics.topics {
                for (partition, stats) in topic.partitions {
                    marks.insert((name.clone(), partition), stats.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for GroupMembership {
    /// The revoked partitions' next owner restores them from the last durable checkpoint, so
    /// a flush in flight must land before they go.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance
            && self.fence.held() > 0
        {
            tracing::info!(
                partitions = list.count(),
                "partitions revoked: waiting for the flush in flight"
            );
            self.fence.wait_released(Duration::from_secs(30));
        }
    }

    /// With the cooperative assignor `list` holds only the partitions that change hands (the
    /// rest stay assigned and keep being read); with an eager one, every partition.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let owned = || consumer.assignment().map_or(0, |list| list.count());
        match rebalance {
            Rebalance::Assign(list) => {
                if let Err(error) = consumer.pause(list) {
                    tracing::warn!(%error, "pausing newly assigned partitions");
                }
                self.owned.store(owned(), Ordering::Relaxed);
                let assigned = partitions(list);
                tracing::info!(
                    partitions = list.count(),
                    owned = owned(),
                    ?assigned,
                    "partitions assigned"
                );
                self.push(Assignment::Assigned(assigned));
            }
            Rebalance::Revoke(list) => {
                self.owned.store(owned(), Ordering::Relaxed);
                let revoked = partitions(list);
                tracing::info!(
                    partitions = list.count(),
                    owned = owned(),
                    ?revoked,
                    "partitions revoked"
                );
                self.push(Assignment::Revoked(revoked));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

/// A consumer in the configured group that never commits on its own.
pub fn group_member(settings: &KafkaSettings) -> KafkaResult<StreamConsumer<GroupMembership>> {
    // A fetch in flight counts against memory like the queue it fills, so it is kept to half
    // the prefetch bound. Brokers return a larger first message anyway (KIP-74), so a big
    // message never stops its partition.
    let prefetch = settings.prefetch_kbytes as usize * 1024;
    let fetch = (prefetch / 2).clamp(2 * settings.max_message_bytes, 52_428_800);
    let partition_fetch = fetch.min(8_388_608);
    let mut config = settings.client_config();
    if !settings.instance_id.is_empty() {
        config.set("group.instance.id", &settings.instance_id);
    }
    config
        .set("group.id", &settings.group_id)
        .set(
            "partition.assignment.strategy",
            &settings.assignment_strategy,
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", partition_fetch.to_string())
        .set("fetch.max.bytes", fetch.to_string())
        .set(
            "queued.max.messages.kbytes",
            settings.prefetch_kbytes.to_string(),
        )
        // Kafka's default (45 s) is the configured one: a broker busy with a burst of produce
        // requests answers heartbeats late, and shorter timeouts made tansu revoke and
        // reassign partitions in a loop. An owner silent for longer loses its partitions; its
        // later writes are fenced (ADR 0014).
        .set(
            "session.timeout.ms",
            settings.session_timeout_ms.to_string(),
        )
        // Partition high watermarks for the lag metric come from these statistics.
        .set("statistics.interval.ms", "5000")
        // While ClickHouse is unreachable the runtime retries a flush instead of polling;
        // staying in the group through such an outage keeps partitions from moving mid-flush.
        .set("max.poll.interval.ms", "3600000")
        .create_with_context(GroupMembership::default())
}
