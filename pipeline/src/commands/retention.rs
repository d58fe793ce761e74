//! `salestalk retention`: expire the archive's, the dead letters' and the outcome tables' rows
//! past their horizon once (what `salestalk run` does every `retention.interval_ms`), for a
//! scheduler or by hand.

use std::path::Path;
use std::process::ExitCode;

/// `salestalk retention` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// List the expired partitions, and drop nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Prints one line per expired partition, then how many were dropped.
pub fn execute(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let now_s = salestalk_operators::time::now_s();
    let expired = runtime.block_on(crate::run::retention::enforce(
        &settings.clickhouse,
        &settings.retention,
        now_s,
        args.dry_run,
        &mut std::collections::BTreeMap::new(),
    ))?;
    for partition in &expired.partitions {
        println!(
            "{} {} newest {} rows {} bytes {}",
            partition.table,
            partition.partition,
            chrono::DateTime::from_timestamp(i64::from(partition.newest), 0)
                .map_or_else(String::new, |t| t.to_rfc3339()),
            partition.rows,
            partition.bytes
        );
    }
    for rows in &expired.rows {
        println!(
            "{} rows before {} {}",
            rows.table,
            chrono::DateTime::from_timestamp(rows.cutoff, 0)
                .map_or_else(String::new, |t| t.to_rfc3339()),
            rows.rows
        );
    }
    let verb = if args.dry_run {
        "would drop"
    } else {
        "dropped"
    };
    let deleted: u64 = expired.rows.iter().map(|r| r.rows).sum();
    println!(
        "{verb} {} expired partition(s) and {deleted} expired row(s) of newer partitions",
        expired.partitions.len()
    );
    Ok(ExitCode::SUCCESS)
}
