//! Targets heal: a routing target that did not take its events (retries ran out, or it was
//! paused) has them as `delivery_failed` dead letters addressed to its topic. Every
//! `routing.heal_interval_ms`, for each target with such letters pending, this asks the
//! brokers whether its topic answers; once it does, at most `routing.heal_batch` of its letters
//! are redriven to it (keyed by tenant, with the eventId header, as delivery sends them) and
//! marked redriven with the note [`HEALED`], each once. Consumers deduplicate by `eventId`
//! (ADR 0012), so a letter redriven again after a crash between the produce and the mark
//! changes nothing for them. One instance does it: the one that corrects past days.

use std::sync::Arc;
use std::time::Duration;

use salestalk_kafka::admin;
use salestalk_operators::dead_letter::DeadLetterReason;
use salestalk_operators::routing::RoutingTable;
use salestalk_store::dead_letter_queue::DlqFilter;

use crate::settings::Settings;
use crate::telemetry::{TargetLabels, Telemetry};
use salestalk_corrections::Leadership;

/// The note of a dead letter redriven because its target answered again (the SRE page counts
/// these).
pub const HEALED: &str = "healed: its target answers again";

/// Each downstream target (name, topic) of `table`.
fn targets(table: &RoutingTable) -> Vec<(String, String)> {
    table
        .downstream()
        .map(|(_, name, topic)| (name.to_string(), topic.to_string()))
        .collect()
}

/// One round: for each target with pending `delivery_failed` letters whose topic answers,
/// redrives up to `heal_batch` of them. Returns how many were redriven per target.
pub async fn heal(
    settings: &Settings,
    table: &RoutingTable,
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut healed = Vec::new();
    for (name, topic) in targets(table) {
        let filter = DlqFilter {
            topics: vec![topic.clone()],
            reasons: vec![DeadLetterReason::DeliveryFailed.as_str().to_string()],
            status: Some("pending".to_string()),
            limit: settings.routing.heal_batch,
            ..DlqFilter::default()
        };
        if settings.clickhouse.dlq_entries(&filter).await?.is_empty() {
            continue;
        }
        // A target answers when its brokers know its topic: asking costs a metadata request,
        // where a produce to a target that is still away would wait out the delivery timeout.
        let kafka = settings.kafka.clone();
        let wanted = vec![topic.clone()];
        let missing =
            tokio::task::spawn_blocking(move || admin::missing_topics(&kafka, &wanted)).await?;
        match missing {
            Ok(missing) if missing.is_empty() => {}
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(target = %name, %error, "a target's brokers do not answer");
                continue;
            }
        }
        let (_, done) =
            crate::run::redrive::redrive_noting(settings, &filter, false, HEALED).await?;
        if done.produced > 0 {
            tracing::info!(
                target = %name,
                topic = %topic,
                redriven = done.produced,
                failed = done.failed,
                "a routing target answers again: its dead letters were redriven to it"
            );
        }
        healed.push((name, done.produced));
    }
    Ok(healed)
}

/// Runs [`heal`] every `routing.heal_interval_ms` while this instance leads (never when it is
/// 0, or without targets), counting what it redrove on `/metrics`.
pub fn schedule(
    settings: &Settings,
    table: &RoutingTable,
    leadership: Leadership,
    telemetry: Arc<Telemetry>,
) {
    let interval = settings.routing.heal_interval_ms;
    if interval == 0 || targets(table).is_empty() {
        return;
    }
    let (settings, table) = (settings.clone(), table.clone());
    tokio::spawn(async move {
        let every = Duration::from_millis(interval);
        loop {
            tokio::time::sleep(every).await;
            if !leadership.leads() {
                continue;
            }
            match heal(&settings, &table).await {
                Ok(healed) => {
                    for (target, redriven) in healed {
                        telemetry
                            .deliveries_healed
                            .get_or_create(&TargetLabels { target })
                            .inc_by(redriven as u64);
                    }
                }
                // The next round tries again: a letter is marked only once redriven.
                Err(error) => tracing::warn!(error = format!("{error:#}"), "healing targets"),
            }
        }
    });
}
