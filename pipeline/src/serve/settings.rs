//! `[serve]`: where `salestalk serve` listens and how it bounds what readers ask.

/// `[serve]`: where `salestalk serve` listens (dashboards and active alerts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// Where it listens, e.g. `127.0.0.1:8080`.
    listen: String,
    /// How long a verified reader or admin key is trusted before ClickHouse is asked again,
    /// ms (a revocation takes at most this long to reach a running `serve`).
    pub key_cache_ms: u64,
    /// Longest a panel or billing query may run in ClickHouse, ms (whole seconds).
    pub query_timeout_ms: u64,
    /// Most rows a panel or billing query may return.
    pub max_result_rows: u64,
    /// Requests one key may make a second, sustained and in one burst, past which it is
    /// answered 429.
    pub key_requests_per_second: u32,
}

impl ServeSettings {
    /// The address (checked at start-up; an unparsable one is reported there).
    pub fn listen(&self) -> std::io::Result<std::net::SocketAddr> {
        salestalk_http::server::listen_address(&self.listen)
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(salestalk_http::server::listen_problem(
            "serve.listen",
            &self.listen,
            "127.0.0.1:8080",
        ));
        if self.key_cache_ms > 300_000 {
            out.push(format!(
                "serve.key_cache_ms: {} is over 300000 (a revocation would take that long)",
                self.key_cache_ms
            ));
        }
        if !(1_000..=600_000).contains(&self.query_timeout_ms) {
            out.push(format!(
                "serve.query_timeout_ms: {} is outside 1000..=600000",
                self.query_timeout_ms
            ));
        }
        if !(1_000..=100_000_000).contains(&self.max_result_rows) {
            out.push(format!(
                "serve.max_result_rows: {} is outside 1000..=100000000",
                self.max_result_rows
            ));
        }
        if self.key_requests_per_second == 0 {
            out.push("serve.key_requests_per_second must be at least 1".into());
        }
        out
    }

    /// The bounds on queries run for readers.
    pub fn reader_limits(&self) -> salestalk_store::ReaderLimits {
        salestalk_store::ReaderLimits {
            max_execution_s: self.query_timeout_ms.div_ceil(1_000),
            max_result_rows: self.max_result_rows,
        }
    }
}
