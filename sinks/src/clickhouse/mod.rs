//! ClickHouse: connection settings, the server probe, and typed errors.

mod profile;
pub mod restore;
pub mod schema;
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
    /// The server answered with an error: retrying the same request will not help.
    #[error("ClickHouse rejected the request: {0}")]
    Rejected(clickhouse::error::Error),
    /// The server's version string could not be understood.
    #[error("unrecognised ClickHouse version '{0}'")]
    UnknownVersion(String),
}

impl ClickHouseError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    fn classify(url: &str, error: clickhouse::error::Error) -> Self {
        match error {
            clickhouse::error::Error::BadResponse(_) => Self::Rejected(error),
            other => Self::Unavailable {
                url: url.to_string(),
                source: other,
            },
        }
    }
}

impl Endpoint {
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
                client.query(statement).execute().await.map_err(classify)?;
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
        for statement in schema::views(&self.database) {
            client.query(&statement).execute().await.map_err(classify)?;
        }
        Ok(count)
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
