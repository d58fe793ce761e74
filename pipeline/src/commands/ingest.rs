//! `salestalk ingest`: serve the ingest gateway until SIGTERM or SIGINT, then store its ledger
//! once more. The listener is bound before ClickHouse is waited for: a start during an outage
//! answers `/health/live`, and `/health` (not ready) and `POST /v1/events` 503, until the
//! schema is current and keys can be checked.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use salestalk_gateway::{Gateway, KinesisRoute, router};
use salestalk_http::probes::{Probes, Started, until_started};

/// Serves `POST /v1/events` on `ingest.listen`.
pub fn execute(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    runtime.block_on(async {
        let gateway = Gateway::new(
            settings.ingest.clone(),
            settings.kafka.clone(),
            settings.clickhouse.clone(),
            settings.pipeline.max_sources_per_day,
        )
        .context("creating the Kafka producer")?;
        let gateway = match KinesisRoute::of(&settings.ingest, &settings.kinesis) {
            Some(route) => {
                let client = salestalk_kinesis::client(&settings.kinesis).await;
                gateway.publishing_to_kinesis(client, route)
            }
            None => gateway,
        };
        let gateway = Arc::new(gateway);
        let probes = Probes::starting();
        let started: Started = Arc::default();
        let listen = settings.ingest.listen()?;
        let (stopped, stop) = tokio::sync::watch::channel(false);
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let app = until_started(Arc::clone(&probes), Arc::clone(&started));
        let (bound, served) = salestalk_http::server::serve(listen, app, async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let _ = stopped.send(true);
        })
        .await
        .with_context(|| format!("listening on {listen}"))?;
        tracing::info!(address = %bound, "listening; starting");
        {
            let mut stop = stop.clone();
            tokio::select! {
                migrated = crate::run::migrate(&settings, &probes) => { migrated?; }
                _ = stop.wait_for(|stopped| *stopped) => {
                    served.await.context("serving")?;
                    return anyhow::Ok(());
                }
            }
        }
        // Set once: this is the only start.
        let _ = started.set(router(gateway.clone()));
        probes.ready();
        tracing::info!("ingest gateway on http://{bound}/v1/events");
        // The ledger is stored every second, and once more after the last request.
        let ledger = {
            let gateway = gateway.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                gateway
                    .keep_ledger(async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    })
                    .await;
            })
        };
        served.await.context("serving")?;
        ledger.await.context("storing the ledger")?;
        // Requests answered during the graceful shutdown counted after the ledger's last
        // turn: store them too.
        gateway.store_ledger().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
