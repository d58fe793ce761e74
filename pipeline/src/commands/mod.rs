//! The command line: one module per `salestalk` command. Each parses its own arguments and
//! drives the components (runtime, store, sinks, generator); none of them is a component.

pub mod alerts;
pub mod billing;
pub mod check;
pub mod dlq;
pub mod generate;
pub mod ingest;
pub mod keys;
pub mod latency;
pub mod migrate;
pub mod publish;
pub mod replay;
pub mod retention;
pub mod routes;
pub mod run;
pub mod serve;
pub mod trace;
pub mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::logging;
use crate::settings::Settings;

/// `salestalk`: the command line.
#[derive(Parser)]
#[command(
    name = "salestalk",
    version,
    about = "SalesTalk event analytics pipeline"
)]
pub struct Cli {
    /// A TOML file layered over the built-in defaults (see config/salestalk.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check JSON Lines events against the contracts. Exit 0: all valid, 1: some invalid, 2: error.
    Validate(validate::Args),
    /// Generate realistic synthetic traffic (deterministic for a seed).
    Generate(generate::Args),
    /// Consume the configured topics into windowed metrics in ClickHouse; print a summary.
    Run(run::Args),
    /// Print P50/P95/P99 processing latency per consumer, merged over a time range and tenants.
    Latency(latency::Args),
    /// Inspect and resolve the dead-letter queue.
    #[command(subcommand)]
    Dlq(dlq::Command),
    /// Serve the dashboards and GET /api/alerts, and evaluate the alert rules.
    Serve,
    /// The alert notifications sent so far.
    #[command(subcommand)]
    Alerts(alerts::Command),
    /// Billing: per-tenant monthly cost rollups.
    #[command(subcommand)]
    Billing(billing::Command),
    /// Apply the ClickHouse schema migrations this server lacks (also done by `run`).
    Migrate,
    /// Check the configuration and that Kafka and ClickHouse answer.
    Check(check::Args),
    /// Drop the raw archive's and the dead letters' expired partitions (also done by `run`).
    Retention(retention::Args),
    /// Serve the ingest gateway: POST /v1/events with a publisher key.
    Ingest,
    /// Send JSON Lines through the ingest gateway (key in SALESTALK_API_KEY); print failures.
    Publish(publish::Args),
    /// Show the routing table, or the route of one event (--event-type, --tenant, --source).
    Routes(routes::Args),
    /// Replay archived events to a topic (filters, --dry-run), and list the replays made.
    #[command(subcommand)]
    Replay(replay::Command),
    /// Make, list and revoke API keys (stored hashed in ClickHouse).
    #[command(subcommand)]
    Keys(keys::Command),
    /// Every event of one correlation id and what became of it (counted, late, dead-lettered,
    /// delivered, replayed).
    Trace(trace::Args),
}

impl Cli {
    /// Runs the command; the exit code on success (some commands report findings with 1).
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let config = self.config.as_deref();
        match self.command {
            Command::Validate(args) => validate::execute(args),
            Command::Generate(args) => generate::execute(config, args),
            Command::Run(args) => run::execute(config, args),
            Command::Latency(args) => latency::execute(config, args),
            Command::Dlq(command) => dlq::execute(config, command),
            Command::Serve => serve::execute(config),
            Command::Alerts(command) => alerts::execute(config, command),
            Command::Billing(command) => billing::execute(config, command),
            Command::Migrate => migrate::execute(config),
            Command::Check(args) => check::execute(config, args),
            Command::Retention(args) => retention::execute(config, args),
            Command::Keys(command) => keys::execute(config, command),
            Command::Ingest => ingest::execute(config),
            Command::Routes(args) => routes::execute(config, args),
            Command::Replay(command) => replay::execute(config, command),
            Command::Publish(args) => publish::execute(config, args),
            Command::Trace(args) => trace::execute(config, args),
        }
    }
}

/// What every command that talks to the services needs: the checked settings, logging, and
/// an async runtime.
fn start(config: Option<&Path>) -> anyhow::Result<(Settings, tokio::runtime::Runtime)> {
    let settings = Settings::load(config)?;
    logging::init(&settings.log);
    settings.warn_renamed();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    Ok((settings, runtime))
}

/// A time stored as Unix seconds, as the commands print it (`2026-12-06T05:30:00Z`; `-` for 0,
/// "never").
pub(crate) fn utc_time(seconds: u32) -> String {
    if seconds == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp(i64::from(seconds), 0).map_or_else(
        || seconds.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}
