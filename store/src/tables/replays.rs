//! The record of every replay (`replays`: who, what, where to, when, how many), which
//! `salestalk replay list` shows. What a replay reads, the archive's pages, is
//! `tables::events_raw`.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 9: every replay from the archive; a later record of an id replaces it.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.replays (\n\
         replay_id String,\n\
         who String,\n\
         selection String,\n\
         target String,\n\
         dry_run UInt8,\n\
         selected UInt64,\n\
         sent UInt64,\n\
         started_at DateTime('UTC'),\n\
         finished_at DateTime('UTC')\n\
         ) ENGINE = ReplacingMergeTree(finished_at)\n\
         ORDER BY replay_id"
    )
}

/// One replay, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct ReplayRecord {
    /// Its id.
    pub replay_id: String,
    /// Who ran it (the operating-system user).
    pub who: String,
    /// The selection, as text.
    pub selection: String,
    /// Where to (`topic:NAME`).
    pub target: String,
    /// Whether it only counted.
    pub dry_run: u8,
    /// Events it selected.
    pub selected: u64,
    /// Events it sent.
    pub sent: u64,
    /// When it started (Unix s).
    pub started_at: u32,
    /// When it ended (Unix s).
    pub finished_at: u32,
}

impl Endpoint {
    /// Records `replay` (a later record of the same id replaces it).
    pub async fn record_replay(&self, replay: &ReplayRecord) -> Result<(), ClickHouseError> {
        self.insert_rows::<ReplayRecord>("replays", std::slice::from_ref(replay))
            .await
    }

    /// The last `limit` replays, newest first.
    pub async fn replays(&self, limit: u64) -> Result<Vec<ReplayRecord>, ClickHouseError> {
        self.query(&format!(
                // Aliases apart from the columns (18.16 would nest the aggregates).
                "SELECT replay_id, argMax(who, finished_at) AS who_, \
                 argMax(selection, finished_at) AS selection_, argMax(target, finished_at) AS target_, \
                 argMax(dry_run, finished_at) AS dry_run_, max(selected) AS selected_, \
                 max(sent) AS sent_, min(started_at) AS started_, max(finished_at) AS finished_ \
                 FROM replays GROUP BY replay_id ORDER BY started_ DESC, replay_id DESC LIMIT {limit}"
            ))
            .fetch_all()
            .await
    }
}
