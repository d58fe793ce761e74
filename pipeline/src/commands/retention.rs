//! `salestalk retention`: drop the raw archive's and the dead letters' expired partitions once
//! (what `salestalk run` does every `retention.interval_ms`), for a scheduler or by hand.

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
    ))?;
    for partition in &expired {
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
    let verb = if args.dry_run {
        "would drop"
    } else {
        "dropped"
    };
    println!("{verb} {} expired partition(s)", expired.len());
    Ok(ExitCode::SUCCESS)
}
