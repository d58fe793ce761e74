//! The `alert_outbox` table: alert notifications a webhook has not taken yet, retried with
//! backoff until delivered or expired, across restarts of `serve` (at least once). One row
//! per notification and webhook; a newer version of the row (`version`) records each attempt.
//! A webhook is named by the SHA-256 of its URL, never the URL: URLs often carry tokens.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 17: notifications a webhook has not taken yet; a newer `version` records each attempt.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.alert_outbox (\n\
         notification String,\n\
         target String,\n\
         rule {low},\n\
         body String,\n\
         created_ms UInt64,\n\
         attempts UInt32,\n\
         next_attempt_ms UInt64,\n\
         state {low},\n\
         last_error String,\n\
         version UInt64\n\
         ) ENGINE = ReplacingMergeTree(version)\n\
         ORDER BY (notification, target)"
    )
}

/// Where an undelivered notification stands.
pub mod state {
    /// Still to be delivered.
    pub const PENDING: &str = "pending";
    /// The webhook took it.
    pub const DELIVERED: &str = "delivered";
    /// Given up: past its expiry, refused for good, or its webhook is no longer configured.
    pub const ABANDONED: &str = "abandoned";
}

/// One version of an outbox row.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The notification: its fingerprint, status and when it was first sent.
    pub notification: String,
    /// The webhook: [`target_key`] of its URL.
    pub target: String,
    /// The rule, for people reading the table.
    pub rule: String,
    /// The request body to send, as first built.
    pub body: String,
    /// When the notification was first sent (Unix ms).
    pub created_ms: u64,
    /// Attempts so far.
    pub attempts: u32,
    /// When to try again (Unix ms).
    pub next_attempt_ms: u64,
    /// [`state`]: pending, delivered or abandoned.
    pub state: String,
    /// The last error, redacted (no URL path or query).
    pub last_error: String,
    /// This version's time (Unix ms; the newest version of a row counts).
    pub version: u64,
}

/// The name a webhook URL is stored under: its SHA-256, hex.
pub fn target_key(url: &str) -> String {
    Sha256::digest(url.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Endpoint {
    /// Writes `entries` (new rows, or newer versions of rows).
    pub async fn write_outbox(&self, entries: &[OutboxEntry]) -> Result<(), ClickHouseError> {
        self.insert_rows::<OutboxEntry>("alert_outbox", entries)
            .await
    }

    /// At most `limit` pending rows due by `now_ms`, oldest first (each row's newest version).
    pub async fn due_outbox(
        &self,
        now_ms: u64,
        limit: u64,
    ) -> Result<Vec<OutboxEntry>, ClickHouseError> {
        self.query(
            "SELECT notification, target, rule, body, created_ms, attempts, next_attempt_ms, \
                 state, last_error, version FROM (SELECT * FROM alert_outbox \
                 ORDER BY version DESC LIMIT 1 BY notification, target) \
                 WHERE state = ? AND next_attempt_ms <= ? ORDER BY created_ms LIMIT ?",
        )
        .bind(state::PENDING)
        .bind(now_ms)
        .bind(limit)
        .fetch_all()
        .await
    }
}
