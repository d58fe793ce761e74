//! Reading and resolving the dead-letter queue: what `salestalk dlq` lists, shows, redrives
//! and discards. Entries are the `dead_letter_queue` view (one row per source message, with
//! its status); resolving one appends to `dead_letter_actions`, never changes `dead_letters`.

use clickhouse::Row;
use salestalk_operators::DeadLetterAddress;
use serde::{Deserialize, Serialize};

use crate::endpoint::{ClickHouseError, Endpoint};

/// Which entries to act on; empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqFilter {
    /// Entry ids, `topic/partition/offset`.
    pub ids: Vec<String>,
    /// Topics the entries are addressed to (a delivery's: its target's topic).
    pub topics: Vec<String>,
    /// Reasons (`not_json`, `schema_violation`, ...).
    pub reasons: Vec<String>,
    /// Tenants.
    pub tenants: Vec<String>,
    /// Event types.
    pub event_types: Vec<String>,
    /// Event ids, in either letter case.
    pub event_ids: Vec<String>,
    /// Correlation ids (`metadata.correlationId`), in either letter case.
    pub correlation_ids: Vec<String>,
    /// Read by the pipeline at or after this (Unix s).
    pub since: Option<u32>,
    /// Read by the pipeline before this (Unix s).
    pub until: Option<u32>,
    /// `pending`, `answered` (refused at ingest: the publisher was told), `redriven`,
    /// `discarded`, `backfilled`, `unresolved` (pending or answered), or `None` for any.
    pub status: Option<String>,
    /// Most entries returned.
    pub limit: u64,
}

impl DlqFilter {
    /// Whether the filter narrows anything down (discard refuses to act on everything).
    pub fn is_narrowed(&self) -> bool {
        !(self.ids.is_empty()
            && self.topics.is_empty()
            && self.reasons.is_empty()
            && self.tenants.is_empty()
            && self.event_types.is_empty()
            && self.event_ids.is_empty()
            && self.correlation_ids.is_empty()
            && self.since.is_none()
            && self.until.is_none())
    }
}

/// One dead letter with its status.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DlqEntry {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// When the pipeline read it (broker time, Unix s).
    pub broker_time: u32,
    /// The reason.
    pub reason: String,
    /// The error text.
    pub error: String,
    /// Tenant, when readable.
    pub tenant_id: String,
    /// Event type, when readable.
    pub event_type: String,
    /// Event id, when readable.
    pub event_id: String,
    /// Correlation id (`metadata.correlationId`), when readable.
    pub correlation_id: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// First failure (Unix s).
    pub first_failure: u32,
    /// Last failure (Unix s).
    pub last_failure: u32,
    /// Size of the raw message.
    pub bytes: u64,
    /// `pending`, `answered` (refused at ingest), `redriven`, `discarded` or `backfilled`.
    pub status: String,
    /// When it was redriven or discarded (Unix s; 0 while pending).
    pub resolved_at: u32,
}

impl DlqEntry {
    /// Where it is filed.
    pub fn address(&self) -> DeadLetterAddress {
        DeadLetterAddress::stored(&self.topic, self.partition, self.offset)
    }

    /// The entry's id, `topic/partition/offset`.
    pub fn id(&self) -> String {
        self.address().to_string()
    }
}

/// The condition a [`DlqFilter`] stands for; binds in [`bind_filter`]'s order.
const FILTER_SQL: &str = "(empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), \
     concat(topic, '/', toString(partition), '/', toString(offset)))) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), topic)) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), reason)) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), tenant_id)) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), event_type)) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), lower(event_id))) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), lower(correlation_id))) \
     AND toUInt32(broker_time) >= ? AND toUInt32(broker_time) < ? \
     AND (? = '' OR status = ? OR (? = 'unresolved' AND status IN ('pending', 'answered')))";

fn bind_filter(mut query: crate::Query, filter: &DlqFilter) -> crate::Query {
    for list in [
        &filter.ids,
        &filter.topics,
        &filter.reasons,
        &filter.tenants,
        &filter.event_types,
    ] {
        query = query.bind(list).bind(list);
    }
    // Ids compare in lower case: a UUID is one id whatever the case it was written in.
    for ids in [&filter.event_ids, &filter.correlation_ids] {
        let lower = crate::query::lowercase(ids);
        query = query.bind(&lower).bind(&lower);
    }
    let status = filter.status.clone().unwrap_or_default();
    query
        .bind(filter.since.unwrap_or(0))
        .bind(filter.until.unwrap_or(u32::MAX))
        .bind(&status)
        .bind(&status)
        .bind(&status)
}

impl Endpoint {
    /// Dead letters neither redriven nor discarded.
    pub async fn dlq_depth(&self) -> Result<u64, ClickHouseError> {
        self.query("SELECT toUInt64(sum(entries)) FROM dlq_depth")
            .fetch_one()
            .await
    }

    /// Entries matching `filter`, oldest first.
    pub async fn dlq_entries(&self, filter: &DlqFilter) -> Result<Vec<DlqEntry>, ClickHouseError> {
        let sql = format!(
            "SELECT topic, partition, offset, toUInt32(broker_time) AS broker_time, reason, error, \
             tenant_id, event_type, event_id, correlation_id, attempts, \
             toUInt32(first_failure) AS first_failure, \
             toUInt32(last_failure) AS last_failure, bytes, status, \
             toUInt32(resolved_at) AS resolved_at \
             FROM dead_letter_queue WHERE {FILTER_SQL} \
             ORDER BY broker_time, topic, partition, offset LIMIT {}",
            filter.limit
        );
        bind_filter(self.query(&sql), filter).fetch_all().await
    }

    /// Records `action` (`redriven` or `discarded`) for `entries` at `now_ms`.
    pub async fn dlq_resolve(
        &self,
        entries: &[DlqEntry],
        action: &str,
        note: &str,
        now_ms: u64,
    ) -> Result<(), ClickHouseError> {
        let addresses: Vec<(&str, i32, i64)> = entries
            .iter()
            .map(|entry| (entry.topic.as_str(), entry.partition, entry.offset))
            .collect();
        self.dlq_mark(&addresses, action, note, now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_sql_has_one_bind_per_placeholder() {
        let binds = 7 * 2 + 2 + 3;
        assert_eq!(FILTER_SQL.matches('?').count(), binds);
    }

    #[test]
    fn an_empty_filter_is_not_narrowed() {
        assert!(!DlqFilter::default().is_narrowed());
        let by_reason = DlqFilter {
            reasons: vec!["late".into()],
            ..DlqFilter::default()
        };
        assert!(by_reason.is_narrowed());
    }
}
