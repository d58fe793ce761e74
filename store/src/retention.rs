//! Retention on every server: drops the archive's and the dead letters' partitions whose
//! newest row is past their horizon.
//!
//! ClickHouse 19.6+ expires rows itself (the tables' `TTL`, set at creation); 18.16, which the
//! project ships, has no TTL, so without this the archive's 90 days and the dead letters' 14
//! days would never expire. Both tables are partitioned by month of their event or broker
//! time, so a partition goes once its newest row is older than the horizon: rows are kept at
//! least the horizon and at most the horizon plus a month. Dropping a partition is a metadata
//! operation (no rewrite, unlike `ALTER ... DELETE`), and dropping one already gone does
//! nothing, so the job is safe to run from every instance, on a schedule or by hand
//! (`salestalk retention`). The metrics never read these tables (ADR 0004), so no view moves.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::endpoint::{ClickHouseError, Endpoint};

/// `[retention]`: how long the raw archive and the dead letters are kept, and how often the
/// job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days a raw archived event is kept (`events_raw`, by event time).
    pub archive_days: u32,
    /// Days a dead letter is kept (`dead_letters`, by broker time).
    pub dead_letter_days: u32,
    /// How often `salestalk run` enforces retention, ms; 0: never (run `salestalk retention`
    /// from a scheduler instead).
    pub interval_ms: u64,
}

/// Longest horizon accepted, in days (ten years).
const MAX_DAYS: u32 = 3_650;

impl RetentionSettings {
    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, days) in [
            ("retention.archive_days", self.archive_days),
            ("retention.dead_letter_days", self.dead_letter_days),
        ] {
            if !(1..=MAX_DAYS).contains(&days) {
                problems.push(format!("{key}: {days} is outside 1..={MAX_DAYS}"));
            }
        }
        if self.interval_ms != 0 && self.interval_ms < 60_000 {
            problems.push(format!(
                "retention.interval_ms: {} is below 60000 (a minute); 0 turns the schedule off",
                self.interval_ms
            ));
        }
        problems
    }

    /// Each table the job looks after, with its horizon in days (the delivery outcomes are
    /// and the gateway's outcomes are kept as long as the archive).
    pub fn tables(&self) -> [(&'static str, u32); 7] {
        [
            ("events_raw", self.archive_days),
            ("dead_letters", self.dead_letter_days),
            ("sink_outcomes", self.archive_days),
            ("ingest_outcomes", self.archive_days),
            ("delivery_latency", self.archive_days),
            ("consumer_group_lag", self.archive_days),
            ("consumer_failures", self.archive_days),
        ]
    }
}

/// A partition whose newest row is past its table's horizon.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct ExpiredPartition {
    /// The table.
    pub table: String,
    /// The partition's value (`toYYYYMM`: digits only).
    pub partition: String,
    /// Its newest row's time (Unix s).
    pub newest: u32,
    /// Rows in it.
    pub rows: u64,
    /// Bytes it takes on disk.
    pub bytes: u64,
}

/// Partitions of one table of this database whose newest row is before a time. Binds: table,
/// cutoff (Unix s). `max_time` is the partition key column's newest value in a part.
/// The tables retention looks after: the only ones it drops partitions of.
const RETAINED_TABLES: [&str; 7] = [
    "events_raw",
    "dead_letters",
    "sink_outcomes",
    "ingest_outcomes",
    "delivery_latency",
    "consumer_group_lag",
    "consumer_failures",
];

const EXPIRED_QUERY: &str = "SELECT table, partition, toUInt32(max(max_time)) AS newest, \
     sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts \
     WHERE active AND database = currentDatabase() AND table = ? \
     GROUP BY table, partition HAVING newest < ? ORDER BY partition";

impl Endpoint {
    /// The partitions of `table` whose newest row is more than `days` before `now_s`.
    pub async fn expired_partitions(
        &self,
        table: &str,
        days: u32,
        now_s: i64,
    ) -> Result<Vec<ExpiredPartition>, ClickHouseError> {
        let cutoff = (now_s - i64::from(days) * 86_400).clamp(0, i64::from(u32::MAX));
        self.query(EXPIRED_QUERY)
            .bind(table)
            .bind(cutoff as u32)
            .fetch_all()
            .await
    }

    /// Drops `expired` (a no-op when it is already gone).
    pub async fn drop_partition(&self, expired: &ExpiredPartition) -> Result<(), ClickHouseError> {
        // The value is spliced into the statement: only a partition of the month keys we made.
        let numeric = !expired.partition.is_empty()
            && expired.partition.len() <= 10
            && expired.partition.bytes().all(|b| b.is_ascii_digit());
        let table = RETAINED_TABLES.into_iter().find(|t| *t == expired.table);
        let (Some(table), true) = (table, numeric) else {
            return Err(ClickHouseError::NotSent(format!(
                "dropping partition '{}' of '{}': not a month partition of a table retention \
                 looks after",
                expired.partition, expired.table
            )));
        };
        self.query(&format!(
            "ALTER TABLE {table} DROP PARTITION {}",
            expired.partition
        ))
        .execute()
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> RetentionSettings {
        RetentionSettings {
            archive_days: 90,
            dead_letter_days: 14,
            interval_ms: 3_600_000,
        }
    }

    #[test]
    fn every_problem_is_named() {
        assert!(defaults().problems().is_empty());
        let bad = RetentionSettings {
            archive_days: 0,
            dead_letter_days: 100_000,
            interval_ms: 5,
        };
        let problems = bad.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("retention.archive_days"));
        assert!(problems[1].starts_with("retention.dead_letter_days"));
        assert!(problems[2].starts_with("retention.interval_ms"));
        let off = RetentionSettings {
            interval_ms: 0,
            ..defaults()
        };
        assert!(off.problems().is_empty(), "0 turns the schedule off");
    }

    #[test]
    fn only_month_partitions_of_the_two_tables_are_dropped() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // Never reached: the refusal comes first.
        let endpoint = Endpoint::new("http://127.0.0.1:1", "salestalk");
        for (table, partition) in [
            ("events_raw", "202511; DROP TABLE x"),
            ("window_state", "202511"),
            ("dead_letters", ""),
        ] {
            let expired = ExpiredPartition {
                table: table.into(),
                partition: partition.into(),
                newest: 0,
                rows: 1,
                bytes: 1,
            };
            let error = runtime
                .block_on(endpoint.drop_partition(&expired))
                .expect_err("refused");
            assert!(!error.is_retryable(), "{error}");
        }
    }
}
