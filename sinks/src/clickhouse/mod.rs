//! ClickHouse: connection settings, the server probe, and typed errors.

pub mod alert_history;
pub mod billing;
pub mod dead_letter_queue;
mod profile;
pub mod raw_query;
pub mod restore;
pub mod schema;
pub mod signals;
pub mod writer;

pub use profile::{ServerProfile, Version};

use clickhouse::{Client, Row};
use serde::Deserialize;

/// Latency percentiles of one consumer.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct LatencyPercentiles {
    /// The consumer.
    pub consumer: String,
    /// Events measured.
    pub events: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP URL of the server.
    pub url: String,
    /// Database holding the pipeline's tables.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// Failures talking to ClickHouse.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// The server could not be reached or did not answer in time: try again later.
    #[error("ClickHouse at {url} is unavailable: {source}")]
    Unavailable {
        /// The endpoint.
        url: String,
        /// The client's error.
        source: clickhouse::error::Error,
    },
    /// The server answered with an error that goes away by itself (too many parts, memory
    /// or query limits, timeouts): try again later.
    #[error("ClickHouse is busy: {0}")]
    Busy(clickhouse::error::Error),
    /// The server answered with an error: retrying the same request will not help.
    #[error("ClickHouse rejected the request: {0}")]
    Rejected(clickhouse::error::Error),
    /// Rows were refused (by [`Endpoint::write_flushes`], which does not isolate them).
    #[error("ClickHouse refused rows: {0}")]
    Refused(String),
    /// The server's version string could not be understood.
    #[error("unrecognised ClickHouse version '{0}'")]
    UnknownVersion(String),
}

impl ClickHouseError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Busy(_))
    }

    /// Sorts a client error: no answer is unavailability, an answer is judged by its code.
    pub(crate) fn classify(url: &str, error: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error;
        match error {
            Error::BadResponse(ref text) => match server_code(text) {
                Some(code) if TRANSIENT_CODES.contains(&code) => Self::Busy(error),
                _ => Self::Rejected(error),
            },
            Error::Network(_) | Error::TimedOut => Self::Unavailable {
                url: url.to_string(),
                source: error,
            },
            // Everything else is about the request itself (encoding, schema, parameters).
            other => Self::Rejected(other),
        }
    }
}

impl crate::retry::Transient for ClickHouseError {
    fn is_retryable(&self) -> bool {
        ClickHouseError::is_retryable(self)
    }
}

/// Server error codes that go away by themselves (from ClickHouse's `ErrorCodes.cpp`):
/// timeouts (159 TIMEOUT_EXCEEDED, 209 SOCKET_TIMEOUT, 210 NETWORK_ERROR), load
/// (202 TOO_MANY_SIMULTANEOUS_QUERIES, 203 NO_FREE_CONNECTION, 241 MEMORY_LIMIT_EXCEEDED,
/// 252 TOO_MANY_PARTS), replication and shutdown (242 TABLE_IS_READ_ONLY,
/// 279 ALL_CONNECTION_TRIES_FAILED, 319 UNKNOWN_STATUS_OF_INSERT, 394 QUERY_WAS_CANCELLED,
/// 425 SYSTEM_ERROR, 999 KEEPER_EXCEPTION).
const TRANSIENT_CODES: [u32; 13] = [
    159, 202, 203, 209, 210, 241, 242, 252, 279, 319, 394, 425, 999,
];

/// ClickHouse's error code for adding a column that exists.
const DUPLICATE_COLUMN: u32 = 44;

/// The `Code: N` a ClickHouse error message starts with, if any.
fn server_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

impl Endpoint {
    /// Whether the server answers at all (`SELECT 1`), for telling an outage from a refusal.
    pub async fn ping(&self) -> Result<(), ClickHouseError> {
        self.server_client()
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(|_| ())
            .map_err(|e| ClickHouseError::classify(&self.url, e))
    }

    /// A client for the server, without a database selected.
    ///
    /// Validation is off because its probing sends a setting ClickHouse 18.16 rejects
    /// (`describe_include_subcolumns`); our row types are checked by our own tests instead.
    pub fn server_client(&self) -> Client {
        Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            .with_validation(false)
    }

    /// A client using the pipeline's database.
    pub fn client(&self) -> Client {
        self.server_client().with_database(&self.database)
    }

    /// Asks the server its version and derives what it supports.
    pub async fn probe(&self) -> Result<ServerProfile, ClickHouseError> {
        let version: String = self
            .server_client()
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(|e| ClickHouseError::classify(&self.url, e))?;
        let parsed = Version::parse(&version).ok_or(ClickHouseError::UnknownVersion(version))?;
        Ok(ServerProfile::for_version(parsed))
    }

