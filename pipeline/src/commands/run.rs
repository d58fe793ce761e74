//! `salestalk run`: the pipeline, until a limit or a signal; prints what it made durable.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::run::{RunLimits, run};

/// `salestalk run` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Stop once every partition is read to its end and nothing has arrived for this long
    /// (e.g. 10s); default: run until SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_exit: Option<Duration>,
    /// Stop after this many messages.
    #[arg(long)]
    max_messages: Option<u64>,
}

/// Prints the run's tally as JSON at the end.
pub fn execute(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let limits = RunLimits {
        idle_exit: args.idle_exit,
        max_messages: args.max_messages,
    };
    let result = runtime.block_on(run(&settings, limits));
    // A source close left behind (run::CLOSE_WITHIN) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let tally = result?;
    println!("{}", serde_json::to_string(&tally)?);
    Ok(ExitCode::SUCCESS)
}
