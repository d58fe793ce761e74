//! One module per ClickHouse table: its migration steps, its one row type, its insert and its
//! queries. `schema` only orders the steps and builds the views over the tables.

pub mod alert_outbox;
pub mod alerts;
pub mod api_keys;
pub mod consumer_failures;
pub mod consumer_group_lag;
pub mod corrections;
pub mod dead_letter_actions;
pub mod dead_letters;
pub mod delivery_latency;
pub mod event_versions;
pub mod events_raw;
pub mod ingest_outcomes;
pub mod replays;
pub mod sink_outcomes;
pub mod task_claims;
pub mod task_lineage;
pub mod window_state;

use crate::profile::ServerProfile;

/// What a table's DDL depends on: the database and what the server supports.
#[derive(Debug, Clone, Copy)]
pub struct Ddl<'a> {
    /// The pipeline's database.
    pub database: &'a str,
    /// The column type of a repeated string: `LowCardinality(String)` where supported.
    pub low: &'static str,
    /// Whether the server expires rows by a `TTL` clause.
    ttl: bool,
}

impl<'a> Ddl<'a> {
    /// The DDL of `database` on a server with `profile`.
    pub fn new(profile: &ServerProfile, database: &'a str) -> Self {
        Self {
            database,
            low: if profile.low_cardinality {
                "LowCardinality(String)"
            } else {
                "String"
            },
            ttl: profile.ttl,
        }
    }

    /// The clause keeping rows `days` after `column` (none where the server has no TTL:
    /// `store::retention` drops their partitions instead).
    pub fn ttl(&self, column: &str, days: u32) -> String {
        if self.ttl {
            format!("\nTTL {column} + INTERVAL {days} DAY")
        } else {
            String::new()
        }
    }
}
