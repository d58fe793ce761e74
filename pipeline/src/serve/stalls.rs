//! The "no fresh data" signal (`no_fresh_data_ms`), measured by `serve`'s alert evaluator:
//! how long each source and each consumer has made no durable progress while the brokers hold
//! messages it has not made durable yet. A pipeline that is down, wedged or cut off from
//! ClickHouse writes nothing, so no view can show it by itself; the brokers' high watermarks
//! against the checkpoints can.
//!
//! Per source (topic, or `kinesis:<stream>`): the oldest "last durable" time among its
//! partitions that have unread messages (a partition never flushed counts from when the
//! evaluator first saw it waiting). Kinesis does not say how many records a shard holds, so a
//! shard waits when a read right after its durable checkpoint finds a record.
//! Per consumer (`STALL_CONSUMERS`): the end of the last minute with any of its outputs
//! durable, while any partition waits. Subjects with nothing unread are left out (good).

use std::collections::{BTreeMap, HashMap};

use salestalk_alerting::notification::Labels;
use salestalk_alerting::tracker::Measurement;
use salestalk_kafka::{KafkaSettings, admin};
use salestalk_kinesis::streams::shards;
use salestalk_kinesis::{KinesisSettings, read};
use salestalk_store::Endpoint;
use salestalk_store::tables::window_state::task_name;

use salestalk_operators::SourceKind;
use salestalk_sources::kinesis::lineage::partition_key;

/// What a source's partition looks like to the evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Messages on the broker not yet durable.
    pub unread: i64,
    /// When its last checkpoint became durable (Unix ms), if known.
    pub durable_at_ms: Option<i64>,
}

/// Remembers when partitions with no known progress were first seen waiting.
#[derive(Default)]
pub struct Stalls {
    first_waiting: HashMap<(String, i32), i64>,
    /// Built at the first measurement that needs it.
    kinesis: Option<salestalk_kinesis::Client>,
}

impl std::fmt::Debug for Stalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stalls")
            .field("first_waiting", &self.first_waiting)
            .finish_non_exhaustive()
    }
}

/// The sources the pipeline reads (`pipeline.sources`), as the stall signal watches them.
#[derive(Debug, Clone)]
pub struct WatchedSources {
    /// The Kafka topics, when read.
    pub kafka: Option<KafkaSettings>,
    /// The Kinesis streams, when read.
    pub kinesis: Option<KinesisSettings>,
}

impl WatchedSources {
    /// The sources of `kinds` (`pipeline.sources`), with their settings.
    pub fn new(kinds: &[SourceKind], kafka: &KafkaSettings, kinesis: &KinesisSettings) -> Self {
        Self {
            kafka: kinds.contains(&SourceKind::Kafka).then(|| kafka.clone()),
            kinesis: kinds
                .contains(&SourceKind::Kinesis)
                .then(|| kinesis.clone()),
        }
    }
}

/// Each task's next offset, when its checkpoint became durable, and its sequence number.
type Durable = HashMap<String, (i64, Option<i64>, String)>;

impl Stalls {
    /// The signal's measurements now: one per source or consumer that waits.
    pub async fn measure(
        &mut self,
        endpoint: &Endpoint,
        sources: &WatchedSources,
        consumers_last_ms: &[(String, f64)],
        now_ms: i64,
    ) -> anyhow::Result<Vec<Measurement>> {
        let checkpoints: Durable = endpoint
            .checkpoints()
            .await?
            .into_iter()
            .map(|(task, checkpoint, at)| (task, (checkpoint.next_offset, at, checkpoint.sequence)))
            .collect();
        let mut partitions = BTreeMap::new();
        if let Some(kafka) = &sources.kafka {
            let settings = kafka.clone();
            let ends = tokio::task::spawn_blocking(move || {
                admin::high_watermarks(&settings, &settings.topics)
            })
            .await??;
            for ((topic, partition), high) in ends {
                let (next, at) = checkpoints
                    .get(&task_name(&topic, partition))
                    .map_or((0, None), |(next, at, _)| (*next, *at));
                let progress = PartitionProgress {
                    unread: (high - next).max(0),
                    durable_at_ms: at,
                };
                partitions.insert((topic, partition), progress);
            }
        }
        if let Some(kinesis) = &sources.kinesis {
            partitions.extend(self.shards(kinesis, &checkpoints).await?);
        }
        tracing::debug!(?partitions, "stall signal: unread per partition");
        Ok(self.judge(&partitions, consumers_last_ms, now_ms))
    }

