//! `events_raw`: the raw archive (90 days). Every valid event with its raw bytes and where it
//! was read, keyed by (tenant, eventId) so a replay's second copy merges away. The archive
//! sink writes a flush's events as [`ArchiveRow`]; a restore reads the ids a task counted
//! ([`Endpoint::counted_ids`]); replays and corrections read it in pages in (tenant, eventId)
//! order, each event once, its newest copy ([`ArchiveCursor`]); the corrector counts each
//! tenant's events of a day ([`Endpoint::archived_per_tenant`]).
//!
//! Adding a column: a step below, its line in `schema::migrations`, a field of [`ArchiveRow`]
//! and what fills it in [`ArchiveRow::new`].

use clickhouse::Row;
use salestalk_contracts::{EventId, EventType};
use salestalk_operators::dedup::CountedIds;
use salestalk_operators::flush::{ArchivedEvent, Flush};
use salestalk_operators::time::DAY_S;
use serde::{Deserialize, Serialize};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};
use salestalk_operators::time::datetime;

/// The table's name.
pub const TABLE: &str = "events_raw";

/// Migration 1: the table. Replacing by `durable_at_ms`: the newest copy of an event is the
/// one a merge keeps.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.events_raw (\n\
         tenant_id String,\n\
         event_id String,\n\
         event_type {low},\n\
         event_version String,\n\
         source {low},\n\
         timestamp DateTime('UTC'),\n\
         timestamp_ms Int64,\n\
         window_start DateTime('UTC'),\n\
         clock_skewed UInt8,\n\
         user_id String,\n\
         session_id String,\n\
         correlation_id String,\n\
         causation_id String,\n\
         topic {low},\n\
         partition Int32,\n\
         offset Int64,\n\
         broker_time DateTime('UTC'),\n\
         durable_at_ms UInt64,\n\
         raw String\n\
         ) ENGINE = ReplacingMergeTree(durable_at_ms)\n\
         PARTITION BY toYYYYMM(timestamp)\n\
         ORDER BY (tenant_id, event_id){}",
        ddl.ttl("timestamp", 90)
    )
}

/// Migration 15: whether the event came after its window was final (ADR 0016).
pub(crate) fn add_late(ddl: &Ddl<'_>) -> String {
    format!(
        "ALTER TABLE {}.events_raw ADD COLUMN late UInt8",
        ddl.database
    )
}

/// Migration 20: `metadata.traceId`, kept to follow an event into the tracing system.
pub(crate) fn add_trace_id(ddl: &Ddl<'_>) -> String {
    format!(
        "ALTER TABLE {}.events_raw ADD COLUMN trace_id String",
        ddl.database
    )
}

/// Migration 22: the fingerprint of each archived event's bytes, which a later copy of the
/// same `(tenant, eventId)` is compared with, also by a task restored from the archive (0 for
/// events archived before: unknown, never a conflict).
pub(crate) fn add_content_fingerprint(ddl: &Ddl<'_>) -> String {
    format!(
        "ALTER TABLE {}.events_raw ADD COLUMN content_fingerprint UInt32",
        ddl.database
    )
}

/// One row of `events_raw`, as the archive sink writes it.
#[derive(Debug, Clone, Row, Serialize)]
pub struct ArchiveRow<'a> {
    /// `tenantId`.
    pub tenant_id: &'a str,
    /// `eventId`.
    pub event_id: EventId,
    /// `eventType`.
    pub event_type: EventType,
    /// `eventVersion`.
    pub event_version: &'a str,
    /// `source`.
    pub source: &'a str,
    /// Event time (Unix s), what the table is partitioned and expired by.
    pub timestamp: u32,
    /// Event time, Unix ms, as stamped.
    pub timestamp_ms: i64,
    /// The minute window it was counted in (Unix s).
    pub window_start: u32,
    /// Whether its timestamp was not trusted.
    pub clock_skewed: u8,
    /// `userId`, or empty.
    pub user_id: &'a str,
    /// `sessionId`, or empty.
    pub session_id: &'a str,
    /// `metadata.correlationId`.
    pub correlation_id: &'a str,
    /// `metadata.causationId`, or empty.
    pub causation_id: String,
    /// `metadata.traceId`, or empty.
    pub trace_id: &'a str,
    /// The topic it was read from (a Kinesis shard's stored topic).
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Broker time (Unix s).
    pub broker_time: u32,
    /// When its flush was made durable (Unix ms): the newest copy wins a merge.
    pub durable_at_ms: u64,
    /// The event as it was published.
    pub raw: &'a serde_bytes::Bytes,
    /// Whether it came after its window was final.
    pub late: u8,
    /// The fingerprint of `raw` (`salestalk_operators::dedup::content_fingerprint`).
    pub content_fingerprint: u32,
}

