//! The "no fresh data" signal (`no_fresh_data_ms`), measured by `serve`'s alert evaluator:
//! how long each source and each consumer has made no durable progress while the brokers hold
//! messages it has not made durable yet. A pipeline that is down, wedged or cut off from
//! ClickHouse writes nothing, so no view can show it by itself; the brokers' high watermarks
//! against the checkpoints can.
//!
//! Per source (topic): the oldest "last durable" time among its partitions that have unread
//! messages (a partition never flushed counts from when the evaluator first saw it waiting).
//! Per consumer (`STALL_CONSUMERS`): the end of the last minute with any of its outputs
//! durable, while any partition waits. Subjects with nothing unread are left out (good).

use std::collections::{BTreeMap, HashMap};

use salestalk_alerting::notification::Labels;
use salestalk_alerting::tracker::Measurement;
use salestalk_kafka::{KafkaSettings, admin};
use salestalk_store::Endpoint;
use salestalk_store::codec::task_name;

/// What a source's partition looks like to the evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Messages on the broker not yet durable.
    pub unread: i64,
    /// When its last checkpoint became durable (Unix ms), if known.
    pub durable_at_ms: Option<i64>,
}

/// Remembers when partitions with no known progress were first seen waiting.
#[derive(Debug, Default)]
pub struct Stalls {
    first_waiting: HashMap<(String, i32), i64>,
}

impl Stalls {
    /// The signal's measurements now: one per source or consumer that waits.
    pub async fn measure(
        &mut self,
        endpoint: &Endpoint,
        kafka: &KafkaSettings,
        consumers_last_ms: &[(String, f64)],
        now_ms: i64,
    ) -> anyhow::Result<Vec<Measurement>> {
        let checkpoints: HashMap<String, (i64, Option<i64>)> = endpoint
            .checkpoints()
            .await?
            .into_iter()
            .map(|(task, checkpoint, at)| (task, (checkpoint.next_offset, at)))
            .collect();
        let settings = kafka.clone();
        let ends = tokio::task::spawn_blocking(move || {
            admin::high_watermarks(&settings, &settings.topics)
        })
        .await??;
        let partitions = ends
            .into_iter()
            .map(|((topic, partition), high)| {
                let (next, at) = checkpoints
                    .get(&task_name(&topic, partition))
                    .copied()
                    .unwrap_or((0, None));
                let progress = PartitionProgress {
                    unread: (high - next).max(0),
                    durable_at_ms: at,
                };
                ((topic, partition), progress)
            })
            .collect();
        Ok(self.judge(&partitions, consumers_last_ms, now_ms))
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
