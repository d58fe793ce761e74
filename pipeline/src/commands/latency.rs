//! `salestalk latency`: P50/P95/P99 per consumer from the merged histograms.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// `salestalk latency` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// How far back to look (e.g. 15m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    since: Duration,
    /// Only these tenants (repeatable); default: all.
    #[arg(long)]
    tenant: Vec<String>,
    /// Only these event types (repeatable); default: all.
    #[arg(long)]
    event_type: Vec<String>,
}

/// Prints one line per consumer.
pub fn execute(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let rows = runtime.block_on(settings.clickhouse.latency_percentiles(
        args.since.as_secs(),
        &args.tenant,
        &args.event_type,
    ))?;
    println!(
        "{:<26} {:>10} {:>12} {:>12} {:>12}",
        "consumer", "events", "p50_ms", "p95_ms", "p99_ms"
    );
    for row in rows {
        println!(
            "{:<26} {:>10} {:>12.1} {:>12.1} {:>12.1}",
            row.consumer, row.events, row.p50_ms, row.p95_ms, row.p99_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