impl<'a> ArchiveRow<'a> {
    /// The row of `event`, read by `flush`'s task and made durable at `durable_at_ms`.
    pub fn new(flush: &'a Flush, event: &'a ArchivedEvent, durable_at_ms: u64) -> Self {
        Self {
            tenant_id: &event.tenant_id,
            event_id: event.event_id,
            event_type: event.event_type,
            event_version: &event.event_version,
            source: &event.source,
            timestamp: datetime(event.timestamp_ms.div_euclid(1000)),
            timestamp_ms: event.timestamp_ms,
            window_start: datetime(event.window_start),
            clock_skewed: u8::from(event.clock_skewed),
            user_id: &event.user_id,
            session_id: &event.session_id,
            correlation_id: &event.correlation_id,
            causation_id: event
                .causation_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            trace_id: &event.trace_id,
            topic: &flush.topic,
            partition: flush.partition,
            offset: event.offset,
            broker_time: datetime(event.broker_ms.div_euclid(1000)),
            durable_at_ms,
            raw: serde_bytes::Bytes::new(&event.raw),
            late: u8::from(event.late),
            content_fingerprint: event.fingerprint,
        }
    }
}

/// Event ids a task counted below its checkpoint, each at the minute the live task remembered
/// it under: its window (the broker's minute for a clock-skewed event), not its stamp; with the
/// stamp, a restored task could forget a different minute under the dedup cap than the live
/// one did, and count a resend the live task caught. Binds: topic, partition, checkpoint
/// offset, earliest event time kept (Unix ms; its whole minute is kept, as the live task does).
pub const SEEN_QUERY: &str = "SELECT tenant_id, event_id, \
     toInt64(toUInt32(window_start)) * 1000 AS timestamp_ms, content_fingerprint FROM events_raw \
     WHERE topic = ? AND partition = ? AND offset < ? \
     AND toInt64(toUInt32(window_start)) >= intDiv(?, 60000) * 60";

#[derive(Debug, Row, Deserialize)]
struct SeenRow {
    tenant_id: String,
    event_id: EventId,
    timestamp_ms: i64,
    content_fingerprint: u32,
}

/// Which archived events to replay; an empty list or `None` does not narrow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySelection {
    /// These event ids only.
    pub event_ids: Vec<String>,
    /// These tenants only.
    pub tenants: Vec<String>,
    /// These event types only.
    pub event_types: Vec<String>,
    /// This correlation id only.
    pub correlation_id: Option<String>,
    /// Event time at or after (Unix s).
    pub since: Option<u32>,
    /// Event time before (Unix s).
    pub until: Option<u32>,
}

impl std::fmt::Display for ReplaySelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (name, list) in [
            ("event-id", &self.event_ids),
            ("tenant", &self.tenants),
            ("event-type", &self.event_types),
        ] {
            if !list.is_empty() {
                parts.push(format!("{name}={}", list.join(",")));
            }
        }
        if let Some(id) = &self.correlation_id {
            parts.push(format!("correlation-id={id}"));
        }
        if let Some(since) = self.since {
            parts.push(format!("since={since}"));
        }
        if let Some(until) = self.until {
            parts.push(format!("until={until}"));
        }
        if parts.is_empty() {
            f.write_str("everything archived")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// Ids (event and correlation) compare in lower case: a UUID is one id whatever the case it was
/// written in.
impl ReplaySelection {
    /// The selection a replay recorded as text ([`Display`](std::fmt::Display)'s form), or
    /// `None` for text that is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut selection = Self::default();
        if text == "everything archived" {
            return Some(selection);
        }
        let list = |value: &str| value.split(',').map(str::to_string).collect::<Vec<_>>();
        for part in text.split(' ') {
            let (name, value) = part.split_once('=')?;
            match name {
                "event-id" => selection.event_ids = list(value),
                "tenant" => selection.tenants = list(value),
                "event-type" => selection.event_types = list(value),
                "correlation-id" => selection.correlation_id = Some(value.to_string()),
                "since" => selection.since = Some(value.parse().ok()?),
                "until" => selection.until = Some(value.parse().ok()?),
                _ => return None,
            }
        }
        Some(selection)
    }

    /// Whether the archived `event` is in the selection (as [`SELECTION_SQL`] decides).
    pub fn selects(&self, event: &CorrelatedEvent) -> bool {
        let any_or =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        let ids = crate::query::lowercase(&self.event_ids);
        any_or(&ids, &event.event_id.to_lowercase())
            && any_or(&self.tenants, &event.tenant_id)
            && any_or(&self.event_types, &event.event_type)
            && self
                .correlation_id
                .as_ref()
                .is_none_or(|c| c.to_lowercase() == event.correlation_id.to_lowercase())
            && event.timestamp >= self.since.unwrap_or(0)
            && event.timestamp < self.until.unwrap_or(u32::MAX)
    }
}

