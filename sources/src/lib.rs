//! Sources: where raw messages come from, and the contract every source keeps. The first
//! component of the graph: the runtime (in the `salestalk` binary) reads batches from a
//! [`Source`] and hands them to the operators.
//!
//! A source owns some partitions (each one ordered stream of messages, one task each), reads
//! their messages into an owned [`Batch`], starts each partition where its task's checkpoint
//! says, and hears when everything before a position is durable. The runtime
//! is written against [`Source`] alone; [`kafka`] is the consumer-group
//! implementation, [`kinesis`] reads the shards of Kinesis streams, and [`Sources`] is the
//! configured ones as one (`pipeline.sources`). A batch owns its bytes (one buffer, reused),
//! so it can be handed to another thread.

mod both;
mod error;
pub mod kafka;
pub mod kinesis;
mod log_throttle;
mod observer;

pub use both::{SourceSettings, Sources};
pub use error::SourceError;
pub use observer::{PartitionGauges, SourceObserver, Unobserved};

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

pub use salestalk_operators::SourcePartition;
use salestalk_operators::flush::Checkpoint;
use salestalk_operators::{PublishPath, RawMessage};

/// Partitions gained and lost since the source was last asked, folded: a partition gained
/// and lost again in between is in neither list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Now ours, and not read until [`Source::start`] places them.
    pub assigned: Vec<SourcePartition>,
    /// No longer ours: their tasks must go before anything more of them is processed.
    pub revoked: Vec<SourcePartition>,
}

/// What a source is to the runtime.
#[allow(async_fn_in_trait)] // used generically, never as a trait object
pub trait Source {
    /// The partitions gained and lost since the last call.
    fn take_changes(&mut self) -> Changes;

    /// Whether gained or lost partitions wait to be taken: the runtime stops reading then.
    fn has_changes_pending(&self) -> bool;

    /// Whether the source owns any partition (an idle run waits for one).
    fn has_partitions(&self) -> bool;

    /// Starts reading `partition` right after `checkpoint` (its task's: the next offset, and
    /// for Kinesis the last sequence number); `false` when the partition was lost meanwhile.
    async fn start(
        &mut self,
        partition: &SourcePartition,
        checkpoint: &Checkpoint,
    ) -> Result<bool, SourceError>;

    /// The partitions whose messages came before `partition`'s (a Kinesis shard's parents
    /// and their ancestors): a new task's dedup starts from the ids they counted.
    fn predecessors(&self, _partition: &SourcePartition) -> Vec<SourcePartition> {
        Vec::new()
    }

    /// Kept by a flush in flight: while it lives, partitions the source loses are not let go
    /// (their next owner restores them from the checkpoint the flush writes).
    type Hold: Send + 'static;

    /// A hold on the partitions, for one flush in flight.
    fn hold_partitions(&self) -> Self::Hold;

    /// Stops reading `partitions` until they are started again (to replay them).
    fn pause(&mut self, partitions: &[SourcePartition]) -> Result<(), SourceError>;

    /// Reads into `batch` until it holds `max` messages, `timeout` passes, or the partitions
    /// change. Cancelling it loses nothing: what was read is in `batch`.
    async fn read(&mut self, batch: &mut Batch, max: usize, timeout: Duration);

    /// Everything before each position is durable (the source may tell its broker; restarts
    /// use the checkpoints).
    fn commit(&mut self, positions: &[(SourcePartition, i64)]);

    /// The position after the partition's last message, if known without a round trip.
    fn end(&self, partition: &SourcePartition) -> Option<i64>;

    /// Whether every partition is read to its end, given the tasks' positions (asks the
    /// broker).
    fn caught_up(&self, positions: &[(SourcePartition, i64)]) -> bool;

    /// Which of `positions` are read to their partition's end, asking the broker for at most
    /// `within` in all: a partition not asked in time answers no, and is asked again later.
    /// The driver asks on its own loop, so brokers that do not answer cost `within`, not a
    /// timeout per partition. By default [`Source::caught_up`] one partition at a time, for a
    /// source that answers from what it holds (Kinesis) and so never waits.
    fn read_to_end(&self, positions: &[(SourcePartition, i64)], _within: Duration) -> Vec<bool> {
        positions
            .iter()
            .map(|position| self.caught_up(std::slice::from_ref(position)))
            .collect()
    }
}

/// Where one message of a batch is.
#[derive(Debug, Clone)]
struct Slot {
    topic: usize,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    payload: Payload,
    path: PublishPath,
    sequence: Option<Range<usize>>,
}

/// Where a message's payload is held.
#[derive(Debug, Clone)]
enum Payload {
    /// A tombstone: no payload.
    None,
    /// Copied into the batch's buffer (a payload borrowed from the source's own buffer).
    Copied(Range<usize>),
    /// Handed over by the source, by index in `owned`.
    Owned(usize),
}

/// Messages read from a source, with their payloads in one buffer (or, when the source hands
/// each payload over in its own buffer, as Kinesis's SDK does, in those buffers, uncopied).
#[derive(Debug, Default)]
pub struct Batch {
    topics: Vec<String>,
    slots: Vec<Slot>,
    bytes: Vec<u8>,
    owned: Vec<Vec<u8>>,
}

