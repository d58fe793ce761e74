//! What the ingest gateway makes durable besides the events themselves: per-minute counts of
//! what became of the entries it was given (`ingest_outcomes`, the gateway's half of publish
//! success) and the entries it refused for good, kept whole as dead letters with reason
//! `rejected_at_ingest`, so nothing submitted is lost without a trace. ClickHouse, not the
//! broker, holds both: a broker outage is exactly when they must still be counted.

use salestalk_operators::DeadLetterAddress;
use salestalk_operators::flush::DeadLetter;
use salestalk_store::codec::datetime;
use salestalk_store::ingest_outcome::IngestOutcome;
use salestalk_store::tables::dead_letters::DeadLetterRow;
use salestalk_store::{ClickHouseError, Endpoint};

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
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedEntry {
    /// Where it is filed: unassigned, under the topic it routes to (or [`NO_TOPIC`]) and a
    /// number no other refused entry has (a redrive lets the partitioner choose by tenant,
    /// as the gateway would have).
    pub address: DeadLetterAddress,
    /// Its dead letter (reason `rejected_at_ingest`), its broker time when it was submitted.
    pub letter: DeadLetter,
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
        let rows: Vec<DeadLetterRow<'_>> = refused
            .iter()
            .map(|entry| DeadLetterRow::new(&entry.address, &entry.letter, written_at_ms))
            .collect();
        endpoint.insert_dead_letters(&rows).await?;
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