/// One archived event of a correlation, as `salestalk trace` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize, serde::Serialize)]
pub struct CorrelatedEvent {
    /// Its tenant.
    pub tenant_id: String,
    /// Its id, as stored (lowercase).
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The service that emitted it.
    pub source: String,
    /// `metadata.correlationId` as written.
    pub correlation_id: String,
    /// Event time (Unix s).
    pub timestamp: u32,
    /// Whether it arrived after its window was final (counted by its day's correction).
    pub late: u8,
    /// Where it was read (the newest copy's): topic, partition, offset.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

const SELECTION_SQL: &str = "(empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), lower(event_id))) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), tenant_id)) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), event_type)) \
     AND (? = '' OR lower(correlation_id) = ?) \
     AND toUInt32(timestamp) >= ? AND toUInt32(timestamp) < ?";

fn bind_selection(mut query: crate::Query, selection: &ReplaySelection) -> crate::Query {
    let event_ids = crate::query::lowercase(&selection.event_ids);
    for list in [&event_ids, &selection.tenants, &selection.event_types] {
        query = query.bind(list).bind(list);
    }
    let correlation = selection
        .correlation_id
        .as_deref()
        .map(str::to_lowercase)
        .unwrap_or_default();
    query
        .bind(&correlation)
        .bind(&correlation)
        .bind(selection.since.unwrap_or(0))
        .bind(selection.until.unwrap_or(u32::MAX))
}

/// The columns of an [`ArchivedCopy`] after its tenant and id: the newest copy's. Aliases apart
/// from the columns: 18.16 would put the aggregates into the WHERE.
const NEWEST_COPY: &str = "argMax(topic, durable_at_ms) AS newest_topic, \
     argMax(partition, durable_at_ms) AS newest_partition, \
     toUInt32(argMax(broker_time, durable_at_ms)) AS newest_broker_time, \
     argMax(clock_skewed, durable_at_ms) AS newest_skewed, \
     argMax(late, durable_at_ms) AS newest_late, \
     argMax(raw, durable_at_ms) AS newest_raw";

/// A page of the archive in (tenant, eventId) order, each event once: `columns` after the
/// tenant and id, of the events meeting `condition`, after a (tenant, id) bound last.
fn page_sql(table: &str, columns: &str, condition: &str, limit: u64) -> String {
    format!(
        "SELECT tenant_id, event_id, {columns} FROM {table} \
         WHERE {condition} AND (tenant_id > ? OR (tenant_id = ? AND event_id > ?)) \
         GROUP BY tenant_id, event_id ORDER BY tenant_id, event_id LIMIT {limit}"
    )
}

/// Where paging through the archive in (tenant, eventId) order is: after this event, or at
/// the start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveCursor {
    /// The tenant of the last event read (empty at the start).
    tenant: String,
    /// The id of the last event read.
    event_id: Option<EventId>,
}

impl ArchiveCursor {
    /// Moves past `(tenant, event_id)`, the last event of a page.
    pub fn past(&mut self, tenant: &str, event_id: EventId) {
        tenant.clone_into(&mut self.tenant);
        self.event_id = Some(event_id);
    }

    /// The id bound: the table holds ids as their lowercase text, which every id sorts above
    /// the empty start.
    fn id_text(&self) -> String {
        self.event_id.map(|id| id.to_string()).unwrap_or_default()
    }
}

/// One archived event, as a replay sends it.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct ReplayedEvent {
    /// Its tenant (the key it is produced with).
    pub tenant_id: String,
    /// Its id.
    pub event_id: EventId,
    /// Its type (the topic it routes to).
    pub event_type: EventType,
    /// The event as it was published.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

