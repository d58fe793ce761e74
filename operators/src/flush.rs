//! What a task hands to the sinks, and what it resumes from: the schema between the operators
//! and storage.
//!
//! [`Flush`] is everything one task produced since its last flush: the window rows it
//! changed, the events to archive, the messages to dead-letter, and the [`Checkpoint`] that
//! goes in the same atomic insert as the rows (ADR 0004). [`TaskState`] is the same facts read
//! back: a restarted task is rebuilt from it by [`Task::resume`](crate::task::Task::resume),
//! so storage never builds operators.

use bytes::Bytes;
use salestalk_contracts::{EventId, EventType};

use crate::aggregate::Family;
use crate::dead_letter::DeadLetterReason;
use crate::dedup::CountedIds;
use crate::windows::{Span, WindowValue, first_open_window};

/// Names of the graph's consumers, as latency and errors are reported per consumer.
pub mod consumers {
    /// The window-state (metrics) table.
    pub const METRICS: &str = "clickhouse.metrics";
    /// The raw event archive.
    pub const ARCHIVE: &str = "clickhouse.archive";
    /// The dead-letter table.
    pub const DEAD_LETTERS: &str = "clickhouse.dead_letters";
    /// The dead-letter topic.
    pub const DLQ_TOPIC: &str = "kafka.dlq";
}

/// Where a task is: stored with its window rows in one atomic insert.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The next offset to read.
    pub next_offset: i64,
    /// The source's own position of the last message read, when offsets are the task's own
    /// count (a Kinesis sequence number: up to 129 digits, so text); empty for Kafka, whose
    /// offsets are the broker's.
    pub sequence: String,
    /// Largest trusted event time seen (Unix ms).
    pub event_watermark_ms: Option<i64>,
    /// Largest broker timestamp seen (Unix ms).
    pub broker_watermark_ms: Option<i64>,
    /// Flush counter; window rows carry the epoch that wrote them.
    pub epoch: u64,
}

impl Checkpoint {
    /// The first minute window (Unix s) any of the task's rows may still change in: rows of
    /// earlier windows are final, so a restore reads only rows from here on.
    pub fn first_open_window(&self, allowed_lateness_ms: i64) -> i64 {
        first_open_window(self.event_watermark_ms, allowed_lateness_ms).min(first_open_window(
            self.broker_watermark_ms,
            allowed_lateness_ms,
        ))
    }
}

/// A valid event as the raw archive keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedEvent {
    /// `eventId`.
    pub event_id: EventId,
    /// `tenantId`.
    pub tenant_id: String,
    /// `eventType`.
    pub event_type: EventType,
    /// `source`.
    pub source: String,
    /// `eventVersion`.
    pub event_version: String,
    /// `userId`, or empty.
    pub user_id: String,
    /// `sessionId`, or empty.
    pub session_id: String,
    /// `metadata.correlationId`.
    pub correlation_id: String,
    /// `metadata.causationId`, if any.
    pub causation_id: Option<EventId>,
    /// `metadata.traceId`, or empty.
    pub trace_id: String,
    /// Event time, Unix ms, as stamped.
    pub timestamp_ms: i64,
    /// Start of the window it was counted in (Unix s).
    pub window_start: i64,
    /// Whether its timestamp was too far ahead of the broker's and was not trusted.
    pub clock_skewed: bool,
    /// Whether it came after its window was final: archived, not counted live, and counted by
    /// the correction of its day (ADR 0016).
    pub late: bool,
    /// Source offset.
    pub offset: i64,
    /// Broker timestamp, Unix ms.
    pub broker_ms: i64,
    /// The message as received: a slice of a chunk the task shares among many events.
    pub raw: Bytes,
    /// [`crate::dedup::content_fingerprint`] of `raw`: what a later copy is compared with,
    /// also after a restore from the archive.
    pub fingerprint: u32,
}

impl ArchivedEvent {
    /// The dead letter of this event once a sink has refused it for good.
    pub fn refused(&self, rejection: Rejection) -> DeadLetter {
        DeadLetter::new(
            Address {
                offset: self.offset,
                broker_ms: self.broker_ms,
            },
            Readable {
                tenant: &self.tenant_id,
                event_type: self.event_type.as_str(),
                event_id: &self.event_id.to_string(),
                correlation_id: &self.correlation_id,
                ..Readable::default()
            },
            rejection,
            self.raw.to_vec(),
        )
    }
}

