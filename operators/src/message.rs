//! What a source hands to the graph: the bytes of a message and where they came from.

/// One message as read from a topic, borrowed from the source's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawMessage<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Broker timestamp, Unix milliseconds, if the broker gave one.
    pub timestamp_ms: Option<i64>,
    /// The message value (`None` for a tombstone).
    pub payload: Option<&'a [u8]>,
    /// Who put it on the bus.
    pub path: PublishPath,
    /// The source's own position of the message when `offset` is the task's count rather
    /// than the broker's (a Kinesis sequence number); `None` for Kafka.
    pub sequence: Option<&'a str>,
}

/// Who put a message on the bus. The ingest gateway counts its own publishes (submitted,
/// accepted, rejected by code), so the pipeline counts as publishes only the messages that
/// reached the topics some other way; the gateway marks its messages: with a header on Kafka,
/// and, as Kinesis records carry no headers, with a prefix on the partition key there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishPath {
    /// Produced to the topics by a service itself.
    #[default]
    Direct,
    /// Produced by `salestalk ingest`.
    Gateway,
}

impl PublishPath {
    /// The Kafka record header the gateway sets on what it produces.
    pub const HEADER: &'static str = "salestalk-published-by";
    /// The header's value for the gateway.
    pub const GATEWAY: &'static [u8] = b"ingest-gateway";

    /// What the gateway puts before the tenant in a Kinesis record's partition key. A tenant
    /// id of its own could start so only if a direct producer chose to pass as the gateway,
    /// which the Kafka header allows as much.
    pub const KINESIS_KEY_PREFIX: &'static str = "salestalk-ingest-gateway/";

    /// The path a Kinesis record's partition key says.
    pub fn from_partition_key(key: &str) -> Self {
        if key.starts_with(Self::KINESIS_KEY_PREFIX) {
            Self::Gateway
        } else {
            Self::Direct
        }
    }

    /// The path a message's header says, `Direct` without it.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        if value == Some(Self::GATEWAY) {
            Self::Gateway
        } else {
            Self::Direct
        }
    }

    /// Its name in the publish rows (`path`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PublishPath;

    #[test]
    fn the_gateways_kinesis_key_prefix_marks_its_path_and_nothing_else_does() {
        let gateway = format!("{}tenant-a", PublishPath::KINESIS_KEY_PREFIX);
        assert_eq!(
            PublishPath::from_partition_key(&gateway),
            PublishPath::Gateway
        );
        for direct in [
            "tenant-a",
            "",
            "salestalk-ingest-gateway",
            "x/salestalk-ingest-gateway/",
        ] {
            assert_eq!(PublishPath::from_partition_key(direct), PublishPath::Direct);
        }
    }
}
