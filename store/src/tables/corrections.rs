//! `corrections`: every check of a tenant's day by the corrector of past days (ADR 0016), with
//! what its correction changed, if one was needed. The newest record of a tenant and day is
//! what the next check compares with; `salestalk corrections` lists them.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 15: every check of a tenant's day, with what its correction changed; a handful of rows per tenant and day, kept like the claims.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.corrections (\n\
         tenant_id String,\n\
         day Date,\n\
         checked_at_ms UInt64,\n\
         epoch UInt64,\n\
         trigger {low},\n\
         live_before Int64,\n\
         events Int64,\n\
         late_events Int64,\n\
         duplicates_removed Int64,\n\
         late_arrivals_seen Int64,\n\
         late_arrivals_counted Int64,\n\
         rows_written UInt64,\n\
         waiting_tasks Array(String)\n\
         ) ENGINE = MergeTree\n\
         ORDER BY (tenant_id, day, checked_at_ms)"
    )
}

/// One check of a tenant's day, and what its correction (if one was needed) changed. The
/// newest record of a tenant and day is what the next check compares with.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct CorrectionRecord {
    /// The tenant.
    pub tenant_id: String,
    /// The UTC day (days since 1970-01-01).
    pub day: u16,
    /// When the check was made (Unix ms); a correction's rows carry its epoch.
    pub checked_at_ms: u64,
    /// The correction's epoch, or 0 when the check found nothing to correct.
    pub epoch: u64,
    /// What started it: `first_check`, `late_events`, `live_changed` or `backfill`.
    pub trigger: String,
    /// The day's live event total before the check (the volume view).
    pub live_before: i64,
    /// The day's event total after it: what the volume view shows from then on.
    pub events: i64,
    /// Of those, events that had arrived after their window was final.
    pub late_events: i64,
    /// Copies of events beyond the first (one event read from two partitions or sources,
    /// counted live or archived late by each) that the day's corrections so far counted once.
    pub duplicates_removed: i64,
    /// Late arrivals of the day the `late_arrivals` family had recorded when the check began.
    pub late_arrivals_seen: i64,
    /// Of those, the ones of tasks the correction took in (past the day).
    pub late_arrivals_counted: i64,
    /// Window rows the correction wrote (0 for a check without a correction).
    pub rows_written: u64,
    /// Tasks that wrote the day (or archived events of it) but may still write it: their live
    /// rows were left as they were, and the day is corrected again once they are past it.
    pub waiting_tasks: Vec<String>,
}

impl Endpoint {
    /// The newest check of every tenant and day starting in `[since, until)` (Unix s).
    pub async fn latest_checks(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Vec<CorrectionRecord>, ClickHouseError> {
        self.query(
                "SELECT tenant_id, day, max(checked_at_ms) AS last_checked, \
                 argMax(epoch, checked_at_ms) AS last_epoch, argMax(trigger, checked_at_ms) AS last_trigger, \
                 argMax(live_before, checked_at_ms) AS last_live_before, \
                 argMax(events, checked_at_ms) AS last_events, \
                 argMax(late_events, checked_at_ms) AS last_late_events, \
                 argMax(duplicates_removed, checked_at_ms) AS last_duplicates, \
                 argMax(late_arrivals_seen, checked_at_ms) AS last_arrivals_seen, \
                 argMax(late_arrivals_counted, checked_at_ms) AS last_arrivals_counted, \
                 argMax(rows_written, checked_at_ms) AS last_rows, \
                 argMax(waiting_tasks, checked_at_ms) AS last_waiting \
                 FROM corrections WHERE day >= toDate(toDateTime(?)) AND day < toDate(toDateTime(?)) \
                 GROUP BY tenant_id, day",
            )
            .bind(since.max(0))
            .bind(until.max(0))
            .fetch_all()
            .await
    }

    /// Records checks (and their corrections, if any), in one insert.
    pub async fn record_checks(&self, records: &[CorrectionRecord]) -> Result<(), ClickHouseError> {
        self.insert_rows::<CorrectionRecord>("corrections", records)
            .await
    }
}
