//! `dead_letters`: every dead letter with its raw bytes, its address (topic, partition,
//! offset), reason and attempts; `salestalk dlq`, the DLQ depth, restores (refused events) and
//! corrections (legacy late letters) read it. The dead-letter table sink writes a flush's
//! letters and the ingest gateway its refused entries, both as [`DeadLetterRow`].
//!
//! Adding a column: a step below, its line in `schema::migrations`, a field of
//! [`DeadLetterRow`] and what fills it in [`DeadLetterRow::new`].

use clickhouse::Row;
use salestalk_operators::DeadLetterAddress;
use salestalk_operators::dead_letter::DeadLetterReason;
use salestalk_operators::flush::{DeadLetter, Rejection};
use serde::{Deserialize, Serialize};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};
use salestalk_operators::time::datetime;

/// The table's name.
pub const TABLE: &str = "dead_letters";

/// Migration 1: the table. Replacing by `written_at_ms`: a replayed flush writes the same
/// address again, and the newest row is the letter.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.dead_letters (\n\
         topic {low},\n\
         partition Int32,\n\
         offset Int64,\n\
         broker_time DateTime('UTC'),\n\
         reason {low},\n\
         error String,\n\
         tenant_id String,\n\
         event_type String,\n\
         raw String,\n\
         attempts UInt32,\n\
         first_failure DateTime('UTC'),\n\
         last_failure DateTime('UTC'),\n\
         written_at_ms UInt64\n\
         ) ENGINE = ReplacingMergeTree(written_at_ms)\n\
         PARTITION BY toYYYYMM(broker_time)\n\
         ORDER BY (topic, partition, offset){}",
        ddl.ttl("broker_time", 14)
    )
}

/// Migration 3: the event id, for `dlq list --event-id`.
pub(crate) fn add_event_id(ddl: &Ddl<'_>) -> String {
    add_column(ddl, "event_id String")
}

/// Migration 12: a Kinesis letter's sequence number (its offset is the task's own count).
pub(crate) fn add_sequence(ddl: &Ddl<'_>) -> String {
    add_column(ddl, "sequence String")
}

/// Migration 18: the correlation id (`metadata.correlationId`), to follow a conversation
/// into its dead letters.
pub(crate) fn add_correlation_id(ddl: &Ddl<'_>) -> String {
    add_column(ddl, "correlation_id String")
}

fn add_column(ddl: &Ddl<'_>, column: &str) -> String {
    format!(
        "ALTER TABLE {}.dead_letters ADD COLUMN {column}",
        ddl.database
    )
}

/// One row of `dead_letters`, as the sinks and the gateway write it.
#[derive(Debug, Clone, Row, Serialize)]
pub struct DeadLetterRow<'a> {
    /// The topic of its address (a Kinesis letter's: `kinesis:<stream>`).
    pub topic: &'a str,
    /// The partition of its address.
    pub partition: i32,
    /// The offset of its address.
    pub offset: i64,
    /// When it was read (broker time, Unix s).
    pub broker_time: u32,
    /// The reason, from the taxonomy.
    pub reason: &'a str,
    /// The details.
    pub error: &'a str,
    /// Tenant, when readable.
    pub tenant_id: &'a str,
    /// Event type, when readable.
    pub event_type: &'a str,
    /// The message as received.
    pub raw: &'a serde_bytes::Bytes,
    /// Attempts made before it was given up.
    pub attempts: u32,
    /// First failure (Unix s): when it was read.
    pub first_failure: u32,
    /// Last failure (Unix s): when it was written.
    pub last_failure: u32,
    /// When it was written (Unix ms): the newest row of an address is the letter.
    pub written_at_ms: u64,
    /// Event id, when readable.
    pub event_id: &'a str,
    /// A Kinesis record's sequence number (empty for Kafka).
    pub sequence: &'a str,
    /// `metadata.correlationId`, when readable.
    pub correlation_id: &'a str,
}

impl<'a> DeadLetterRow<'a> {
    /// The row of `letter`, filed at `address`, written at `written_at_ms`.
    pub fn new(address: &'a DeadLetterAddress, letter: &'a DeadLetter, written_at_ms: u64) -> Self {
        let read_at = datetime(letter.broker_ms.div_euclid(1000));
        Self {
            topic: address.topic(),
            partition: address.partition(),
            offset: address.offset(),
            broker_time: read_at,
            reason: letter.reason.as_str(),
            error: &letter.error,
            tenant_id: &letter.tenant_id,
            event_type: &letter.event_type,
            raw: serde_bytes::Bytes::new(&letter.raw),
            attempts: letter.attempts,
            first_failure: read_at,
            last_failure: datetime((written_at_ms / 1000) as i64),
            written_at_ms,
            event_id: &letter.event_id,
            sequence: &letter.sequence,
            correlation_id: &letter.correlation_id,
        }
    }
}

/// The names of a dead letter's columns as Kafka record headers (on the dead-letter topic;
/// a delivered event carries its id, type, tenant, correlation and trace ids): stable, like the
/// columns.
pub mod header {
    /// Source topic.
    pub const TOPIC: &str = "salestalk.source.topic";
    /// Source partition.
    pub const PARTITION: &str = "salestalk.source.partition";
    /// Source offset.
    pub const OFFSET: &str = "salestalk.source.offset";
    /// Reason (the taxonomy's name).
    pub const REASON: &str = "salestalk.reason";
    /// Error text (at most 4 KiB).
    pub const ERROR: &str = "salestalk.error";
    /// Tenant, when readable.
    pub const TENANT: &str = "salestalk.tenant";
    /// Event type, when readable.
    pub const EVENT_TYPE: &str = "salestalk.event_type";
    /// Event id, when readable.
    pub const EVENT_ID: &str = "salestalk.event_id";
    /// Attempts made.
    pub const ATTEMPTS: &str = "salestalk.attempts";
    /// `metadata.correlationId`, when readable.
    pub const CORRELATION_ID: &str = "salestalk.correlation_id";
    /// `metadata.traceId`, on a delivered event that has one.
    pub const TRACE_ID: &str = "salestalk.trace_id";
}

