//! Where and as whom to connect to ClickHouse, and how its failures are sorted into
//! retryable and permanent.

use std::collections::BTreeMap;

use clickhouse::{Client, Compression};

use crate::profile::{ServerProfile, Version};
use crate::tls::{SharedTransport, read_ca_file};

/// Bounds on a query run for a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Longest a query may run, seconds.
    pub max_execution_s: u64,
    /// Most rows a result may hold.
    pub max_result_rows: u64,
}

/// Where and as whom to connect: the `[clickhouse]` settings.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Endpoint {
    /// HTTP URL of the server.
    pub url: String,
    /// Database holding the pipeline's tables.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// ClickHouse settings sent with every query and insert (`[clickhouse.settings]`), for
    /// example `log_queries = "1"` to see the pipeline's inserts in `system.query_log`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// How inserts travel to the server (`clickhouse.compression`).
    #[serde(default)]
    pub compression: InsertCompression,
    /// A PEM file of CA certificates to trust for an `https://` URL besides the system's
    /// (`clickhouse.ca_file`; empty: the system's only).
    #[serde(default)]
    pub ca_file: String,
    /// The replicated cluster the tables live on (`clickhouse.cluster`, ADR 0015); empty for
    /// one server.
    #[serde(default)]
    pub cluster: String,
    /// Each shard's writer, in the cluster's shard order (`clickhouse.shard_urls`, ADR 0022):
    /// a task's facts go to its home shard's writer. Empty: one shard, written at `url`.
    #[serde(default)]
    pub shard_urls: Vec<String>,
    /// The HTTP clients, shared by clones (their connections are reused).
    #[serde(skip)]
    pub transport: SharedTransport,
}

/// How inserts travel to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsertCompression {
    /// LZ4 blocks: a third of the bytes on the wire, for about a tenth of the pipeline's CPU
    /// (docs/performance.md).
    #[default]
    Lz4,
    /// As they are: for a server on the same host or rack, where CPU costs more than bytes.
    None,
}

/// Most entries `[clickhouse.settings]` may have; each goes into every request's URL.
const MAX_SETTINGS: usize = 32;
/// URL parameters of the HTTP interface that are not settings.
const HTTP_PARAMETERS: [&str; 5] = ["user", "password", "database", "query", "query_id"];
/// Longest value of one setting, in bytes.
const MAX_SETTING_VALUE: usize = 256;

impl Endpoint {
    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let host = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"));
        if !host.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/')) {
            problems.push(format!(
                "clickhouse.url: '{}' is not an http:// or https:// URL",
                self.url
            ));
        }
        if !self.ca_file.is_empty() {
            if !self.url.starts_with("https://") {
                problems.push(format!(
                    "clickhouse.ca_file: set, but clickhouse.url '{}' is not https://",
                    self.url
                ));
            }
            if let Err(problem) = read_ca_file(&self.ca_file) {
                problems.push(format!("clickhouse.ca_file: {problem}"));
            }
        }
        if !is_identifier(&self.database) {
            problems.push(format!(
                "clickhouse.database: '{}' is not an identifier ([A-Za-z_][A-Za-z0-9_]*)",
                self.database
            ));
        }
        if !self.cluster.is_empty() && !is_identifier(&self.cluster) {
            problems.push(format!(
                "clickhouse.cluster: '{}' is not a cluster name ([A-Za-z_][A-Za-z0-9_]*)",
                self.cluster
            ));
        }
        if !self.shard_urls.is_empty() && self.cluster.is_empty() {
            problems.push(
                "clickhouse.shard_urls: set, but clickhouse.cluster is empty (shards are a cluster's)"
                    .to_string(),
            );
        }
        for (index, url) in self.shard_urls.iter().enumerate() {
            let https = url.starts_with("https://");
            if !(url.starts_with("http://") || https) || url.len() <= "https://".len() {
                problems.push(format!(
                    "clickhouse.shard_urls[{index}]: '{url}' is not an http:// or https:// URL"
                ));
            } else if https != self.url.starts_with("https://") {
                problems.push(format!(
                    "clickhouse.shard_urls[{index}]: '{url}' and clickhouse.url must both be \
                     https:// or both http://"
                ));
            }
        }
        if self.settings.len() > MAX_SETTINGS {
            problems.push(format!(
                "clickhouse.settings: {} entries, at most {MAX_SETTINGS}",
                self.settings.len()
            ));
        }
        for (name, value) in &self.settings {
            let mut bytes = name.bytes();
            let setting_name = bytes
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !setting_name {
                problems.push(format!(
                    "clickhouse.settings.{name}: not a setting name ([a-z_][a-z0-9_]*)"
                ));
            } else if HTTP_PARAMETERS.contains(&name.as_str()) {
                // These are the HTTP interface's own parameters, and a password here would be
                // printed wherever the settings are.
                problems.push(format!(
                    "clickhouse.settings.{name}: not a setting; use clickhouse.{name}"
                ));
            }
            if value.len() > MAX_SETTING_VALUE || value.chars().any(char::is_control) {
                problems.push(format!(
                    "clickhouse.settings.{name}: the value must be at most \
                     {MAX_SETTING_VALUE} bytes without control characters"
                ));
            }
        }
        problems
    }
}

