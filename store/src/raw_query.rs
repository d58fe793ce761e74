//! Running a query whose SQL is text from elsewhere (a dashboard panel with its macros
//! expanded) and handing back ClickHouse's own JSON: column names and types, then rows.

use crate::endpoint::{ClickHouseError, Endpoint};

/// Lets ClickHouse push a query's time filter into the views' inner `GROUP BY` (on by default
/// in modern servers; off in 18.x, where a one-day panel over a month of data read the whole
/// month: 0.7 s instead of 30 s, see docs/performance.md).
pub const PUSH_FILTERS_INTO_VIEWS: (&str, &str) = ("enable_optimize_predicate_expression", "1");

/// Most memory one panel query may use. A 30-day SRE dashboard over a month of 1M events a
/// day made ClickHouse 18.16 grow to 24 GB and be killed by the kernel; with a cap, the panel
/// fails with "memory limit exceeded" and the server stays up for everyone else.
pub const MAX_QUERY_MEMORY_BYTES: u64 = 4 << 30;

impl Endpoint {
    /// Runs `sql` as it is and returns ClickHouse's `JSONCompact` document (`meta`, `data`,
    /// `rows`), with 64-bit integers as numbers.
    pub async fn query_json(&self, sql: &str) -> Result<serde_json::Value, ClickHouseError> {
        // The client reads `?` as a bind placeholder and `??` as a literal question mark.
        let sql = sql.replace('?', "??");
        let bytes = self
            .query(&sql)
            .with_setting("output_format_json_quote_64bit_integers", "0")
            .with_setting(PUSH_FILTERS_INTO_VIEWS.0, PUSH_FILTERS_INTO_VIEWS.1)
            .with_setting("max_memory_usage", MAX_QUERY_MEMORY_BYTES.to_string())
            .fetch_bytes("JSONCompact")
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClickHouseError::Refused(format!("ClickHouse answered with something not JSON: {e}"))
        })
    }
}
