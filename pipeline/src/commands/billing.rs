//! `salestalk billing export`: the per-tenant monthly cost CSV.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use salestalk_store::billing::Month;

/// `salestalk billing` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Write one CSV row per tenant for a calendar month: messages, tokens, the exact cost and
    /// the cost billed (rounded to the cent).
    Export {
        /// The month, YYYY-MM (UTC).
        #[arg(long, value_parser = clap::value_parser!(Month))]
        month: Month,
        /// File to write; standard output by default.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Writes the CSV.
pub fn execute(config: Option<&Path>, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Export { month, output } = command;
    let (settings, runtime) = super::start(config)?;
    let billing = runtime
        .block_on(crate::tools::billing::BillingMonth::read(
            &settings.clickhouse,
            month,
            None,
            settings.corrections.horizon_ms,
        ))
        .context("reading the month's costs")?;
    match output {
        Some(path) => {
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            crate::tools::billing::write_csv(&billing, BufWriter::new(file))?;
            eprintln!(
                "{} tenant(s) for {month} in {}",
                billing.rows.len(),
                path.display()
            );
        }
        None => crate::tools::billing::write_csv(&billing, io::stdout().lock())?,
    }
    Ok(ExitCode::SUCCESS)
}
