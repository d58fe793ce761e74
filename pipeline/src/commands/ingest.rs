//! `salestalk ingest`: serve the ingest gateway until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::ingest::{Gateway, router};

/// Serves `POST /v1/events` on `ingest.listen`.
pub fn execute(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    runtime.block_on(async {
        crate::runtime::migrate(&settings).await?;
        let gateway = Gateway::new(
            settings.ingest.clone(),
            settings.kafka.clone(),
            settings.clickhouse.clone(),
        )
        .context("creating the Kafka producer")?;
        let listen = settings.ingest.listen()?;
        let (bound, served) = crate::http::serve(listen, router(Arc::new(gateway)), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .with_context(|| format!("listening on {listen}"))?;
        tracing::info!("ingest gateway on http://{bound}/v1/events");
        served.await.context("serving")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
