//! Which shards this instance reads, and when: the pure bookkeeping of the Kinesis source.
//!
//! A split or merge closes its parents and opens children; a child is handed to the runtime
//! only once every parent is *finished* (read to its end, and that end durable), so one
//! tenant's events (one partition key) are counted in shard order across the reshard and the
//! child's dedup can start from what its parents counted. A shard is ours by the static
//! assignment (`KinesisSettings::owns`); a parent may be another instance's, whose progress
//! only ClickHouse and the stream know (the source probes those, [`Book::to_probe`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{Changes, SourcePartition};

/// A shard as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The stream.
    pub stream: String,
    /// The shard id (`shardId-000000000003`).
    pub shard_id: String,
    /// Its parents (one for a split, two for a merge), as partition keys.
    pub parents: Vec<SourcePartition>,
    /// Whether it is closed (has an ending sequence number).
    pub closed: bool,
    /// Whether this instance reads it.
    pub ours: bool,
}

/// The partition runtime tasks use for shard `shard_id` of `stream`.
pub fn partition_key(stream: &str, shard_id: &str) -> Option<SourcePartition> {
    Some(SourcePartition::kinesis(stream, shard_number(shard_id)?))
}

/// The number of `shardId-000000000003`: 3.
pub fn shard_number(shard_id: &str) -> Option<i32> {
    shard_id.rsplit('-').next()?.parse().ok()
}

/// The source's view of the shards.
#[derive(Debug, Default)]
pub struct Book {
    shards: BTreeMap<SourcePartition, Shard>,
    /// Handed to the runtime and not taken back.
    assigned: BTreeSet<SourcePartition>,
    /// Read to their end, durably (never read again).
    finished: BTreeSet<SourcePartition>,
    /// Where our readers found a closed shard's end (the offset after its last record).
    ended_at: HashMap<SourcePartition, i64>,
    /// How far each of our shards is durable.
    durable: HashMap<SourcePartition, i64>,
    changes: Changes,
    /// Whether the shards were listed once.
    listed: bool,
}

impl Book {
    /// Replaces the shards of the streams just listed.
    pub fn listed(&mut self, shards: Vec<(SourcePartition, Shard)>) {
        for (key, shard) in shards {
            self.shards.insert(key, shard);
        }
        self.listed = true;
    }

    /// Whether the shards were listed at least once.
    pub fn has_listed(&self) -> bool {
        self.listed
    }

    /// A listed shard.
    pub fn shard(&self, key: &SourcePartition) -> Option<&Shard> {
        self.shards.get(key)
    }

    /// Whether `key` is finished.
    pub fn is_finished(&self, key: &SourcePartition) -> bool {
        self.finished.contains(key)
    }

    /// Records that `key` is finished (a probe found its durable end).
    pub fn mark_finished(&mut self, key: &SourcePartition) {
        self.finished.insert(key.clone());
    }

    /// Our reader of `key` found its end after `next_offset` records.
    pub fn ended(&mut self, key: &SourcePartition, next_offset: i64) {
        self.ended_at.insert(key.clone(), next_offset);
    }

    /// Everything of `key` before `position` is durable.
    pub fn durable(&mut self, key: &SourcePartition, position: i64) {
        let entry = self.durable.entry(key.clone()).or_insert(position);
        *entry = (*entry).max(position);
    }

