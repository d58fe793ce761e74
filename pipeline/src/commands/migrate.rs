//! `salestalk migrate`: apply the ClickHouse schema this server lacks.

use std::path::Path;
use std::process::ExitCode;

/// Prints how many migrations were applied.
pub fn execute(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let applied = runtime.block_on(crate::run::migrate(&settings))?;
    println!(
        "applied {applied} migration(s) to {}",
        settings.clickhouse.database
    );
    Ok(ExitCode::SUCCESS)
}
