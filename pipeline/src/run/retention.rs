//! The retention job: drops the raw archive's and the dead letters' expired partitions
//! (`salestalk_store::retention`) every `retention.interval_ms` while `salestalk run` runs, and
//! once with `salestalk retention`. Every run is logged and counted on `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use salestalk_store::retention::{ExpiredPartition, RetentionSettings};
use salestalk_store::{ClickHouseError, Endpoint};

use crate::telemetry::{OutcomeLabels, TableLabels, Telemetry};

/// Drops (or with `dry_run` only lists) every expired partition as of `now_s`; returns them.
pub async fn enforce(
    endpoint: &Endpoint,
    settings: &RetentionSettings,
    now_s: i64,
    dry_run: bool,
) -> Result<Vec<ExpiredPartition>, ClickHouseError> {
    let mut expired = Vec::new();
    for (table, days) in settings.tables() {
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
            expired.push(partition);
        }
    }
    Ok(expired)
}

/// Runs [`enforce`] now and then every `retention.interval_ms` (never when it is 0), counting
/// each run and what it dropped.
pub fn schedule(endpoint: Endpoint, settings: RetentionSettings, telemetry: Arc<Telemetry>) {
    if settings.interval_ms == 0 {
        return;
    }
    tokio::spawn(async move {
        loop {
            let now_s = salestalk_operators::time::now_s();
            let outcome = match enforce(&endpoint, &settings, now_s, false).await {
                Ok(dropped) => {
                    for partition in &dropped {
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
