//! SIGTERM and SIGINT, which ask a run to drain: finish the batch, flush, commit, stop.

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Set once SIGTERM or SIGINT arrived. The driver loop drains; a flush held by an outage
/// gives up instead of waiting for the service (it watches its own copy, so it hears the
/// signal even while the driver waits for it).
#[derive(Debug, Clone)]
pub struct StopRequest(watch::Receiver<bool>);

impl StopRequest {
    /// Listens for both signals from now on (needs the tokio runtime).
    pub fn on_signals() -> anyhow::Result<Self> {
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let (sender, receiver) = watch::channel(false);
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!("{name}: draining");
            sender.send_replace(true);
            // Later signals change nothing; the sender lives on so receivers see no close.
            std::future::pending::<()>().await;
        });
        Ok(Self(receiver))
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is asked for.
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