/// One archived event with where and when it was read: what a recomputation feeds the
/// operators again.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct ArchivedCopy {
    /// Its tenant.
    pub tenant_id: String,
    /// Its id.
    pub event_id: EventId,
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Broker time (Unix s).
    pub broker_time: u32,
    /// Whether its timestamp was not trusted (too far ahead of the broker's).
    pub clock_skewed: u8,
    /// Whether it arrived after its window was final (counted by the correction of its day).
    pub late: u8,
    /// The event as it was published.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

#[derive(Debug, Row, Deserialize)]
struct TenantTotal {
    tenant_id: String,
    total: i64,
}

impl Endpoint {
    /// Every archived event whose `metadata.correlationId` is `correlation` (in either case),
    /// each once, by event time.
    pub async fn correlated_events(
        &self,
        correlation: &str,
    ) -> Result<Vec<CorrelatedEvent>, ClickHouseError> {
        self.query(&format!(
            "SELECT tenant_id, event_id, any(event_type) AS type, any(source) AS emitted_by, \
             any(correlation_id) AS correlation, toUInt32(min(timestamp)) AS at, \
             argMax(late, durable_at_ms) AS newest_late, argMax(topic, durable_at_ms) AS newest_topic, \
             argMax(partition, durable_at_ms) AS newest_partition, \
             argMax(offset, durable_at_ms) AS newest_offset \
             FROM {} WHERE lower(correlation_id) = ? \
             GROUP BY tenant_id, event_id ORDER BY at, tenant_id, event_id",
            self.everywhere(TABLE)
        ))
        .bind(correlation.to_lowercase())
        .fetch_all()
        .await
    }

    /// The ids the task of `topic`/`partition` counted below `next_offset` in windows from
    /// `horizon_start_ms` on (see [`SEEN_QUERY`]), taken from the answer one row at a time:
    /// a long horizon holds millions of ids, and a decoded row with its tenant's string takes
    /// about 90 bytes where [`CountedIds`] keeps 32.
    pub async fn counted_ids(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
        horizon_start_ms: i64,
    ) -> Result<CountedIds, ClickHouseError> {
        let mut seen = CountedIds::default();
        self.query(SEEN_QUERY)
            .bind(topic)
            .bind(partition)
            .bind(next_offset)
            .bind(horizon_start_ms)
            .for_each_row(|row: SeenRow| {
                seen.push(
                    &row.tenant_id,
                    row.event_id.0,
                    row.timestamp_ms,
                    row.content_fingerprint,
                )
            })
            .await?;
        Ok(seen)
    }

    /// How many archived events `selection` holds.
    pub async fn replay_count(&self, selection: &ReplaySelection) -> Result<u64, ClickHouseError> {
        let sql = format!(
            "SELECT toUInt64(count()) FROM (SELECT tenant_id, event_id FROM {} \
             WHERE {SELECTION_SQL} GROUP BY tenant_id, event_id)",
            self.everywhere(TABLE)
        );
        bind_selection(self.query(&sql), selection)
            .fetch_one()
            .await
    }

    /// Up to `limit` events of `selection` after `after`, in (tenant, event id) order, each
    /// once (its newest copy): a page of a replay.
    pub async fn replay_page(
        &self,
        selection: &ReplaySelection,
        after: &ArchiveCursor,
        limit: u64,
    ) -> Result<Vec<ReplayedEvent>, ClickHouseError> {
        let sql = page_sql(
            &self.everywhere(TABLE),
            "argMax(event_type, durable_at_ms) AS newest_type, \
             argMax(raw, durable_at_ms) AS newest_raw",
            SELECTION_SQL,
            limit,
        );
        self.fetch_page(bind_selection(self.query(&sql), selection), after)
            .await
    }

    /// [`Endpoint::replay_page`] with where each event was read (its newest copy's).
    pub async fn replay_copies(
        &self,
        selection: &ReplaySelection,
        after: &ArchiveCursor,
        limit: u64,
    ) -> Result<Vec<ArchivedCopy>, ClickHouseError> {
        let sql = page_sql(&self.everywhere(TABLE), NEWEST_COPY, SELECTION_SQL, limit);
        self.fetch_page(bind_selection(self.query(&sql), selection), after)
            .await
    }