/// Why a message leaves the normal path, and how hard delivery was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason, from the taxonomy.
    pub reason: DeadLetterReason,
    /// The details (the violations, why it was late, or the sink's error).
    pub error: String,
    /// Attempts made before giving up (1 for a message refused at once).
    pub attempts: u32,
}

impl Rejection {
    /// A message refused at the first look.
    pub fn at_once(reason: DeadLetterReason, error: String) -> Self {
        Self {
            reason,
            error,
            attempts: 1,
        }
    }
}

/// Where a message sits in its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Source offset.
    pub offset: i64,
    /// Broker timestamp, Unix ms.
    pub broker_ms: i64,
}

/// What could be read of a message's envelope (`""` where nothing could).
#[derive(Debug, Clone, Copy, Default)]
pub struct Readable<'a> {
    /// `tenantId`.
    pub tenant: &'a str,
    /// `source` (counted in the publish family; not kept in the dead letter).
    pub source: &'a str,
    /// `eventType`.
    pub event_type: &'a str,
    /// `eventId`, as written.
    pub event_id: &'a str,
    /// `metadata.correlationId`.
    pub correlation_id: &'a str,
}

/// A message that left the normal path.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Source offset.
    pub offset: i64,
    /// Broker timestamp, Unix ms.
    pub broker_ms: i64,
    /// Why.
    pub reason: DeadLetterReason,
    /// The details (every violation, or why it was late).
    pub error: String,
    /// Tenant, when readable.
    pub tenant_id: String,
    /// Event type, when readable.
    pub event_type: String,
    /// `eventId`, when readable.
    pub event_id: String,
    /// Attempts made to deliver it before it was given up (1 for a message refused at once).
    pub attempts: u32,
    /// The message as received.
    pub raw: Vec<u8>,
    /// The source's own position of the message (a Kinesis sequence number; empty for
    /// Kafka, whose offset is the broker's).
    pub sequence: String,
    /// `metadata.correlationId`, when readable.
    pub correlation_id: String,
}

impl DeadLetter {
    /// The one way a dead letter is made: where it was, what was readable, why, and its bytes.
    pub fn new(at: Address, readable: Readable<'_>, rejection: Rejection, raw: Vec<u8>) -> Self {
        Self {
            offset: at.offset,
            broker_ms: at.broker_ms,
            reason: rejection.reason,
            error: rejection.error,
            tenant_id: readable.tenant.to_string(),
            event_type: readable.event_type.to_string(),
            event_id: readable.event_id.to_string(),
            attempts: rejection.attempts,
            raw,
            sequence: String::new(),
            correlation_id: readable.correlation_id.to_string(),
        }
    }
}

/// A window row ready for storage, with its strings resolved; also what a restore reads back.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    /// Its family.
    pub family: Family,
    /// How long its window lasts.
    pub span: Span,
    /// Window start, Unix s.
    pub window_start: i64,
    /// Tenant.
    pub tenant_id: String,
    /// Dimensions.
    pub dims: [String; 3],
    /// The full value of the window so far.
    pub value: WindowValue,
}

/// Everything one flush of one task must make durable.
#[derive(Debug, Clone, PartialEq)]
pub struct Flush {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// The checkpoint the rows below complete.
    pub checkpoint: Checkpoint,
    /// Window rows changed since the last flush.
    pub rows: Vec<StateRow>,
    /// Events to archive.
    pub archive: Vec<ArchivedEvent>,
    /// Messages to dead-letter.
    pub dead_letters: Vec<DeadLetter>,
    /// Messages read since the last flush.
    pub messages: u64,
    /// Of those, resends of events already counted.
    pub duplicates: u64,
}

/// What a task's earlier flushes made durable, read back to resume it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskState {
    /// The last checkpoint (the default for a partition never flushed).
    pub checkpoint: Checkpoint,
    /// The latest value of every row that may still change
    /// (from [`Checkpoint::first_open_window`] on).
    pub rows: Vec<StateRow>,
    /// Events counted before the checkpoint, within the dedup horizon.
    pub seen: CountedIds,
    /// Messages at or after the checkpoint that a sink refused, by offset: a replay
    /// dead-letters them instead of counting them (ADR 0006).
    pub refused: Vec<(i64, Rejection)>,
    /// The generation the resuming owner claimed (its epochs start at `generation << 32`);
    /// `None`: the one after the checkpoint's.
    pub generation: Option<u64>,
}
