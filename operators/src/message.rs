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
}