impl Batch {
    /// Empties the batch, keeping its buffers (up to [`Batch::RETAINED_BYTES`] of payload
    /// space, so one batch of huge messages does not pin their memory for the whole run).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.bytes.clear();
        self.owned.clear();
        self.bytes.shrink_to(Self::RETAINED_BYTES);
    }

    /// Payload space kept between batches.
    pub const RETAINED_BYTES: usize = 16 << 20;

    /// Messages held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Appends one message (a copy of its payload, and of its sequence number when the
    /// source has them).
    #[allow(clippy::too_many_arguments)] // one per field of a message; a struct would be built per call
    pub fn push(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        payload: Option<&[u8]>,
        path: PublishPath,
        sequence: Option<&str>,
    ) {
        let payload = match payload {
            Some(bytes) => Payload::Copied(self.copy(bytes)),
            None => Payload::None,
        };
        self.push_slot(
            topic,
            partition,
            offset,
            timestamp_ms,
            payload,
            path,
            sequence,
        );
    }

    /// Appends one message whose payload the source hands over in its own buffer (kept, not
    /// copied; a copy of its sequence number).
    #[allow(clippy::too_many_arguments)] // as `push`
    pub fn push_owned(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        payload: Vec<u8>,
        path: PublishPath,
        sequence: Option<&str>,
    ) {
        self.owned.push(payload);
        let payload = Payload::Owned(self.owned.len() - 1);
        self.push_slot(
            topic,
            partition,
            offset,
            timestamp_ms,
            payload,
            path,
            sequence,
        );
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }

    #[allow(clippy::too_many_arguments)] // as `push`
    fn push_slot(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        payload: Payload,
        path: PublishPath,
        sequence: Option<&str>,
    ) {
        let topic = match self.topics.iter().position(|t| t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() - 1
            }
        };
        let sequence = sequence.map(|s| self.copy(s.as_bytes()));
        self.slots.push(Slot {
            topic,
            partition,
            offset,
            timestamp_ms,
            payload,
            path,
            sequence,
        });
    }

    /// The messages of each partition, in the order read.
    pub fn by_partition(&self) -> BTreeMap<(&str, i32), Vec<RawMessage<'_>>> {
        let mut out: BTreeMap<(&str, i32), Vec<RawMessage<'_>>> = BTreeMap::new();
        // Counted first so that each partition's vector is allocated once at its size: a
        // batch's vectors are new every poll, and growing them was a visible share of the
        // pipeline's page faults (docs/performance.md).
        let mut sizes: BTreeMap<(usize, i32), usize> = BTreeMap::new();
        for slot in &self.slots {
            *sizes.entry((slot.topic, slot.partition)).or_default() += 1;
        }
        for ((topic, partition), size) in sizes {
            out.insert(
                (self.topics[topic].as_str(), partition),
                Vec::with_capacity(size),
            );
        }
        for slot in &self.slots {
            let topic = self.topics[slot.topic].as_str();
            out.entry((topic, slot.partition))
                .or_default()
                .push(RawMessage {
                    topic,
                    partition: slot.partition,
                    offset: slot.offset,
                    timestamp_ms: slot.timestamp_ms,
                    payload: match &slot.payload {
                        Payload::None => None,
                        Payload::Copied(range) => self.bytes.get(range.clone()),
                        Payload::Owned(index) => self.owned.get(*index).map(Vec::as_slice),
                    },
                    path: slot.path,
                    // Pushed from a `&str`, so the range holds whole UTF-8.
                    sequence: slot
                        .sequence
                        .clone()
                        .and_then(|range| std::str::from_utf8(&self.bytes[range]).ok()),
                });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_hands_back_each_partitions_messages_in_order() {
        let mut batch = Batch::default();
        batch.push("a", 0, 7, Some(1), Some(b"x"), PublishPath::Direct, None);
        batch.push("b", 1, 3, None, None, PublishPath::Direct, Some("495"));
        batch.push("a", 0, 8, Some(2), Some(b"yz"), PublishPath::Gateway, None);
        batch.push_owned(
            "b",
            1,
            4,
            None,
            b"handed".to_vec(),
            PublishPath::Direct,
            Some("496"),
        );
        let parts = batch.by_partition();
        let a: Vec<(i64, Option<&[u8]>)> = parts[&("a", 0)]
            .iter()
            .map(|m| (m.offset, m.payload))
            .collect();
        assert_eq!(a, [(7, Some(&b"x"[..])), (8, Some(&b"yz"[..]))]);
        let paths: Vec<PublishPath> = parts[&("a", 0)].iter().map(|m| m.path).collect();
        assert_eq!(paths, [PublishPath::Direct, PublishPath::Gateway]);
        assert_eq!(parts[&("b", 1)][0].payload, None);
        assert_eq!(parts[&("b", 1)][0].sequence, Some("495"));
        assert_eq!(parts[&("a", 0)][1].sequence, None);
        let handed = &parts[&("b", 1)][1];
        assert_eq!(
            (handed.offset, handed.payload, handed.sequence),
            (4, Some(&b"handed"[..]), Some("496"))
        );
        assert_eq!(batch.len(), 4);
        batch.clear();
        assert!(batch.is_empty() && batch.by_partition().is_empty());
    }
}
