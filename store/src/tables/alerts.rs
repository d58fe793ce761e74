//! The `alerts` table: every firing and resolved notification the evaluator sent, whether its
//! webhooks took it, and what was firing when the evaluator stopped (so a restart neither
//! announces an alert twice nor forgets to resolve it).

use std::collections::BTreeMap;

use clickhouse::Row;
use salestalk_alerting::Notification;
use serde::{Deserialize, Serialize};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 4: every notification the evaluator sent, and whether its webhooks took it.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.alerts (\n\
         notified_at DateTime('UTC'),\n\
         notified_at_ms UInt64,\n\
         fingerprint String,\n\
         rule {low},\n\
         status {low},\n\
         severity {low},\n\
         signal {low},\n\
         labels String,\n\
         value Float64,\n\
         threshold Float64,\n\
         starts_at DateTime('UTC'),\n\
         ends_at DateTime('UTC'),\n\
         summary String,\n\
         delivered UInt8\n\
         ) ENGINE = MergeTree\n\
         ORDER BY (rule, fingerprint, notified_at_ms){}",
        ddl.ttl("notified_at", 90)
    )
}

/// One row of `alerts`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertRecord {
    /// When the notification was sent (Unix s).
    pub notified_at: u32,
    /// The same in ms, to order notifications within a second.
    pub notified_at_ms: u64,
    /// The alert's identity: rule and subject (see `Notification::fingerprint`).
    pub fingerprint: String,
    /// Rule name.
    pub rule: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// The rule's signal.
    pub signal: String,
    /// The subject's labels as a JSON object (`tenant_id`, `consumer`).
    pub labels: String,
    /// The last bad value.
    pub value: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// When the condition began (Unix s).
    pub starts_at: u32,
    /// When it was resolved (Unix s; 0 while firing).
    pub ends_at: u32,
    /// One line for people.
    pub summary: String,
    /// 1 when every webhook took the notification.
    pub delivered: u8,
}

impl AlertRecord {
    /// The row for `notification`, sent at `now_ms`.
    pub fn of(notification: &Notification, now_ms: u64, delivered: bool) -> Self {
        let seconds =
            |t: chrono::DateTime<chrono::Utc>| t.timestamp().clamp(0, u32::MAX.into()) as u32;
        Self {
            notified_at: (now_ms / 1000) as u32,
            notified_at_ms: now_ms,
            fingerprint: notification.fingerprint(),
            rule: notification.rule.clone(),
            status: notification.status.as_ref().to_string(),
            severity: notification.severity.as_ref().to_string(),
            signal: notification.signal.as_ref().to_string(),
            labels: serde_json::to_string(&notification.labels).unwrap_or_default(),
            value: notification.value,
            threshold: notification.threshold,
            starts_at: seconds(notification.starts_at),
            ends_at: notification.ends_at.map_or(0, seconds),
            summary: notification.summary(),
            delivered: u8::from(delivered),
        }
    }

    /// The subject's labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.labels).unwrap_or_default()
    }
}

impl Endpoint {
    /// Appends `records` to `alerts`.
    pub async fn record_alerts(&self, records: &[AlertRecord]) -> Result<(), ClickHouseError> {
        self.insert_rows::<AlertRecord>("alerts", records).await
    }

    /// The alerts whose latest notification is a firing one.
    pub async fn firing_alerts(&self) -> Result<Vec<AlertRecord>, ClickHouseError> {
        self.alert_query(
            "SELECT * FROM (SELECT * FROM alerts ORDER BY notified_at_ms DESC \
             LIMIT 1 BY fingerprint) WHERE status = 'firing' ORDER BY starts_at, rule",
            None,
        )
        .await
    }

    /// The latest `limit` notifications, newest first.
    pub async fn alert_history(&self, limit: u64) -> Result<Vec<AlertRecord>, ClickHouseError> {
        self.alert_query(
            "SELECT notified_at, notified_at_ms, fingerprint, rule, status, severity, signal, \
             labels, value, threshold, starts_at, ends_at, summary, delivered \
             FROM alerts ORDER BY notified_at_ms DESC LIMIT ?",
            Some(limit),
        )
        .await
    }

    async fn alert_query(
        &self,
        sql: &str,
        limit: Option<u64>,
    ) -> Result<Vec<AlertRecord>, ClickHouseError> {
        // DateTime columns are read as Unix seconds.
        let sql = format!(
            "SELECT toUInt32(notified_at) AS notified_at, notified_at_ms, fingerprint, \
             toString(rule) AS rule, toString(status) AS status, toString(severity) AS severity, \
             toString(signal) AS signal, labels, value, threshold, \
             toUInt32(starts_at) AS starts_at, toUInt32(ends_at) AS ends_at, summary, delivered \
             FROM ({sql})"
        );
        let mut query = self.query(&sql);
        if let Some(limit) = limit {
            query = query.bind(limit);
        }
        query.fetch_all().await
    }
}
