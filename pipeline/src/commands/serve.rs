//! `salestalk serve`: the dashboards, the alert evaluator and GET /api/alerts, until SIGTERM
//! or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

/// Serves until a signal.
pub fn execute(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let stop = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        crate::serve::serve(&settings, stop).await
    })?;
    Ok(ExitCode::SUCCESS)
}
