//! `event_versions`: each supported event version's lifecycle as configured
//! (`[[contracts.versions]]`), written by `salestalk run` and `serve` at start-up so the SRE
//! page and the `deprecated_version_events` alert read the same registry the tasks enforce.
//! The newest write wins per event type (an instance started with another configuration
//! rewrites it: the last one started is what the page shows).

use clickhouse::Row;
use serde::Serialize;

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 21: one row per event type, the newest kept.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.event_versions (\n\
         event_type String,\n\
         status String,\n\
         ends Date,\n\
         successor String,\n\
         recorded_at_ms UInt64\n\
         ) ENGINE = ReplacingMergeTree(recorded_at_ms)\n\
         ORDER BY event_type"
    )
}

/// The registry as the views read it: per event type, its newest row (`ends` is
/// `1970-01-01` for a current version).
pub const CURRENT_SQL: &str = "SELECT event_type, argMax(status, recorded_at_ms) AS status, \
     argMax(ends, recorded_at_ms) AS ends, argMax(successor, recorded_at_ms) AS successor \
     FROM event_versions GROUP BY event_type";

/// One event version's lifecycle.
#[derive(Debug, Clone, Row, Serialize)]
pub struct EventVersionRow {
    /// The versioned event type.
    pub event_type: String,
    /// `current` or `deprecated`.
    pub status: String,
    /// The first day it is refused (days since 1970; 0 when current).
    pub ends: u16,
    /// The version its producers move to.
    pub successor: String,
    /// When this was written (Unix ms): the newest wins.
    pub recorded_at_ms: u64,
}

impl Endpoint {
    /// Records the registry.
    pub async fn record_event_versions(
        &self,
        rows: &[EventVersionRow],
    ) -> Result<(), ClickHouseError> {
        self.insert_rows::<EventVersionRow>("event_versions", rows)
            .await
    }
}
