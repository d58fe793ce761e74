//! `salestalk alerts`: the notifications the evaluator has sent.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::DateTime;

/// `salestalk alerts` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// The latest notifications (firing and resolved), newest first.
    History {
        /// Most notifications listed.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Prints the history.
pub fn execute(config: Option<&Path>, command: Command) -> anyhow::Result<ExitCode> {
    let Command::History { limit, json } = command;
    let (settings, runtime) = super::start(config)?;
    let records = runtime
        .block_on(settings.clickhouse.alert_history(limit))
        .context("reading the alerts table")?;
    for record in records {
        if json {
            println!("{}", serde_json::to_string(&record)?);
            continue;
        }
        let at = DateTime::from_timestamp(record.notified_at.into(), 0)
            .unwrap_or_default()
            .format("%Y-%m-%d %H:%M:%S");
        let delivered = if record.delivered == 1 {
            ""
        } else {
            " (not delivered)"
        };
        println!(
            "{at}  {:<8} {:<9} {:<26} {}{delivered}",
            record.status, record.severity, record.rule, record.summary
        );
    }
    Ok(ExitCode::SUCCESS)
}
