//! `dead_letter_actions`: what was done about a dead letter (`redriven`, `discarded`,
//! `backfilled`), appended and never changed; the newest action of an address is its status
//! in the `dead_letter_queue` view.

use clickhouse::Row;
use serde::Serialize;

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// The table's name.
pub const TABLE: &str = "dead_letter_actions";

/// Migration 3: the table.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.dead_letter_actions (\n\
         topic {low},\n\
         partition Int32,\n\
         offset Int64,\n\
         action {low},\n\
         acted_at DateTime('UTC'),\n\
         acted_at_ms UInt64,\n\
         note String\n\
         ) ENGINE = ReplacingMergeTree(acted_at_ms)\n\
         ORDER BY (topic, partition, offset){}",
        ddl.ttl("acted_at", 14)
    )
}

/// One row of `dead_letter_actions`.
#[derive(Debug, Row, Serialize)]
struct ActionRow<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    action: &'a str,
    acted_at: u32,
    acted_at_ms: u64,
    note: &'a str,
}

impl Endpoint {
    /// Records `action` for the dead letters at `addresses` (topic, partition, offset).
    pub async fn dlq_mark(
        &self,
        addresses: &[(&str, i32, i64)],
        action: &str,
        note: &str,
        now_ms: u64,
    ) -> Result<(), ClickHouseError> {
        let rows: Vec<ActionRow<'_>> = addresses
            .iter()
            .map(|&(topic, partition, offset)| ActionRow {
                topic,
                partition,
                offset,
                action,
                acted_at: (now_ms / 1000) as u32,
                acted_at_ms: now_ms,
                note,
            })
            .collect();
        self.insert_rows::<ActionRow<'_>>(TABLE, &rows).await
    }
}
