//! Typed identities of where a message is: the source partition it was read from (with the
//! kind of source), and the address a dead letter is filed under. Their stored form, the
//! `topic` and `partition` columns every table keys by, is written and read here only.
//!
//! A Kinesis shard is stored as topic `kinesis:<stream>` with the shard's number: Kafka topic
//! names cannot hold `:`, so the two kinds never share a name. A dead letter that never had a
//! partition (an event a routing target did not take, an entry the gateway refused) is stored
//! with partition -1, librdkafka's "unassigned": a redrive lets the partitioner choose.

use std::fmt;

/// What marks a stored topic as a Kinesis stream's.
const KINESIS_PREFIX: &str = "kinesis:";

/// The stored partition of a dead letter that never had one.
const UNASSIGNED: i32 = -1;

/// The kind of source a partition belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// A Kafka topic's partition.
    Kafka,
    /// A Kinesis stream's shard.
    Kinesis,
}

impl SourceKind {
    /// Every kind, as `pipeline.sources` may name them.
    pub const ALL: [SourceKind; 2] = [Self::Kafka, Self::Kinesis];

    /// Its name in configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Kinesis => "kinesis",
        }
    }

    /// The kind configuration names `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One partition of a source: a Kafka topic's partition or a Kinesis stream's shard; one task
/// each. Ordered as its stored form, (topic, number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePartition {
    /// The stored topic: the Kafka topic, or `kinesis:<stream>`.
    topic: String,
    /// The partition's or shard's number.
    number: i32,
}

impl SourcePartition {
    /// Partition `partition` of Kafka topic `topic`.
    pub fn kafka(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_string(),
            number: partition,
        }
    }

    /// Shard `shard` (the number of `shardId-000000000003`) of Kinesis stream `stream`.
    pub fn kinesis(stream: &str, shard: i32) -> Self {
        Self {
            topic: format!("{KINESIS_PREFIX}{stream}"),
            number: shard,
        }
    }

    /// The partition stored as `topic`/`number` (in a table's columns, a task's name).
    pub fn stored(topic: &str, number: i32) -> Self {
        Self {
            topic: topic.to_string(),
            number,
        }
    }

    /// Which kind of source it belongs to.
    pub fn kind(&self) -> SourceKind {
        if self.topic.starts_with(KINESIS_PREFIX) {
            SourceKind::Kinesis
        } else {
            SourceKind::Kafka
        }
    }

    /// The stored topic: what tasks, tables and dead letters name it by.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition's (or shard's) number.
    pub fn number(&self) -> i32 {
        self.number
    }

    /// The Kinesis stream, for a shard.
    pub fn stream(&self) -> Option<&str> {
        self.topic.strip_prefix(KINESIS_PREFIX)
    }

    /// The Kinesis stream a stored topic names, if it is a shard's.
    pub fn stream_of(topic: &str) -> Option<&str> {
        topic.strip_prefix(KINESIS_PREFIX)
    }
}

impl fmt::Display for SourcePartition {
    /// `topic/number`, a task's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.number)
    }
}

/// Where a dead letter is filed: the (topic, partition, offset) it is stored and keyed under,
/// unique per letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeadLetterAddress {
    /// A message as read: its source partition and offset.
    Read {
        /// The partition it was read from.
        partition: SourcePartition,
        /// Its offset there.
        offset: i64,
    },
    /// A letter that never had a partition: an event a routing target did not take (the
    /// target's topic) or an entry the gateway refused (the topic it routes to); `id` is
    /// unique among the letters of that topic.
    Unassigned {
        /// The topic it was for.
        topic: String,
        /// Its number among them.
        id: i64,
    },
}

impl DeadLetterAddress {
    /// The address stored as `topic`/`partition`/`offset`.
    pub fn stored(topic: &str, partition: i32, offset: i64) -> Self {
        if partition == UNASSIGNED {
            Self::Unassigned {
                topic: topic.to_string(),
                id: offset,
            }
        } else {
            Self::Read {
                partition: SourcePartition::stored(topic, partition),
                offset,
            }
        }
    }

    /// The address an entry id (`topic/partition/offset`) names, split at its last two
    /// slashes (topic names may not hold one, but the split does not rely on it).
    pub fn parse(id: &str) -> Option<Self> {
        let (rest, offset) = id.rsplit_once('/')?;
        let (topic, partition) = rest.rsplit_once('/')?;
        Some(Self::stored(
            topic,
            partition.parse().ok()?,
            offset.parse().ok()?,
        ))
    }

    /// Its `topic` column.
    pub fn topic(&self) -> &str {
        match self {
            Self::Read { partition, .. } => partition.topic(),
            Self::Unassigned { topic, .. } => topic,
        }
    }

    /// Its `partition` column.
    pub fn partition(&self) -> i32 {
        match self {
            Self::Read { partition, .. } => partition.number(),
            Self::Unassigned { .. } => UNASSIGNED,
        }
    }

    /// Its `offset` column.
    pub fn offset(&self) -> i64 {
        match self {
            Self::Read { offset, .. } | Self::Unassigned { id: offset, .. } => *offset,
        }
    }

    /// The kind of source it was read from (`None` when it never had a partition).
    pub fn source_kind(&self) -> Option<SourceKind> {
        match self {
            Self::Read { partition, .. } => Some(partition.kind()),
            Self::Unassigned { .. } => None,
        }
    }
}

impl fmt::Display for DeadLetterAddress {
    /// `topic/partition/offset`: a DLQ entry's id, the dead-letter topic's record key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic(), self.partition(), self.offset())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_and_a_topic_partition_keep_their_kind_through_the_stored_form() {
        let shard = SourcePartition::kinesis("events", 3);
        assert_eq!((shard.topic(), shard.number()), ("kinesis:events", 3));
        let back = SourcePartition::stored(shard.topic(), shard.number());
        assert_eq!(back.kind(), SourceKind::Kinesis);
        assert_eq!(back.stream(), Some("events"));
        let partition = SourcePartition::kafka("salestalk.tenant", 0);
        assert_eq!(partition.kind(), SourceKind::Kafka);
        assert_eq!(partition.stream(), None);
        assert_eq!(partition.to_string(), "salestalk.tenant/0");
    }

    #[test]
    fn a_dead_letter_address_round_trips_its_columns() {
        for address in [
            DeadLetterAddress::Read {
                partition: SourcePartition::kinesis("s", 2),
                offset: 7,
            },
            DeadLetterAddress::Unassigned {
                topic: "salestalk.conversation".into(),
                id: 42,
            },
        ] {
            let stored =
                DeadLetterAddress::stored(address.topic(), address.partition(), address.offset());
            assert_eq!(stored, address);
        }
        let unassigned = DeadLetterAddress::Unassigned {
            topic: "t".into(),
            id: 9,
        };
        assert_eq!(unassigned.to_string(), "t/-1/9");
        assert_eq!(
            DeadLetterAddress::parse("t/-1/9").as_ref(),
            Some(&unassigned)
        );
        let read = DeadLetterAddress::parse("a/b/c/0/7").map(|a| (a.to_string(), a.source_kind()));
        assert_eq!(read, Some(("a/b/c/0/7".into(), Some(SourceKind::Kafka))));
        assert_eq!(DeadLetterAddress::parse("salestalk.tenant/x/1"), None);
        assert_eq!(DeadLetterAddress::parse("nothing"), None);
        assert_eq!(unassigned.source_kind(), None);
    }
}