/// Longest error text put in a header.
const MAX_ERROR_HEADER: usize = 4096;

impl DeadLetterRow<'_> {
    /// The row as Kafka record headers: its columns but the raw bytes (the record's value)
    /// and the times, the error cut to 4 KiB.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut end = self.error.len().min(MAX_ERROR_HEADER);
        while !self.error.is_char_boundary(end) {
            end -= 1;
        }
        vec![
            (header::TOPIC, self.topic.to_string()),
            (header::PARTITION, self.partition.to_string()),
            (header::OFFSET, self.offset.to_string()),
            (header::REASON, self.reason.to_string()),
            (header::ERROR, self.error[..end].to_string()),
            (header::TENANT, self.tenant_id.to_string()),
            (header::EVENT_TYPE, self.event_type.to_string()),
            (header::EVENT_ID, self.event_id.to_string()),
            (header::ATTEMPTS, self.attempts.to_string()),
            (header::CORRELATION_ID, self.correlation_id.to_string()),
        ]
    }
}

/// An event dead-lettered as `late` (and not discarded): a backfill counts it.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct LateLetter {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset (its dead letter's address).
    pub offset: i64,
    /// Broker time (Unix s).
    pub broker_time: u32,
    /// The message as received.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

#[derive(Debug, Row, Deserialize)]
struct RefusedRow {
    offset: i64,
    last_reason: String,
    last_error: String,
    most_attempts: u32,
}

#[derive(Debug, Row, Deserialize)]
struct RawRow {
    raw: serde_bytes::ByteBuf,
}

/// Messages at or after a task's checkpoint that a sink refused: replaying them dead-letters
/// them again instead of counting them (ADR 0006). Binds: topic, partition, checkpoint offset.
pub const REFUSED_QUERY: &str = "SELECT offset, argMax(reason, written_at_ms) AS last_reason, \
     argMax(error, written_at_ms) AS last_error, max(attempts) AS most_attempts FROM dead_letters \
     WHERE topic = ? AND partition = ? AND offset >= ? \
     AND reason IN ('sink_rejected', 'retries_exhausted') GROUP BY offset";

impl Endpoint {
    /// Writes `rows` as one insert.
    pub async fn insert_dead_letters(
        &self,
        rows: &[DeadLetterRow<'_>],
    ) -> Result<(), ClickHouseError> {
        self.insert_rows::<DeadLetterRow<'_>>(TABLE, rows).await
    }

    /// The messages of `topic`/`partition` from `offset` on that a sink refused, by offset,
    /// with the last refusal of each.
    pub async fn refusals(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Vec<(i64, Rejection)>, ClickHouseError> {
        let rows: Vec<RefusedRow> = self
            .query(REFUSED_QUERY)
            .bind(topic)
            .bind(partition)
            .bind(offset)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(refusal).collect())
    }

    /// The raw bytes of one dead letter, if it exists.
    pub async fn dlq_raw(
        &self,
        address: &DeadLetterAddress,
    ) -> Result<Option<Vec<u8>>, ClickHouseError> {
        let row: Option<RawRow> = self
            .query(&format!(
                "SELECT argMax(raw, written_at_ms) AS raw FROM {} \
                 WHERE topic = ? AND partition = ? AND offset = ? GROUP BY topic, partition, offset",
                self.everywhere(TABLE)
            ))
            .bind(address.topic())
            .bind(address.partition())
            .bind(address.offset())
            .fetch_optional()
            .await?;
        Ok(row.map(|r| r.raw.into_vec()))
    }

    /// The events of `tenants` (all when empty) dead-lettered as `late` since `since` (broker
    /// time, Unix s) and not discarded: a late event arrives after its window, so every late
    /// event of a range is among those read since its start (less the allowed clock skew).
    pub async fn late_letters(
        &self,
        tenants: &[String],
        since: u32,
    ) -> Result<Vec<LateLetter>, ClickHouseError> {
        // On several shards the actions (written where this endpoint points) are read here
        // once and sent to every shard (GLOBAL), not read from each shard's own table.
        self.query(&format!(
            "SELECT topic, partition, offset, toUInt32(broker_time) AS read_at, raw \
             FROM {} FINAL WHERE reason = 'late' \
             AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), tenant_id)) \
             AND toUInt32(broker_time) >= ? \
             AND (topic, partition, offset) {}NOT IN (SELECT topic, partition, offset \
             FROM dead_letter_actions WHERE action = 'discarded') \
             ORDER BY topic, partition, offset",
            self.everywhere(TABLE),
            if self.is_sharded() { "GLOBAL " } else { "" }
        ))
        .bind(tenants)
        .bind(tenants)
        .bind(since)
        .fetch_all()
        .await
    }
}

fn refusal(row: RefusedRow) -> (i64, Rejection) {
    let reason = if row.last_reason == DeadLetterReason::RetriesExhausted.as_str() {
        DeadLetterReason::RetriesExhausted
    } else {
        DeadLetterReason::SinkRejected
    };
    let rejection = Rejection {
        reason,
        error: row.last_error,
        attempts: row.most_attempts,
    };
    (row.offset, rejection)
}