    /// Our shards not handed out yet, not finished, whose parents (all of them) are
    /// finished or no longer listed (expired): these the runtime may start now. The others
    /// wait; [`Book::to_probe`] says which parents to ask about.
    pub fn ready(&self) -> Vec<SourcePartition> {
        self.waiting()
            .filter(|(_, shard)| {
                shard.parents.iter().all(|parent| {
                    self.finished.contains(parent) || !self.shards.contains_key(parent)
                })
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Closed shards whose end only ClickHouse and the stream can tell: parents of our
    /// waiting shards that we do not read ourselves, and our own closed shards not started
    /// yet (finished in an earlier run, they need no task).
    pub fn to_probe(&self) -> BTreeSet<SourcePartition> {
        let mut out = BTreeSet::new();
        for (key, shard) in self.waiting() {
            if shard.closed {
                out.insert(key.clone());
            }
            for parent in &shard.parents {
                let closed = self.shards.get(parent).is_some_and(|p| p.closed);
                if closed && !self.finished.contains(parent) && !self.assigned.contains(parent) {
                    out.insert(parent.clone());
                }
            }
        }
        out
    }

    fn waiting(&self) -> impl Iterator<Item = (&SourcePartition, &Shard)> {
        self.shards.iter().filter(|(key, shard)| {
            shard.ours && !self.assigned.contains(*key) && !self.finished.contains(*key)
        })
    }

    /// Hands `keys` to the runtime.
    pub fn assign(&mut self, keys: Vec<SourcePartition>) {
        for key in keys {
            if self.assigned.insert(key.clone()) {
                self.changes.assigned.push(key);
            }
        }
    }

    /// Our shards read to their end with that end durable: finished, and taken back from
    /// the runtime (their tasks hold nothing more to do).
    pub fn settle(&mut self) {
        let done: Vec<SourcePartition> = self
            .assigned
            .iter()
            .filter(|key| {
                self.ended_at
                    .get(*key)
                    .is_some_and(|end| self.durable.get(*key).is_some_and(|durable| durable >= end))
            })
            .cloned()
            .collect();
        for key in done {
            self.assigned.remove(&key);
            self.finished.insert(key.clone());
            self.changes.assigned.retain(|a| *a != key);
            self.changes.revoked.push(key);
        }
    }

    /// The changes since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Whether changes wait to be taken.
    pub fn has_changes(&self) -> bool {
        !self.changes.assigned.is_empty() || !self.changes.revoked.is_empty()
    }

    /// The shards handed out.
    pub fn assigned(&self) -> Vec<SourcePartition> {
        self.assigned.iter().cloned().collect()
    }

    /// Whether any shard is handed out.
    pub fn has_assigned(&self) -> bool {
        !self.assigned.is_empty()
    }

    /// Whether some shard of ours waits for its parents.
    pub fn has_waiting(&self) -> bool {
        self.waiting().next().is_some()
    }

    /// Every listed ancestor of `key` (parents, their parents, ...), nearest first.
    pub fn ancestors(&self, key: &SourcePartition) -> Vec<SourcePartition> {
        let mut out: Vec<SourcePartition> = Vec::new();
        let mut next: Vec<SourcePartition> = self
            .shards
            .get(key)
            .map(|s| s.parents.clone())
            .unwrap_or_default();
        while let Some(parent) = next.pop() {
            if out.contains(&parent) {
                continue;
            }
            if let Some(shard) = self.shards.get(&parent) {
                next.extend(shard.parents.iter().cloned());
                out.push(parent);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: i32) -> SourcePartition {
        SourcePartition::kinesis("s", n)
    }

    fn shard(n: i32, parents: &[i32], closed: bool, ours: bool) -> (SourcePartition, Shard) {
        (
            key(n),
            Shard {
                stream: "s".into(),
                shard_id: format!("shardId-{n:012}"),
                parents: parents.iter().map(|p| key(*p)).collect(),
                closed,
                ours,
            },
        )
    }

    #[test]
    fn shard_ids_and_keys() {
        assert_eq!(shard_number("shardId-000000000003"), Some(3));
        assert_eq!(shard_number("nonsense"), None);
        assert_eq!(
            partition_key("s", "shardId-000000000012"),
            Some(SourcePartition::kinesis("s", 12))
        );
    }

    #[test]
    fn children_wait_until_their_parent_is_read_to_its_durable_end() {
        let mut book = Book::default();
        // Shard 0 split into 1 and 2; all ours.
        book.listed(vec![
            shard(0, &[], true, true),
            shard(1, &[0], false, true),
            shard(2, &[0], false, true),
        ]);
        assert_eq!(book.ready(), vec![key(0)]);
        assert_eq!(book.to_probe(), BTreeSet::from([key(0)]));
        book.assign(book.ready());
        assert_eq!(book.take_changes().assigned, vec![key(0)]);
        assert!(book.ready().is_empty(), "the children wait");
        assert!(
            book.to_probe().is_empty(),
            "our own reader tells about shard 0"
        );
        book.ended(&key(0), 10);
        book.durable(&key(0), 9);
        book.settle();
        assert!(book.ready().is_empty(), "its end is not durable yet");
        book.durable(&key(0), 10);
        book.settle();
        assert_eq!(book.take_changes().revoked, vec![key(0)]);
        assert_eq!(book.ready(), vec![key(1), key(2)]);
        assert_eq!(book.ancestors(&key(2)), vec![key(0)]);
    }

    #[test]
    fn a_merge_waits_for_both_parents_and_another_instances_parent_is_probed() {
        let mut book = Book::default();
        book.listed(vec![
            shard(0, &[], true, false),
            shard(1, &[], true, true),
            shard(2, &[0, 1], false, true),
        ]);
        assert_eq!(book.to_probe(), BTreeSet::from([key(0), key(1)]));
        book.mark_finished(&key(1));
        assert!(book.ready().is_empty());
        book.mark_finished(&key(0));
        assert_eq!(book.ready(), vec![key(2)]);
        let mut ancestors = book.ancestors(&key(2));
        ancestors.sort();
        assert_eq!(ancestors, vec![key(0), key(1)]);
    }

    #[test]
    fn an_end_found_after_its_flush_landed_still_finishes_the_shard() {
        let mut book = Book::default();
        book.listed(vec![shard(0, &[], true, true), shard(1, &[0], false, true)]);
        book.assign(book.ready());
        book.take_changes();
        book.durable(&key(0), 7);
        book.settle();
        assert!(!book.is_finished(&key(0)), "no end seen yet");
        book.ended(&key(0), 7);
        book.settle();
        assert!(book.is_finished(&key(0)));
        assert_eq!(book.take_changes().revoked, vec![key(0)]);
        assert_eq!(book.ready(), vec![key(1)]);
    }

    #[test]
    fn an_expired_parent_holds_nothing_back() {
        let mut book = Book::default();
        book.listed(vec![shard(5, &[3], false, true)]);
        assert_eq!(book.ready(), vec![key(5)]);
        assert!(book.ancestors(&key(5)).is_empty());
    }
}
