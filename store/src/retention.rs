//! Retention on every server: rows expire within a day of their table's horizon
//! (`[retention]`), by trusted time (when the broker took the message, or the minute it was
//! measured in), never by the producer's stamp.
//!
//! ClickHouse 19.6+ expires rows itself (the tables' `TTL`, set from the settings at every
//! migrate); 18.16, which the project ships, has no TTL, so this job does it. The tables are
//! partitioned by month: a partition whose newest row is past the horizon is dropped whole (a
//! metadata operation, no rewrite); the expired rows of a month that also holds newer ones are
//! deleted (`ALTER ... DELETE`, which rewrites the parts it touches), once a day at most, since
//! the cutoff is the start of a UTC day. Both are idempotent, so the job is safe to run from
//! every instance, on a schedule or by hand (`salestalk retention`). The metrics never read
//! these tables (ADR 0004), so no view moves.

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

    /// Each table the job looks after, with its horizon in days: the outcome tables and the
    /// alerts' history are kept as long as the archive, what was done to dead letters as long
    /// as the dead letters.
    pub fn tables(&self) -> [(&'static str, u32); 9] {
        [
            ("events_raw", self.archive_days),
            ("dead_letters", self.dead_letter_days),
            ("dead_letter_actions", self.dead_letter_days),
            ("alerts", self.archive_days),
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

/// The tables retention looks after, each with the trusted time its rows expire by: when the
/// broker took the message (or the minute it was measured in), never the producer's stamp, so
/// an event stamped years ahead does not outlive its horizon.
const RETAINED: [(&str, &str); 9] = [
    ("events_raw", "broker_time"),
    ("dead_letters", "broker_time"),
    ("dead_letter_actions", "acted_at"),
    ("alerts", "notified_at"),
    ("sink_outcomes", "minute"),
    ("ingest_outcomes", "minute"),
    ("delivery_latency", "minute"),
    ("consumer_group_lag", "minute"),
    ("consumer_failures", "minute"),
];

/// Partitions of one table of this database whose newest row is before a time. Binds: table,
/// cutoff (Unix s). `max_time` is the partition key column's newest value in a part. A
/// partition a row delete emptied is left alone (its part says 1970; nothing is in it).
const EXPIRED_QUERY: &str = "SELECT table, partition, toUInt32(max(max_time)) AS newest, \
     sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts \
     WHERE active AND database = currentDatabase() AND table = ? \
     GROUP BY table, partition HAVING newest < ? AND rows > 0 ORDER BY partition";

/// Rows of one table past its horizon inside partitions that also hold newer rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredRows {
    /// The table.
    pub table: &'static str,
    /// Rows older than `cutoff` by the table's trusted time.
    pub rows: u64,
    /// The start of the UTC day before which rows expire (Unix s).
    pub cutoff: i64,
}

/// The start of the UTC day holding `now_s - days`: rows before it are past the horizon. A
/// day-aligned cutoff moves once a day, so the row deletes run at most daily per table, and
/// a row goes at most a day after its horizon.
pub fn expiry_cutoff(days: u32, now_s: i64) -> i64 {
    (now_s - i64::from(days) * 86_400).div_euclid(86_400) * 86_400
}

/// On a server with TTL, the statements that make each retained table expire its rows by its
/// trusted time after the configured days (run at every migrate, so a changed setting
/// reaches the server; the creation statements' TTLs are only where the tables start). None
/// on 18.16: the job above does it there.
pub fn ttl_statements(
    profile: &crate::ServerProfile,
    database: &str,
    settings: &RetentionSettings,
) -> Vec<String> {
    if !profile.ttl {
        return Vec::new();
    }
    settings
        .tables()
        .into_iter()
        .filter_map(|(table, days)| {
            let (table, column) = trusted_time(table)?;
            Some(format!(
                "ALTER TABLE {database}.{table} MODIFY TTL {column} + INTERVAL {days} DAY"
            ))
        })
        .collect()
}

impl Endpoint {
    /// Runs [`ttl_statements`] (nothing on a server without TTL), on each shard's writer
    /// when there are several (a replicated table's ALTER reaches its own shard only).
    pub async fn apply_retention_ttl(
        &self,
        profile: &crate::ServerProfile,
        settings: &RetentionSettings,
    ) -> Result<(), ClickHouseError> {
        for statement in ttl_statements(profile, &self.database, settings) {
            for writer in self.shard_writers() {
                writer.query(&statement).execute().await?;
            }
        }
        Ok(())
    }
}

/// The trusted time column of a table retention looks after.
fn trusted_time(table: &str) -> Option<(&'static str, &'static str)> {
    RETAINED.into_iter().find(|(t, _)| *t == table)
}

/// How long a row delete is waited for before the job goes on (it still completes).
const MUTATION_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

impl Endpoint {
    /// The partitions of `table` whose newest row is more than `days` before `now_s`. The
    /// archive is partitioned by event time, so its candidates are also checked by broker
    /// time (a late event in an old month keeps that month): one read of one partition each.
    pub async fn expired_partitions(
        &self,
        table: &str,
        days: u32,
        now_s: i64,
    ) -> Result<Vec<ExpiredPartition>, ClickHouseError> {
        let cutoff = (now_s - i64::from(days) * 86_400).clamp(0, i64::from(u32::MAX));
        let candidates: Vec<ExpiredPartition> = self
            .query(EXPIRED_QUERY)
            .bind(table)
            .bind(cutoff as u32)
            .fetch_all()
            .await?;
        // An unpartitioned table (`dead_letter_actions`, `alerts`) has one partition whose
        // parts say 1970: its rows expire by the row delete, never by a drop.
        let candidates = candidates.into_iter().filter(|c| is_month(&c.partition));
        if table != "events_raw" {
            return Ok(candidates.collect());
        }
        let mut expired = Vec::new();
        for mut candidate in candidates {
            if !is_month(&candidate.partition) {
                continue;
            }
            let newest: u32 = self
                .query(&format!(
                    "SELECT toUInt32(max(broker_time)) FROM events_raw \
                     WHERE toYYYYMM(timestamp) = {}",
                    candidate.partition
                ))
                .fetch_one()
                .await?;
            if i64::from(newest) < cutoff {
                candidate.newest = newest;
                expired.push(candidate);
            }
        }
        Ok(expired)
    }

    /// Drops `expired` (a no-op when it is already gone).
    pub async fn drop_partition(&self, expired: &ExpiredPartition) -> Result<(), ClickHouseError> {
        // The value is spliced into the statement: only a partition of the month keys we made.
        let table = trusted_time(&expired.table).map(|(table, _)| table);
        let (Some(table), true) = (table, is_month(&expired.partition)) else {
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

    /// Rows of `table` (one retention looks after) older than `cutoff` by its trusted time.
    pub async fn expired_rows(&self, table: &str, cutoff: i64) -> Result<u64, ClickHouseError> {
        let (table, column) = retained(table)?;
        self.query(&format!(
            "SELECT count() FROM {table} WHERE {column} < toDateTime({})",
            cutoff.clamp(0, i64::from(u32::MAX))
        ))
        .fetch_one()
        .await
    }

    /// Deletes the rows of `table` older than `cutoff` by its trusted time, and waits (up to
    /// five minutes) for ClickHouse to finish. On 18.16, which has no TTL, this is what keeps
    /// a month partition's rows from outliving the horizon by up to a month; it rewrites the
    /// affected parts, which is why it runs at most once a day (see [`expiry_cutoff`]).
    pub async fn delete_expired_rows(
        &self,
        table: &str,
        cutoff: i64,
    ) -> Result<(), ClickHouseError> {
        let (table, column) = retained(table)?;
        self.query(&format!(
            "ALTER TABLE {table} DELETE WHERE {column} < toDateTime({})",
            cutoff.clamp(0, i64::from(u32::MAX))
        ))
        .execute()
        .await?;
        let started = std::time::Instant::now();
        loop {
            let running: u64 = self
                .query(
                    "SELECT count() FROM system.mutations WHERE database = currentDatabase() \
                     AND table = ? AND is_done = 0",
                )
                .bind(table)
                .fetch_one()
                .await?;
            if running == 0 || started.elapsed() > MUTATION_WAIT {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// The table and its trusted time column, or a refusal for any other table.
fn retained(table: &str) -> Result<(&'static str, &'static str), ClickHouseError> {
    trusted_time(table).ok_or_else(|| {
        ClickHouseError::NotSent(format!("'{table}' is not a table retention looks after"))
    })
}

/// Whether `partition` is a month key we made (digits only): it is spliced into statements.
fn is_month(partition: &str) -> bool {
    !partition.is_empty() && partition.len() <= 10 && partition.bytes().all(|b| b.is_ascii_digit())
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
    fn ttl_follows_the_settings_and_trusted_time_on_servers_that_have_it() {
        use crate::{ServerProfile, Version};
        let old = ServerProfile::for_version(Version::parse("18.16.1").expect("a version"));
        assert!(ttl_statements(&old, "db", &defaults()).is_empty());
        let modern = ServerProfile::for_version(Version::parse("26.9.2").expect("a version"));
        let statements = ttl_statements(
            &modern,
            "db",
            &RetentionSettings {
                archive_days: 30,
                ..defaults()
            },
        );
        assert_eq!(statements.len(), RETAINED.len());
        assert!(statements.contains(
            &"ALTER TABLE db.events_raw MODIFY TTL broker_time + INTERVAL 30 DAY".to_string()
        ));
        assert!(statements.contains(
            &"ALTER TABLE db.dead_letters MODIFY TTL broker_time + INTERVAL 14 DAY".to_string()
        ));
    }

    #[test]
    fn the_cutoff_is_the_start_of_the_day_of_the_horizon() {
        let day = 86_400;
        let now = 1_800_000_000; // 2027-01-15 08:00 UTC
        let cutoff = expiry_cutoff(90, now);
        assert_eq!(cutoff % day, 0);
        assert!(cutoff <= now - 90 * day && cutoff > now - 91 * day);
        // A row a day past the horizon is before it, a row a day inside after it.
        assert!(now - 91 * day < cutoff && now - 89 * day > cutoff);
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