/// Whether `name` is a plain SQL identifier (`[A-Za-z_][A-Za-z0-9_]*`): names the
/// statements interpolate (the database, the cluster) are checked to be one at start-up.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Debug output never shows the password (settings are logged and printed in errors).
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("settings", &self.settings)
            .field("compression", &self.compression)
            .field("ca_file", &self.ca_file)
            .field("cluster", &self.cluster)
            .field("shard_urls", &self.shard_urls)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
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
    /// Rows were refused (by a write that does not isolate them).
    #[error("ClickHouse refused rows: {0}")]
    Refused(String),
    /// The server's version string could not be understood.
    #[error("unrecognised ClickHouse version '{0}'")]
    UnknownVersion(String),
    /// Other writers raced this one for the same thing (a task's generation) every time it
    /// tried: try again later.
    #[error("contended: {0}")]
    Contended(String),
    /// A request this client will not send: it failed a check before reaching the server.
    #[error("not sent to ClickHouse: {0}")]
    NotSent(String),
}

impl ClickHouseError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Busy(_) | Self::Contended(_)
        )
    }

    /// Sorts a client error: no answer is unavailability, an answer is judged by its code.
    pub fn classify(url: &str, error: clickhouse::error::Error) -> Self {
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
pub(crate) const DUPLICATE_COLUMN: u32 = 44;
/// ClickHouse's error code for a table that does not exist.
pub(crate) const UNKNOWN_TABLE: u32 = 60;
/// ClickHouse's error code for a database that does not exist.
pub(crate) const UNKNOWN_DATABASE: u32 = 81;

/// The `Code: N` a ClickHouse error message starts with, if any.
pub(crate) fn server_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

impl Endpoint {
    /// The server at `url` as user `default` without a password, `database` selected, every
    /// other setting at its default: for tools and tests that do not read the configuration.
    pub fn new(url: &str, database: &str) -> Self {
        Self {
            url: url.to_string(),
            database: database.to_string(),
            user: "default".to_string(),
            password: String::new(),
            settings: BTreeMap::new(),
            compression: InsertCompression::default(),
            ca_file: String::new(),
            cluster: String::new(),
            shard_urls: Vec::new(),
            transport: SharedTransport::default(),
        }
    }

    /// Whether the server answers at all (`SELECT 1`), for telling an outage from a refusal.
    pub async fn ping(&self) -> Result<(), ClickHouseError> {
        self.server_query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(|_| ())
    }

    /// A client for the server, without a database selected.
    ///
    /// Validation is off because its probing sends a setting ClickHouse 18.16 rejects
    /// (`describe_include_subcolumns`); our row types are checked by our own tests instead.
    pub fn server_client(&self) -> Client {
        let base = if self.url.starts_with("https://") {
            // A CA file that cannot be read is reported at start-up (`problems`), before any
            // request; a plain client then refuses the https URL rather than trusting less.
            self.transport
                .https(&self.ca_file)
                .unwrap_or_else(|_| self.transport.plain())
        } else {
            self.transport.plain()
        };
        let client = base
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            .with_validation(false)
            .with_compression(match self.compression {
                InsertCompression::Lz4 => Compression::Lz4,
                InsertCompression::None => Compression::None,
            });
        // Replicated tables drop an insert whose block equals an earlier one, taking it for a
        // retry; two flushes can legitimately write equal blocks (the same counts in a summing
        // table's minute), so the cluster keeps every insert, as one server does (ADR 0015).
        let client = if self.cluster.is_empty() {
            client
        } else {
            client.with_setting("insert_deduplicate", "0")
        };
        self.settings.iter().fold(client, |client, (name, value)| {
            client.with_setting(name, value)
        })
    }

    /// This endpoint for queries run on behalf of readers (`serve`'s panels, billing export,
    /// lag): the server refuses any write or DDL (`readonly = 2`: settings may still be set,
    /// not `readonly` itself), stops a query after `limits.max_execution_s` and one returning
    /// more than `limits.max_result_rows` rows, and (on servers that have the setting, 24+)
    /// cancels a query whose HTTP client went away.
    pub fn for_readers(&self, limits: &ReaderLimits, profile: &ServerProfile) -> Endpoint {
        let mut reading = self.clone();
        let settings = &mut reading.settings;
        settings.insert("readonly".into(), "2".into());
        settings.insert(
            "max_execution_time".into(),
            limits.max_execution_s.to_string(),
        );
        settings.insert("max_result_rows".into(), limits.max_result_rows.to_string());
        settings.insert("result_overflow_mode".into(), "throw".into());
        if profile.is_modern() {
            settings.insert(
                "cancel_http_readonly_queries_on_client_close".into(),
                "1".into(),
            );
        }
        reading
    }

    /// A client using the pipeline's database.
    pub fn client(&self) -> Client {
        self.server_client().with_database(&self.database)
    }

    /// Asks the server its version and derives what it supports.
    pub async fn probe(&self) -> Result<ServerProfile, ClickHouseError> {
        let version: String = self.server_query("SELECT version()").fetch_one().await?;
        let parsed = Version::parse(&version).ok_or(ClickHouseError::UnknownVersion(version))?;
        Ok(ServerProfile::for_version(parsed))
    }

    /// Creates the pipeline's database if it does not exist.
    pub async fn ensure_database(&self) -> Result<(), ClickHouseError> {
        let mut statement = format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database);
        if !self.cluster.is_empty() {
            statement.push_str(&format!(" ON CLUSTER {}", self.cluster));
        }
        self.server_query(&statement).execute().await
    }
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
    fn shard_urls_need_a_cluster_and_urls_of_the_url_s_scheme() {
        let endpoint = Endpoint {
            shard_urls: vec![
                "http://a:8123".into(),
                "ftp://b".into(),
                "https://c:8443".into(),
            ],
            ..Endpoint::new("http://a:8123", "db")
        };
        let problems = endpoint.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("clickhouse.shard_urls: set, but clickhouse.cluster"));
        assert!(problems[1].starts_with("clickhouse.shard_urls[1]: 'ftp://b'"));
        assert!(problems[2].starts_with("clickhouse.shard_urls[2]: 'https://c:8443'"));
        let fine = Endpoint {
            cluster: "salestalk".into(),
            shard_urls: vec!["http://a:8123".into(), "http://b:8123".into()],
            ..Endpoint::new("http://a:8123", "db")
        };
        assert!(fine.problems().is_empty(), "{:?}", fine.problems());
    }

    #[test]
    fn no_answer_is_unavailability_and_a_bad_request_is_permanent() {
        let timed_out = ClickHouseError::classify("u", clickhouse::error::Error::TimedOut);
        assert!(timed_out.is_retryable());
        let custom = ClickHouseError::classify("u", clickhouse::error::Error::Custom("x".into()));
        assert!(!custom.is_retryable());
    }
}
