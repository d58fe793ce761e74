//! `salestalk serve`: what people and tools read besides ClickHouse itself. It answers
//! `GET /api/alerts` (the alerts firing now) and `GET /health`, and runs the alert evaluator
//! beside them until SIGTERM or Ctrl-C.

use std::time::Duration;

use anyhow::Context;
use hyper::StatusCode;

use crate::alerts::{Evaluator, Firing};
use crate::http::respond;
use crate::settings::Settings;

/// Serves and evaluates until `shutdown` completes.
pub async fn serve(settings: &Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    crate::run::migrate(settings).await?;
    let mut evaluator = Evaluator::start(settings)
        .await
        .context("reading the alerts that were firing")?;
    let bound = crate::http::serve(settings.serve.listen, routes(evaluator.firing()))
        .await
        .with_context(|| format!("listening on {}", settings.serve.listen))?;
    tracing::info!(address = %bound, rules = settings.alerts.rules.len(), "serving");
    let mut every = tokio::time::interval(Duration::from_millis(settings.alerts.evaluate_every_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = every.tick() => {
                evaluator.evaluate(chrono::Utc::now()).await;
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("stopped");
    Ok(())
}

fn routes(
    firing: Firing,
) -> impl Fn(
    &hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>>
+ Send
+ Sync
+ 'static {
    move |request| match request.uri().path() {
        "/api/alerts" => {
            let alerts: Vec<serde_json::Value> = firing
                .lock()
                .map(|alerts| {
                    alerts
                        .iter()
                        .map(|a| {
                            serde_json::json!({
                                "fingerprint": a.fingerprint(),
                                "summary": a.summary(),
                                "alert": a,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            respond(
                StatusCode::OK,
                "application/json",
                serde_json::Value::Array(alerts).to_string(),
            )
        }
        "/health" => respond(StatusCode::OK, "application/json", "{\"status\":\"ok\"}"),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /api/alerts or /health\n",
        ),
    }
}
