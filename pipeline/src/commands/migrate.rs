//! `salestalk migrate`: apply the ClickHouse schema this server lacks. Run as a Job before an
//! upgrade's pods (deploy/k8s/base/migrate-job.yaml), it does the schema changes once, so
//! the processes that start after it find the schema current and change nothing.

use std::path::Path;
use std::process::ExitCode;

/// Prints how many migrations were applied.
pub fn execute(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let probes = salestalk_http::probes::Probes::starting();
    let applied = runtime.block_on(crate::run::migrate(&settings, &probes))?;
    println!(
        "applied {applied} migration(s) to {}",
        settings.clickhouse.database
    );
    Ok(ExitCode::SUCCESS)
}
