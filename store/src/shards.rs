//! Where a task's facts live on a cluster of several shards (ADR 0022): each task has one
//! home shard, whose writer (`clickhouse.shard_urls`) takes its window rows, checkpoints,
//! archive, dead letters, claims and lineage, and answers its restore. The sinks group a
//! flush by home shard (one atomic insert per shard); the restore and the claims ask the home
//! writer; the views read every shard through the cluster. Without `shard_urls` there is one
//! shard, written at `clickhouse.url`, and nothing here changes a request.

use crate::endpoint::Endpoint;

/// The home shard (0-based) of partition `partition` of `topic` among `shards`: a topic's
/// partitions go round the shards from a place fixed by the topic's name, so each topic's
/// partitions are spread evenly and topics do not all start on the first shard. A fixed,
/// published hash (XXH3): the mapping must never change between releases, since a task's
/// checkpoint is read back where it was written.
pub fn home_shard(topic: &str, partition: i32, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let start = twox_hash::XxHash3_64::oneshot(topic.as_bytes()) % shards as u64;
    ((start + u64::from(partition.unsigned_abs())) % shards as u64) as usize
}

impl Endpoint {
    /// How many shards the pipeline writes to: one per `shard_urls` entry, or one.
    pub fn shard_count(&self) -> usize {
        self.shard_urls.len().max(1)
    }

    /// Whether tasks are spread over several shards.
    pub fn is_sharded(&self) -> bool {
        self.shard_urls.len() > 1
    }

    /// The writer of shard `index` (0-based): this endpoint at that shard's URL, sharing the
    /// connections. Without `shard_urls`, this endpoint.
    pub fn shard_writer(&self, index: usize) -> Endpoint {
        match self.shard_urls.get(index) {
            Some(url) if *url != self.url => Endpoint {
                url: url.clone(),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// Every shard's writer, in shard order.
    pub fn shard_writers(&self) -> Vec<Endpoint> {
        (0..self.shard_count())
            .map(|index| self.shard_writer(index))
            .collect()
    }

    /// The writer of the home shard of `topic`/`partition`'s task.
    pub fn home(&self, topic: &str, partition: i32) -> Endpoint {
        self.shard_writer(home_shard(topic, partition, self.shard_count()))
    }

    /// The home shard of `topic`/`partition`'s task (0-based).
    pub fn home_shard(&self, topic: &str, partition: i32) -> usize {
        home_shard(topic, partition, self.shard_count())
    }

    /// Where to read the rows of `table` that every task wrote: its `Distributed` twin when
    /// the tasks are spread over several shards, else the table itself (one shard holds all).
    pub fn everywhere(&self, table: &str) -> String {
        if self.is_sharded() {
            format!("{table}{}", crate::cluster::DISTRIBUTED_SUFFIX)
        } else {
            table.to_string()
        }
    }

    /// The home shard of the task named `task` (`topic/partition`, as
    /// [`task_name`](crate::tables::window_state::task_name) makes it); a name that is not one
    /// (none is written) has shard 0.
    pub fn home_shard_of_task(&self, task: &str) -> usize {
        task.rsplit_once('/')
            .and_then(|(topic, partition)| Some((topic, partition.parse().ok()?)))
            .map_or(0, |(topic, partition)| self.home_shard(topic, partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_is_home_to_everything() {
        assert_eq!(home_shard("events", 7, 1), 0);
        assert_eq!(home_shard("events", 7, 0), 0);
    }

    #[test]
    fn a_topic_s_partitions_are_spread_evenly_over_the_shards() {
        for shards in [2, 3, 5] {
            let mut per_shard = vec![0; shards];
            for partition in 0..(12 * shards as i32) {
                per_shard[home_shard("salestalk.events", partition, shards)] += 1;
            }
            assert!(per_shard.iter().all(|n| *n == 12), "{per_shard:?}");
        }
    }

    #[test]
    fn a_task_s_name_gives_its_home() {
        let endpoint = Endpoint {
            shard_urls: vec![
                "http://a:8123".into(),
                "http://b:8123".into(),
                "http://c:8123".into(),
            ],
            ..Endpoint::new("http://a:8123", "db")
        };
        for partition in 0..6 {
            let task = crate::tables::window_state::task_name("a/b.events", partition);
            assert_eq!(
                endpoint.home_shard_of_task(&task),
                endpoint.home_shard("a/b.events", partition)
            );
        }
        assert_eq!(endpoint.shard_writer(1).url, "http://b:8123");
        assert_eq!(endpoint.home_shard_of_task("not a task"), 0);
    }

    #[test]
    fn the_mapping_is_fixed_across_releases() {
        // Checkpoints are read back where they were written: these values must never change.
        let events: Vec<usize> = (0..6).map(|p| home_shard("events", p, 2)).collect();
        let orders: Vec<usize> = (0..6).map(|p| home_shard("orders", p, 3)).collect();
        assert_eq!(events, [1, 0, 1, 0, 1, 0]);
        assert_eq!(orders, [0, 1, 2, 0, 1, 2]);
    }
}
