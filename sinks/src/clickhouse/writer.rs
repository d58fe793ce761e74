//! Making flushes durable: side outputs first (idempotent, refused rows isolated), then one
//! atomic insert of every changed window row together with the checkpoints they complete
//! (ADR 0004, ADR 0006).

use std::ops::Range;

use clickhouse::{Client, Row, RowWrite};
use salestalk_contracts::EventId;
use salestalk_operators::task::{Checkpoint, DeadLetter, Flush};
use serde::{Deserialize, Serialize};

use super::schema::CHECKPOINT_FAMILY;
use super::{ClickHouseError, Endpoint};
use crate::retry::{Refused, RetryPolicy, write_isolating};

/// Rows per flush kept far below `max_insert_block_size` (1,048,576), so the state insert
/// forms a single block and therefore a single, atomic part.
pub const MAX_STATE_ROWS: usize = 500_000;

/// A `window_state` row.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct StateRecord {
    /// Metric family, or `checkpoint`.
    pub family: String,
    /// `topic/partition`.
    pub task: String,
    /// The flush that wrote it.
    pub epoch: u64,
    /// Window start, Unix seconds.
    pub window_start: u32,
    /// Tenant.
    pub tenant_id: String,
    /// First dimension.
    pub d1: String,
    /// Second dimension.
    pub d2: String,
    /// Third dimension.
    pub d3: String,
    /// Counters.
    pub ints: Vec<i64>,
    /// Sums.
    pub floats: Vec<f64>,
    /// Histogram buckets.
    pub hist_buckets: Vec<i16>,
    /// Histogram counts.
    pub hist_counts: Vec<u64>,
}

#[derive(Debug, Clone, Row, Serialize)]
struct ArchiveRecord<'a> {
    tenant_id: &'a str,
    event_id: String,
    event_type: &'a str,
    event_version: &'a str,
    source: &'a str,
    timestamp: u32,
    timestamp_ms: i64,
    window_start: u32,
    clock_skewed: u8,
    user_id: &'a str,
    session_id: &'a str,
    correlation_id: &'a str,
    causation_id: String,
    topic: &'a str,
    partition: i32,
    offset: i64,
    broker_time: u32,
    durable_at_ms: u64,
    raw: &'a serde_bytes::Bytes,
}

#[derive(Debug, Clone, Row, Serialize)]
struct DeadLetterRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    broker_time: u32,
    reason: &'a str,
    error: &'a str,
    tenant_id: &'a str,
    event_type: &'a str,
    raw: &'a serde_bytes::Bytes,
    attempts: u32,
    first_failure: u32,
    last_failure: u32,
    written_at_ms: u64,
    event_id: &'a str,
}

/// The task name stored with rows: `topic/partition`.
pub fn task_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// Unix seconds as a ClickHouse `DateTime`, clamped to its range (1970 to 2106).
pub fn datetime(seconds: i64) -> u32 {
    u32::try_from(seconds.max(0)).unwrap_or(u32::MAX)
}

/// The checkpoint row of a task.
pub fn checkpoint_record(task: String, checkpoint: &Checkpoint) -> StateRecord {
    StateRecord {
        family: CHECKPOINT_FAMILY.to_string(),
        task,
        epoch: checkpoint.epoch,
        window_start: 0,
        tenant_id: String::new(),
        d1: String::new(),
        d2: String::new(),
        d3: String::new(),
        ints: vec![
            checkpoint.next_offset,
            checkpoint.event_watermark_ms.unwrap_or(i64::MIN),
            checkpoint.broker_watermark_ms.unwrap_or(i64::MIN),
        ],
        floats: Vec::new(),
        hist_buckets: Vec::new(),
        hist_counts: Vec::new(),
    }
}

/// The window-state rows of one flush, its checkpoint last.
pub fn state_records(flush: &Flush) -> Vec<StateRecord> {
    let task = task_name(&flush.topic, flush.partition);
    let mut records: Vec<StateRecord> = flush
        .rows
        .iter()
        .map(|row| {
            let (hist_buckets, hist_counts) = row.value.histogram.to_arrays();
            let [d1, d2, d3] = row.dims.clone();
            StateRecord {
                family: row.span.storage_name(row.family),
                task: task.clone(),
                epoch: flush.checkpoint.epoch,
                window_start: datetime(row.window_start),
                tenant_id: row.tenant.clone(),
                d1,
                d2,
                d3,
                ints: row.value.ints.clone(),
                floats: row.value.floats.clone(),
                hist_buckets,
                hist_counts,
            }
        })
        .collect();
    records.push(checkpoint_record(task, &flush.checkpoint));
    records
}

/// An archived event the archive refused: its flush, its index there, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEvent {
    /// Index of the flush in the slice written.
    pub flush: usize,
    /// Index of the event in that flush's archive.
    pub event: usize,
    /// Why.
    pub refused: Refused,
}

/// A dead letter with the partition it came from.
#[derive(Debug, Clone, Copy)]
pub struct SourcedLetter<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// The letter.
    pub letter: &'a DeadLetter,
}

