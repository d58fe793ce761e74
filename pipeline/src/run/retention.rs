//! The retention job: drops the expired partitions of the archive, the dead letters and the
//! outcome tables, and deletes their expired rows (`salestalk_store::retention`) every `retention.interval_ms` while `salestalk run` runs, and
//! once with `salestalk retention`. Every run is logged and counted on `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use salestalk_store::retention::{ExpiredPartition, ExpiredRows, RetentionSettings, expiry_cutoff};
use salestalk_store::{ClickHouseError, Endpoint};

use crate::telemetry::{OutcomeLabels, TableLabels, Telemetry};

/// What one run found past the horizon (and, unless it was a dry run, removed).
#[derive(Debug, Default)]
pub struct Expired {
    /// Whole partitions past the horizon, dropped.
    pub partitions: Vec<ExpiredPartition>,
    /// Expired rows of partitions that also hold newer ones, deleted.
    pub rows: Vec<ExpiredRows>,
}

/// Drops (or with `dry_run` only lists) every expired partition as of `now_s`, then deletes
/// the expired rows left in partitions that also hold newer ones. `checked` remembers each
/// table's cutoff once its rows were dealt with, so a schedule reads each table for expired
/// rows once a day, not every run. On several shards each shard's writer is dealt with in
/// turn (ADR 0022); a replicated table passes the change to the other replicas of its shard.
pub async fn enforce(
    endpoint: &Endpoint,
    settings: &RetentionSettings,
    now_s: i64,
    dry_run: bool,
    checked: &mut BTreeMap<&'static str, i64>,
) -> Result<Expired, ClickHouseError> {
    let mut expired = Expired::default();
    let writers = endpoint.shard_writers();
    for (table, days) in settings.tables() {
        for writer in &writers {
            expire_partitions(writer, table, days, now_s, dry_run, &mut expired).await?;
        }
        let cutoff = expiry_cutoff(days, now_s);
        if checked.get(table) == Some(&cutoff) {
            continue;
        }
        for writer in &writers {
            let rows = writer.expired_rows(table, cutoff).await?;
            if rows > 0 {
                if !dry_run {
                    writer.delete_expired_rows(table, cutoff).await?;
                    tracing::info!(table, rows, cutoff, days, "deleted expired rows");
                }
                expired.rows.push(ExpiredRows {
                    table,
                    rows,
                    cutoff,
                });
            }
        }
        if !dry_run {
            checked.insert(table, cutoff);
        }
    }
    Ok(expired)
}

/// Drops (or lists) `table`'s partitions past `days` on `endpoint`'s server into `expired`.
async fn expire_partitions(
    endpoint: &Endpoint,
    table: &'static str,
    days: u32,
    now_s: i64,
    dry_run: bool,
    expired: &mut Expired,
) -> Result<(), ClickHouseError> {
    for partition in endpoint.expired_partitions(table, days, now_s).await? {
        if !dry_run {
            endpoint.drop_partition(&partition).await?;
            tracing::info!(
                table,
                partition = %partition.partition,
                rows = partition.rows,
                bytes = partition.bytes,
                newest = partition.newest,
                days,
                "dropped an expired partition"
            );
        }
        expired.partitions.push(partition);
    }
    Ok(())
}

/// Runs [`enforce`] now and then every `retention.interval_ms` (never when it is 0), counting
/// each run and what it dropped.
pub fn schedule(endpoint: Endpoint, settings: RetentionSettings, telemetry: Arc<Telemetry>) {
    if settings.interval_ms == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut checked = BTreeMap::new();
        loop {
            let now_s = salestalk_operators::time::now_s();
            let outcome = match enforce(&endpoint, &settings, now_s, false, &mut checked).await {
                Ok(expired) => {
                    for rows in &expired.rows {
                        telemetry
                            .retention_deleted_rows
                            .get_or_create(&TableLabels {
                                table: rows.table.to_string(),
                            })
                            .inc_by(rows.rows);
                    }
                    for partition in &expired.partitions {
                        let labels = TableLabels {
                            table: partition.table.clone(),
                        };
                        telemetry
                            .retention_dropped_partitions
                            .get_or_create(&labels)
                            .inc();
                        telemetry
                            .retention_dropped_rows
                            .get_or_create(&labels)
                            .inc_by(partition.rows);
                    }
                    "ok"
                }
                Err(error) => {
                    // The next run tries again; dropping is idempotent.
                    tracing::warn!(%error, "enforcing retention");
                    "failed"
                }
            };
            telemetry
                .retention_runs
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc();
            tokio::time::sleep(Duration::from_millis(settings.interval_ms)).await;
        }
    });
}