    /// Applies the migrations this server has not seen yet, in order, recreates the views,
    /// and returns how many migrations were applied.
    pub async fn migrate(&self, profile: &ServerProfile) -> Result<usize, ClickHouseError> {
        self.ensure_database().await?;
        let client = self.client();
        let classify = |e| ClickHouseError::classify(&self.url, e);
        client
            .query(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version",
            )
            .execute()
            .await
            .map_err(classify)?;
        let applied: Vec<u32> = client
            .query("SELECT DISTINCT version FROM schema_migrations")
            .fetch_all()
            .await
            .map_err(classify)?;
        let mut count = 0;
        for migration in schema::migrations(profile, &self.database) {
            if applied.contains(&migration.version) {
                continue;
            }
            for statement in &migration.statements {
                match client.query(statement).execute().await.map_err(classify) {
                    // A migration interrupted after adding a column left it there; servers
                    // before 19.x have no `ADD COLUMN IF NOT EXISTS`.
                    Err(ClickHouseError::Rejected(clickhouse::error::Error::BadResponse(text)))
                        if statement.contains(" ADD COLUMN ")
                            && server_code(&text) == Some(DUPLICATE_COLUMN) => {}
                    other => other?,
                }
            }
            client
                .query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())")
                .bind(migration.version)
                .bind(migration.name)
                .execute()
                .await
                .map_err(classify)?;
            count += 1;
        }
        self.ensure_views().await?;
        Ok(count)
    }

    /// Recreates the public views when their definitions changed since the last start. Not on
    /// every start: between a view's DROP and CREATE, readers (dashboards, alerts, another
    /// instance starting) see it missing. Two processes that start together on a new
    /// definition may still collide; the loser retries and then finds the work done.
    async fn ensure_views(&self) -> Result<(), ClickHouseError> {
        let client = self.client();
        let classify = |e| ClickHouseError::classify(&self.url, e);
        client
            .query(
                "CREATE TABLE IF NOT EXISTS schema_views \
                 (fingerprint String, applied_at_ms UInt64) ENGINE = MergeTree ORDER BY applied_at_ms",
            )
            .execute()
            .await
            .map_err(classify)?;
        let statements = schema::views(&self.database);
        let fingerprint = fnv1a(statements.join(";\n").as_bytes());
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let current: Vec<String> = client
                .query("SELECT fingerprint FROM schema_views ORDER BY applied_at_ms DESC LIMIT 1")
                .fetch_all()
                .await
                .map_err(classify)?;
            if current.first() == Some(&fingerprint) {
                return Ok(());
            }
            let mut created = Ok(());
            for statement in &statements {
                created = client.query(statement).execute().await.map_err(classify);
                if created.is_err() {
                    break;
                }
            }
            match created {
                Ok(()) => {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    return client
                        .query(
                            "INSERT INTO schema_views (fingerprint, applied_at_ms) VALUES (?, ?)",
                        )
                        .bind(&fingerprint)
                        .bind(now_ms)
                        .execute()
                        .await
                        .map_err(classify);
                }
                Err(_) if attempt < ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt)))
                        .await;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// P50/P95/P99 latency per consumer over the last `seconds`, for the given tenants and
    /// event types (all when empty): histograms merged first, percentiles read last.
    pub async fn latency_percentiles(
        &self,
        seconds: u64,
        tenants: &[String],
        event_types: &[String],
    ) -> Result<Vec<LatencyPercentiles>, ClickHouseError> {
        let filter = "window_start >= now() - toIntervalSecond(?) \
                      AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), tenant_id)) \
                      AND (empty(CAST(? AS Array(String))) OR has(CAST(? AS Array(String)), event_type))";
        let sql = format!(
            "SELECT consumer, toUInt64(events) AS events, p50_ms, p95_ms, p99_ms FROM ({})",
            schema::latency_percentiles_query(&self.database, filter)
        );
        self.client()
            .query(&sql)
            .bind(seconds)
            .bind(tenants)
            .bind(tenants)
            .bind(event_types)
            .bind(event_types)
            .fetch_all()
            .await
            .map_err(|e| ClickHouseError::classify(&self.url, e))
    }

    /// Dead letters neither redriven nor discarded.
    pub async fn dlq_depth(&self) -> Result<u64, ClickHouseError> {
        self.client()
            .query("SELECT toUInt64(sum(entries)) FROM dlq_depth")
            .fetch_one()
            .await
            .map_err(|e| ClickHouseError::classify(&self.url, e))
    }

    /// Creates the pipeline's database if it does not exist.
    pub async fn ensure_database(&self) -> Result<(), ClickHouseError> {
        let statement = format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database);
        self.server_client()
            .query(&statement)
            .execute()
            .await
            .map_err(|e| ClickHouseError::classify(&self.url, e))
    }
}

/// FNV-1a, 64 bits, in hex: a fingerprint stable across builds and Rust versions.
fn fnv1a(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(text: &str) -> ClickHouseError {
        ClickHouseError::classify("u", clickhouse::error::Error::BadResponse(text.into()))
    }

    #[test]
    fn server_errors_are_judged_by_their_code() {
        let busy = classified("Code: 252, e.displayText() = DB::Exception: Too many parts (300)");
        assert!(matches!(busy, ClickHouseError::Busy(_)) && busy.is_retryable());
        let refused =
            classified("Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf'");
        assert!(matches!(refused, ClickHouseError::Rejected(_)) && !refused.is_retryable());
        assert!(!classified("no code at all").is_retryable());
        assert_eq!(
            server_code("Code: 60. DB::Exception: Table x doesn't exist"),
            Some(60)
        );
        assert_eq!(server_code("Code: "), None);
    }

    #[test]
    fn no_answer_is_unavailability_and_a_bad_request_is_permanent() {
        let timed_out = ClickHouseError::classify("u", clickhouse::error::Error::TimedOut);
        assert!(timed_out.is_retryable());
        let custom = ClickHouseError::classify("u", clickhouse::error::Error::Custom("x".into()));
        assert!(!custom.is_retryable());
    }
}
