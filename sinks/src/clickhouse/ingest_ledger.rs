//! What the ingest gateway makes durable besides the events themselves: per-minute counts of
//! what became of the entries it was given (`ingest_outcomes`, the gateway's half of publish
//! success) and the entries it refused for good, kept whole as dead letters with reason
//! `rejected_at_ingest`, so nothing submitted is lost without a trace. ClickHouse, not the
//! broker, holds both: a broker outage is exactly when they must still be counted.

use salestalk_operators::dead_letter::DeadLetterReason;
use salestalk_store::codec::datetime;
use salestalk_store::ingest_outcome::IngestOutcome;
use salestalk_store::{ClickHouseError, Endpoint};

use super::dead_letter_table::DeadLetterRecord;

/// The dead-letter "partition" of an entry that never reached a topic: librdkafka's
/// "unassigned", so a redrive lets the partitioner choose by the tenant key, as the gateway
/// would have.
pub const NO_PARTITION: i32 = -1;

/// The dead-letter "topic" of a refused entry that routes nowhere it may go (no readable
/// event type, or another tenant's event): `dlq redrive` will not produce it.
pub const NO_TOPIC: &str = "ingest.refused";

/// Entries of one minute, tenant, source and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeCount {
    /// Start of the minute they were submitted in, Unix seconds.
    pub minute_s: i64,
    /// Their tenant (`""` when unreadable, or not one the key publishes for).
    pub tenant_id: String,
    /// Their `source` (`""` when unreadable).
    pub source: String,
    /// What became of them.
    pub outcome: IngestOutcome,
    /// How many.
    pub entries: u64,
}

#[derive(Debug, clickhouse::Row, serde::Serialize)]
struct OutcomeRecord<'a> {
    minute: u32,
    tenant_id: &'a str,
    source: &'a str,
    outcome: &'a str,
    entries: u64,
}

/// An entry the gateway refused for good, as its dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEntry {
    /// The topic it routes to, or [`NO_TOPIC`].
    pub topic: String,
    /// A number no other refused entry has (the dead letter's `offset`, its address).
    pub address: i64,
    /// When it was submitted, Unix ms.
    pub received_ms: i64,
    /// Why, with the code first (`ValidationError: ...`).
    pub error: String,
    /// Its tenant, as far as it can be told (see [`OutcomeCount::tenant_id`]).
    pub tenant_id: String,
    /// Its event type, when readable.
    pub event_type: String,
    /// Its event id, when readable.
    pub event_id: String,
    /// The entry as submitted.
    pub raw: Vec<u8>,
}

/// Stores `counts` and `refused` (two inserts, not retried here: the gateway keeps what was
/// not stored and tries again with its next write).
pub async fn record_ingest(
    endpoint: &Endpoint,
    counts: &[OutcomeCount],
    refused: &[RefusedEntry],
    written_at_ms: u64,
) -> Result<(), ClickHouseError> {
    if !refused.is_empty() {
        let records: Vec<DeadLetterRecord<'_>> = refused
            .iter()
            .map(|entry| {
                let at = datetime(entry.received_ms.div_euclid(1000));
                DeadLetterRecord {
                    topic: &entry.topic,
                    partition: NO_PARTITION,
                    offset: entry.address,
                    broker_time: at,
                    reason: DeadLetterReason::RejectedAtIngest.as_str(),
                    error: &entry.error,
                    tenant_id: &entry.tenant_id,
                    event_type: &entry.event_type,
                    raw: serde_bytes::Bytes::new(&entry.raw),
                    attempts: 1,
                    first_failure: at,
                    last_failure: at,
                    written_at_ms,
                    event_id: &entry.event_id,
                    sequence: "",
                }
            })
            .collect();
        endpoint
            .insert_rows::<DeadLetterRecord<'_>>("dead_letters", &records)
            .await?;
    }
    if !counts.is_empty() {
        let records: Vec<OutcomeRecord<'_>> = counts
            .iter()
            .map(|count| OutcomeRecord {
                minute: datetime(count.minute_s),
                tenant_id: &count.tenant_id,
                source: &count.source,
                outcome: count.outcome.as_str(),
                entries: count.entries,
            })
            .collect();
        endpoint
            .insert_rows::<OutcomeRecord<'_>>("ingest_outcomes", &records)
            .await?;
    }
    Ok(())
}