    /// Every listed shard's progress: one record found right after its durable checkpoint
    /// (or at its oldest record, never flushed) means it waits.
    async fn shards(
        &mut self,
        settings: &KinesisSettings,
        checkpoints: &Durable,
    ) -> anyhow::Result<Vec<((String, i32), PartitionProgress)>> {
        let client = match &self.kinesis {
            Some(client) => client.clone(),
            None => {
                let client = salestalk_kinesis::client(settings).await;
                self.kinesis = Some(client.clone());
                client
            }
        };
        let mut out = Vec::new();
        for stream in &settings.streams {
            for shard in shards(&client, stream).await? {
                let Some(key) = partition_key(stream, shard.shard_id()) else {
                    continue;
                };
                let (at, sequence) = checkpoints
                    .get(&task_name(key.topic(), key.number()))
                    .map_or((None, None), |(_, at, sequence)| {
                        (*at, Some(sequence.as_str()).filter(|s| !s.is_empty()))
                    });
                let page = read::peek(&client, stream, shard.shard_id(), sequence).await?;
                let progress = PartitionProgress {
                    unread: page.records.len() as i64,
                    durable_at_ms: at,
                };
                out.push(((key.topic().to_string(), key.number()), progress));
            }
        }
        Ok(out)
    }

    /// The measurements for `partitions` and the consumers' last progress (Unix ms), at `now_ms`.
    pub fn judge(
        &mut self,
        partitions: &BTreeMap<(String, i32), PartitionProgress>,
        consumers_last_ms: &[(String, f64)],
        now_ms: i64,
    ) -> Vec<Measurement> {
        self.first_waiting
            .retain(|key, _| partitions.get(key).is_some_and(|p| p.unread > 0));
        let mut oldest_per_source: BTreeMap<&str, i64> = BTreeMap::new();
        for ((topic, partition), progress) in partitions {
            if progress.unread == 0 {
                continue;
            }
            let since = match progress.durable_at_ms {
                Some(at) => at,
                None => *self
                    .first_waiting
                    .entry((topic.clone(), *partition))
                    .or_insert(now_ms),
            };
            let oldest = oldest_per_source.entry(topic).or_insert(since);
            *oldest = (*oldest).min(since);
        }
        let mut measurements: Vec<Measurement> = oldest_per_source
            .iter()
            .map(|(topic, since)| measurement("source", topic, (now_ms - since).max(0)))
            .collect();
        if let Some(oldest) = oldest_per_source.values().min() {
            for (consumer, last) in consumers_last_ms {
                let since = (*last as i64).max(*oldest);
                measurements.push(measurement("consumer", consumer, (now_ms - since).max(0)));
            }
        }
        measurements
    }
}

fn measurement(label: &str, subject: &str, age_ms: i64) -> Measurement {
    let mut labels = Labels::new();
    labels.insert(label.into(), subject.into());
    Measurement {
        labels,
        value: age_ms as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(unread: i64, durable_at_ms: Option<i64>) -> PartitionProgress {
        PartitionProgress {
            unread,
            durable_at_ms,
        }
    }

    #[test]
    fn only_sources_with_unread_messages_are_judged_from_their_oldest_progress() {
        let mut stalls = Stalls::default();
        let partitions = BTreeMap::from([
            (("a".to_string(), 0), progress(5, Some(1_000))),
            (("a".to_string(), 1), progress(0, Some(0))),
            (("a".to_string(), 2), progress(3, Some(4_000))),
            (("b".to_string(), 0), progress(0, Some(0))),
        ]);
        let consumers = [("clickhouse.metrics".to_string(), 2_000.0)];
        let measured = stalls.judge(&partitions, &consumers, 10_000);
        assert_eq!(measured.len(), 2, "{measured:?}");
        assert_eq!(measured[0].labels["source"], "a");
        assert_eq!(measured[0].value, 9_000.0, "its oldest waiting partition");
        assert_eq!(measured[1].labels["consumer"], "clickhouse.metrics");
        // The consumer's last output is after the oldest wait began: counted from the output.
        assert_eq!(measured[1].value, 8_000.0);
        let idle = BTreeMap::from([(("a".to_string(), 0), progress(0, Some(1_000)))]);
        assert!(
            stalls.judge(&idle, &consumers, 20_000).is_empty(),
            "nothing waits"
        );
    }

    #[test]
    fn a_partition_never_flushed_counts_from_when_it_was_first_seen_waiting() {
        let mut stalls = Stalls::default();
        let waiting = BTreeMap::from([(("a".to_string(), 0), progress(7, None))]);
        assert_eq!(stalls.judge(&waiting, &[], 1_000)[0].value, 0.0);
        assert_eq!(stalls.judge(&waiting, &[], 61_000)[0].value, 60_000.0);
        let done = BTreeMap::from([(("a".to_string(), 0), progress(0, None))]);
        assert!(stalls.judge(&done, &[], 62_000).is_empty());
        assert_eq!(
            stalls.judge(&waiting, &[], 70_000)[0].value,
            0.0,
            "a new wait starts afresh"
        );
    }
}
