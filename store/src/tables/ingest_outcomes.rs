//! `ingest_outcomes`: what became of the entries given to the ingest gateway, summed per
//! minute, tenant, source and outcome (the gateway's half of publish success). An outcome's
//! name is both the `outcome` column and the `errorCode` of the gateway's answer, so the view
//! of publish success and the publishers read the same words.

use clickhouse::Row;
use serde::Serialize;

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};
use salestalk_operators::time::datetime;
/// Migration 8: what the gateway was given and what became of it, summed per minute (when it was submitted), tenant, source and outcome.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.ingest_outcomes (\n\
         minute DateTime('UTC'),\n\
         tenant_id String,\n\
         source String,\n\
         outcome {low},\n\
         entries UInt64\n\
         ) ENGINE = SummingMergeTree\n\
         PARTITION BY toYYYYMM(minute)\n\
         ORDER BY (tenant_id, source, outcome, minute){}",
        ddl.ttl("minute", 90)
    )
}

/// An entry's fate at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IngestOutcome {
    /// On the bus, acknowledged by the broker.
    Accepted,
    /// Broke the contract (not retryable).
    ValidationError,
    /// For a tenant the key does not publish for (not retryable).
    TenantNotAllowed,
    /// Over the entry size limit (not retryable).
    TooLarge,
    /// Over the tenant's rate (retryable).
    Throttled,
    /// The broker did not take it (retryable).
    PublishFailed,
}

impl IngestOutcome {
    /// The outcomes that refuse an entry for good: each is a failed publish and a dead letter.
    pub const REJECTED: [IngestOutcome; 3] = [
        Self::ValidationError,
        Self::TenantNotAllowed,
        Self::TooLarge,
    ];

    /// The stored name, and the answer's `errorCode` for a failure.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::ValidationError => "ValidationError",
            Self::TenantNotAllowed => "TenantNotAllowed",
            Self::TooLarge => "TooLarge",
            Self::Throttled => "Throttled",
            Self::PublishFailed => "PublishFailed",
        }
    }

    /// Whether the publisher should send the entry again (after `Retry-After`).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::PublishFailed)
    }
}

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

/// One row of `ingest_outcomes`.
#[derive(Debug, Row, Serialize)]
struct OutcomeRow<'a> {
    minute: u32,
    tenant_id: &'a str,
    source: &'a str,
    outcome: &'a str,
    entries: u64,
}

impl Endpoint {
    /// Adds `counts` to the table (one insert, not retried).
    pub async fn insert_ingest_outcomes(
        &self,
        counts: &[OutcomeCount],
    ) -> Result<(), ClickHouseError> {
        let rows: Vec<OutcomeRow<'_>> = counts
            .iter()
            .map(|count| OutcomeRow {
                minute: datetime(count.minute_s),
                tenant_id: &count.tenant_id,
                source: &count.source,
                outcome: count.outcome.as_str(),
                entries: count.entries,
            })
            .collect();
        self.insert_rows::<OutcomeRow<'_>>("ingest_outcomes", &rows)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_and_broker_failures_are_retryable() {
        for outcome in IngestOutcome::REJECTED {
            assert!(!outcome.is_retryable(), "{outcome:?}");
        }
        assert!(IngestOutcome::Throttled.is_retryable());
        assert!(IngestOutcome::PublishFailed.is_retryable());
        assert!(!IngestOutcome::Accepted.is_retryable());
    }
}
