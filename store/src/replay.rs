//! Replaying from the raw archive (`events_raw`, 90 days): which archived events a selection
//! holds, read in pages in (tenant, eventId) order (each event once, its newest copy), and the
//! record of every replay (`replays`: who, what, where to, when, how many), which
//! `salestalk replay list` shows.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::endpoint::{ClickHouseError, Endpoint};

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

const SELECTION_SQL: &str = "(empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), event_id)) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), tenant_id)) \
     AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), event_type)) \
     AND (? = '' OR correlation_id = ?) \
     AND toUInt32(timestamp) >= ? AND toUInt32(timestamp) < ?";

fn bind_selection(mut query: crate::Query, selection: &ReplaySelection) -> crate::Query {
    for list in [
        &selection.event_ids,
        &selection.tenants,
        &selection.event_types,
    ] {
        query = query.bind(list).bind(list);
    }
    let correlation = selection.correlation_id.clone().unwrap_or_default();
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
fn page_sql(columns: &str, condition: &str, limit: u64) -> String {
    format!(
        "SELECT tenant_id, event_id, {columns} FROM events_raw \
         WHERE {condition} AND (tenant_id > ? OR (tenant_id = ? AND event_id > ?)) \
         GROUP BY tenant_id, event_id ORDER BY tenant_id, event_id LIMIT {limit}"
    )
}

/// One archived event, as a replay sends it (the archive's own row is
/// `salestalk_operators::flush::ArchivedEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct ReplayedEvent {
    /// Its tenant (the key it is produced with).
    pub tenant_id: String,
    /// Its id.
    pub event_id: String,
    /// Its type (the topic it routes to).
    pub event_type: String,
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
    pub event_id: String,
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
    /// How many archived events `selection` holds.
    pub async fn replay_count(&self, selection: &ReplaySelection) -> Result<u64, ClickHouseError> {
        let sql = format!(
            "SELECT toUInt64(count()) FROM (SELECT tenant_id, event_id FROM events_raw \
             WHERE {SELECTION_SQL} GROUP BY tenant_id, event_id)"
        );
        bind_selection(self.query(&sql), selection)
            .fetch_one()
            .await
    }

    /// Up to `limit` events of `selection` after `after` (tenant, event id), in that order,
    /// each once (its newest copy): a page of a replay.
    pub async fn replay_page(
        &self,
        selection: &ReplaySelection,
        after: (&str, &str),
        limit: u64,
    ) -> Result<Vec<ReplayedEvent>, ClickHouseError> {
        let sql = page_sql(
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
        after: (&str, &str),
        limit: u64,
    ) -> Result<Vec<ArchivedCopy>, ClickHouseError> {
        let sql = page_sql(NEWEST_COPY, SELECTION_SQL, limit);
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
        after: &str,
        limit: u64,
    ) -> Result<Vec<ArchivedCopy>, ClickHouseError> {
        // Each (tenant, id) once, its newest copy; ordered by the key, which leads with the
        // tenant, so the page reads that tenant's rows only.
        let sql = format!(
            "SELECT tenant_id, event_id, topic, partition, toUInt32(broker_time) AS read_at, \
             clock_skewed, late, raw FROM events_raw \
             WHERE tenant_id = ? AND event_id > ? AND timestamp >= toDateTime(?) \
             AND toUInt32(window_start) >= ? AND toUInt32(window_start) < ? \
             ORDER BY tenant_id, event_id, durable_at_ms DESC LIMIT 1 BY tenant_id, event_id \
             LIMIT {limit}"
        );
        self.query(&sql)
            .bind(tenant)
            .bind(after)
            .bind(since)
            .bind(since)
            .bind(until)
            .fetch_all()
            .await
    }

    /// The page of `query` (from [`page_sql`], its condition bound) after `after`.
    async fn fetch_page<T>(
        &self,
        query: crate::Query,
        after: (&str, &str),
    ) -> Result<Vec<T>, ClickHouseError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        query
            .bind(after.0)
            .bind(after.0)
            .bind(after.1)
            .fetch_all()
            .await
    }

    /// The highest epoch any window row carries.
    pub async fn max_epoch(&self) -> Result<u64, ClickHouseError> {
        self.query("SELECT max(epoch) FROM window_state")
            .fetch_one()
            .await
    }

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