/// Inserts `records[range]` into `table` as one insert.
async fn insert_range<T: Row + RowWrite>(
    client: &Client,
    url: &str,
    table: &str,
    records: &[T::Value<'_>],
    range: Range<usize>,
) -> Result<(), ClickHouseError> {
    let classify = |e| ClickHouseError::classify(url, e);
    let mut insert = client.insert::<T>(table).await.map_err(classify)?;
    for record in &records[range] {
        insert.write(record).await.map_err(classify)?;
    }
    insert.end().await.map_err(classify)
}

impl Endpoint {
    /// Archives every valid event of `flushes`, isolating events the archive refuses
    /// (returned). Fails only when ClickHouse is down.
    pub async fn write_archive(
        &self,
        flushes: &[Flush],
        durable_at_ms: u64,
        policy: &RetryPolicy,
        on_failure: impl FnMut(&ClickHouseError),
    ) -> Result<Vec<RefusedEvent>, ClickHouseError> {
        let mut origin = Vec::new();
        let mut records = Vec::new();
        for (f, flush) in flushes.iter().enumerate() {
            for (e, event) in flush.archive.iter().enumerate() {
                origin.push((f, e));
                records.push(ArchiveRecord {
                    tenant_id: &event.tenant_id,
                    event_id: EventId(event.event_id).to_string(),
                    event_type: event.event_type.as_str(),
                    event_version: &event.event_version,
                    source: &event.source,
                    timestamp: datetime(event.timestamp_ms.div_euclid(1000)),
                    timestamp_ms: event.timestamp_ms,
                    window_start: datetime(event.window_start),
                    clock_skewed: u8::from(event.clock_skewed),
                    user_id: &event.user_id,
                    session_id: &event.session_id,
                    correlation_id: &event.correlation_id,
                    causation_id: event
                        .causation_id
                        .map(|id| EventId(id).to_string())
                        .unwrap_or_default(),
                    topic: &flush.topic,
                    partition: flush.partition,
                    offset: event.offset,
                    broker_time: datetime(event.broker_ms.div_euclid(1000)),
                    durable_at_ms,
                    raw: serde_bytes::Bytes::new(&event.raw),
                });
            }
        }
        let client = self.client();
        let refused = write_isolating(
            policy,
            records.len(),
            |range| {
                insert_range::<ArchiveRecord<'_>>(&client, &self.url, "events_raw", &records, range)
            },
            || self.ping(),
            on_failure,
        )
        .await?;
        Ok(refused
            .into_iter()
            .map(|refused| {
                let (flush, event) = origin[refused.index];
                RefusedEvent {
                    flush,
                    event,
                    refused,
                }
            })
            .collect())
    }

    /// Stores `letters` in `dead_letters`, isolating rows the table refuses (returned; they
    /// are still in the DLQ topic). Fails only when ClickHouse is down.
    pub async fn write_dead_letters(
        &self,
        letters: &[SourcedLetter<'_>],
        durable_at_ms: u64,
        policy: &RetryPolicy,
        on_failure: impl FnMut(&ClickHouseError),
    ) -> Result<Vec<Refused>, ClickHouseError> {
        let now = datetime((durable_at_ms / 1000) as i64);
        let records: Vec<DeadLetterRecord<'_>> = letters
            .iter()
            .map(|sourced| {
                let letter = sourced.letter;
                DeadLetterRecord {
                    topic: sourced.topic,
                    partition: sourced.partition,
                    offset: letter.offset,
                    broker_time: datetime(letter.broker_ms.div_euclid(1000)),
                    reason: letter.reason.as_str(),
                    error: &letter.error,
                    tenant_id: &letter.tenant_id,
                    event_type: &letter.event_type,
                    raw: serde_bytes::Bytes::new(&letter.raw),
                    attempts: letter.attempts,
                    first_failure: datetime(letter.broker_ms.div_euclid(1000)),
                    last_failure: now,
                    written_at_ms: durable_at_ms,
                    event_id: &letter.event_id,
                }
            })
            .collect();
        let client = self.client();
        write_isolating(
            policy,
            records.len(),
            |range| {
                insert_range::<DeadLetterRecord<'_>>(
                    &client,
                    &self.url,
                    "dead_letters",
                    &records,
                    range,
                )
            },
            || self.ping(),
            on_failure,
        )
        .await
    }

    /// The commit point: every changed row of `flushes` and their checkpoints, in one
    /// insert. Retried per `policy`; never split, since splitting would break atomicity.
    pub async fn write_state(
        &self,
        flushes: &[&Flush],
        policy: &RetryPolicy,
        on_failure: impl FnMut(&ClickHouseError),
    ) -> Result<(), ClickHouseError> {
        let records: Vec<StateRecord> = flushes.iter().flat_map(|f| state_records(f)).collect();
        if flushes.is_empty() {
            return Ok(());
        }
        let client = self.client();
        policy
            .run(
                || {
                    insert_range::<StateRecord>(
                        &client,
                        &self.url,
                        "window_state",
                        &records,
                        0..records.len(),
                    )
                },
                on_failure,
            )
            .await
    }

    /// Makes `flushes` durable in one go, failing if anything is refused (tests and tools;
    /// the runtime uses the steps above). On error nothing is lost: call again.
    pub async fn write_flushes(
        &self,
        flushes: &[Flush],
        durable_at_ms: u64,
    ) -> Result<(), ClickHouseError> {
        let policy = RetryPolicy::default();
        let refused = self
            .write_archive(flushes, durable_at_ms, &policy, |_| {})
            .await?;
        let letters: Vec<SourcedLetter<'_>> = flushes
            .iter()
            .flat_map(|f| {
                f.dead_letters.iter().map(|letter| SourcedLetter {
                    topic: &f.topic,
                    partition: f.partition,
                    letter,
                })
            })
            .collect();
        let refused_letters = self
            .write_dead_letters(&letters, durable_at_ms, &policy, |_| {})
            .await?;
        if let Some(first) = refused
            .first()
            .map(|r| &r.refused)
            .or(refused_letters.first())
        {
            return Err(ClickHouseError::Refused(first.error.clone()));
        }
        let all: Vec<&Flush> = flushes.iter().collect();
        self.write_state(&all, &policy, |_| {}).await
    }
}
