//! What the ingest gateway makes durable besides the events themselves: per-minute counts of
//! what became of the entries it was given (`ingest_outcomes`, the gateway's half of publish
//! success) and the entries it refused for good, kept whole as dead letters with reason
//! `rejected_at_ingest`, so nothing submitted is lost without a trace. ClickHouse, not the
//! broker, holds both: a broker outage is exactly when they must still be counted.

use salestalk_operators::DeadLetterAddress;
use salestalk_operators::flush::DeadLetter;
use salestalk_store::tables::dead_letters::DeadLetterRow;
use salestalk_store::tables::ingest_outcomes::OutcomeCount;
use salestalk_store::{ClickHouseError, Endpoint};

/// The dead-letter "topic" of a refused entry that routes nowhere it may go (no readable
/// event type, or another tenant's event): `dlq redrive` will not produce it.
pub const NO_TOPIC: &str = "ingest.refused";

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
        endpoint.insert_ingest_outcomes(counts).await?;
    }
    Ok(())
}