    /// Up to `limit` archived events of `tenant` counted in the minute windows
    /// `[since, until)` (Unix s), after the event id `after`, each once (its newest copy,
    /// whichever partition it was read from): a page of a correction. The tenant leads the
    /// archive's key, so a page reads that tenant's rows only; an event's time is never before
    /// its window (a skewed one is counted at broker time, before its stamp), which leaves out
    /// the months before `since`.
    pub async fn archive_of_tenant(
        &self,
        tenant: &str,
        (since, until): (u32, u32),
        after: Option<EventId>,
        limit: u64,
    ) -> Result<Vec<ArchivedCopy>, ClickHouseError> {
        let sql = format!(
            "SELECT tenant_id, event_id, topic, partition, toUInt32(broker_time) AS read_at, \
             clock_skewed, late, raw FROM {} \
             WHERE tenant_id = ? AND event_id > ? AND timestamp >= toDateTime(?) \
             AND toUInt32(window_start) >= ? AND toUInt32(window_start) < ? \
             ORDER BY tenant_id, event_id, durable_at_ms DESC LIMIT 1 BY tenant_id, event_id \
             LIMIT {limit}",
            self.everywhere(TABLE)
        );
        self.query(&sql)
            .bind(tenant)
            .bind(after.map(|id| id.to_string()).unwrap_or_default())
            .bind(since)
            .bind(since)
            .bind(until)
            .fetch_all()
            .await
    }

    /// How many distinct events each tenant has in the archive counted in the day starting at
    /// `day` (Unix s): all of them, late ones included (a duplicate's copies are one event).
    pub async fn archived_per_tenant(
        &self,
        day: i64,
    ) -> Result<Vec<(String, i64)>, ClickHouseError> {
        let rows: Vec<TenantTotal> = self
            .query(&format!(
                "SELECT tenant_id, toInt64(uniqExact(event_id)) AS total FROM {} \
                 WHERE window_start >= toDateTime(?) AND window_start < toDateTime(?) \
                 GROUP BY tenant_id",
                self.everywhere(TABLE)
            ))
            .bind(day.max(0))
            .bind((day + DAY_S).max(0))
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(|r| (r.tenant_id, r.total)).collect())
    }

    /// The page of `query` (from [`page_sql`], its condition bound) after `after`.
    async fn fetch_page<T>(
        &self,
        query: crate::Query,
        after: &ArchiveCursor,
    ) -> Result<Vec<T>, ClickHouseError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        query
            .bind(&after.tenant)
            .bind(&after.tenant)
            .bind(after.id_text())
            .fetch_all()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_id: &str, correlation_id: &str, timestamp: u32) -> CorrelatedEvent {
        CorrelatedEvent {
            tenant_id: "tenant-a".into(),
            event_id: event_id.into(),
            event_type: "classification.performed.v1".into(),
            source: "chat-handler".into(),
            correlation_id: correlation_id.into(),
            timestamp,
            late: 0,
            topic: "t".into(),
            partition: 0,
            offset: 1,
        }
    }

    #[test]
    fn a_recorded_selection_reads_back_as_the_selection_it_was() {
        let selection = ReplaySelection {
            event_ids: vec!["AB".into(), "cd".into()],
            tenants: vec!["tenant-a".into()],
            event_types: vec!["classification.performed.v1".into()],
            correlation_id: Some("Corr-1".into()),
            since: Some(10),
            until: Some(20),
        };
        assert_eq!(
            ReplaySelection::parse(&selection.to_string()),
            Some(selection)
        );
        let everything = ReplaySelection::default();
        assert_eq!(
            ReplaySelection::parse(&everything.to_string()),
            Some(everything)
        );
        assert_eq!(ReplaySelection::parse("shard=7"), None);
    }

    #[test]
    fn a_selection_holds_the_events_its_query_would_read() {
        let selection = ReplaySelection {
            event_ids: vec!["AB".into()],
            correlation_id: Some("CORR-1".into()),
            since: Some(10),
            until: Some(20),
            ..ReplaySelection::default()
        };
        assert!(selection.selects(&event("ab", "corr-1", 10)));
        assert!(
            !selection.selects(&event("ab", "corr-1", 20)),
            "until is exclusive"
        );
        assert!(!selection.selects(&event("ab", "corr-2", 15)));
        assert!(!selection.selects(&event("cd", "corr-1", 15)));
        assert!(ReplaySelection::default().selects(&event("cd", "x", 0)));
    }
}
