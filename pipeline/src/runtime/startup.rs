//! What a run needs before it reads: the schema applied, and the sinks of the configured
//! flush order built from their settings.

use anyhow::Context;
use salestalk_kafka::admin;
use salestalk_operators::routing::RoutingTable;
use salestalk_sinks::clickhouse::{Archive, DeadLetterTable, WindowState};
use salestalk_sinks::kafka::{DeadLetterTopic, Delivery};
use salestalk_sinks::retry::RetryPolicy;
use salestalk_sinks::{FlushPlan, Sink, SinkKind};
use salestalk_store::ClickHouseError;

use crate::settings::Settings;

/// Retries `attempt` while ClickHouse is unavailable (start-up and restores, where nothing
/// else can proceed without it): backoff per `policy`, capped, without an attempt limit.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClickHouseError>>,
{
    let mut retry = 0;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() => {
                retry += 1;
                let pause = policy.jittered_backoff(retry);
                tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "{what} failed; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(error).with_context(|| what.to_string()),
        }
    }
}

/// Applies the migrations this server lacks (run at start-up and by `salestalk migrate`).
pub async fn migrate(settings: &Settings) -> anyhow::Result<usize> {
    let endpoint = &settings.clickhouse;
    let policy = settings.retry.policy();
    let profile = with_retries(&policy, "probing ClickHouse", || endpoint.probe()).await?;
    tracing::info!(version = %profile.version, modern = profile.is_modern(), "ClickHouse");
    with_retries(&policy, "migrating", || endpoint.migrate(&profile)).await
}

/// The sinks `sinks.flush_order` names, built from their settings. The dead-letter topic takes
/// part only when `dlq.topic` is set, and must exist: a broker too busy to answer in time is
/// not a reason to stop, only a topic the broker says is missing is.
pub fn flush_plan(settings: &Settings, table: &RoutingTable) -> anyhow::Result<FlushPlan> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let downstream: Vec<String> = table.downstream().map(|(_, _, t)| t.to_string()).collect();
    // Leaving `delivery` out of the flush order is how a deployment without downstream
    // consumers turns the default table's targets off; said once, loudly.
    let delivers = settings
        .sinks
        .flush_order
        .kinds()
        .contains(&SinkKind::Delivery);
    if !downstream.is_empty() && !delivers {
        tracing::warn!(
            targets = downstream.len(),
            "sinks.flush_order lacks 'delivery': the routing targets receive nothing"
        );
    }
    for kind in settings.sinks.flush_order.kinds() {
        let endpoint = settings.clickhouse.clone();
        match kind {
            SinkKind::Archive => sinks.push(Box::new(Archive::new(endpoint))),
            SinkKind::DeadLetterTable => sinks.push(Box::new(DeadLetterTable::new(endpoint))),
            SinkKind::WindowState => sinks.push(Box::new(
                WindowState::new(endpoint).with_max_rows(settings.pipeline.max_flush_rows),
            )),
            SinkKind::Delivery if downstream.is_empty() => {
                tracing::info!("routing has no downstream targets: nothing is delivered");
            }
            SinkKind::Delivery => {
                // A missing topic is the target's outage, not a reason to stop: its events
                // become dead letters naming it until it is there.
                match admin::missing_topics(&settings.kafka, &downstream) {
                    Ok(missing) if !missing.is_empty() => tracing::warn!(
                        topics = %missing.join(", "),
                        "routing targets' topics do not exist: their events will be dead \
                         letters naming them until the topics are created"
                    ),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "could not look up the routing targets' topics")
                    }
                }
                let sink = Delivery::new(&settings.kafka, &settings.routing, table.clone())
                    .context("creating the routing targets' producer")?;
                sinks.push(Box::new(sink));
            }
            SinkKind::DeadLetterTopic => {
                let Some(topic) = settings.dlq.topic() else {
                    tracing::info!("dlq.topic is empty: dead letters go to the table only");
                    continue;
                };
                let missing = admin::missing_topics(&settings.kafka, &[topic.to_string()])
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, %topic, "could not look up the dead-letter topic");
                        Vec::new()
                    });
                anyhow::ensure!(
                    missing.is_empty(),
                    "the dead-letter topic '{topic}' does not exist: create it \
                     (deploy/services/up does) or set dlq.topic"
                );
                let sink = DeadLetterTopic::new(&settings.kafka, topic)
                    .context("creating the dead-letter topic producer")?;
                sinks.push(Box::new(sink));
            }
        }
    }
    anyhow::ensure!(
        sinks
            .iter()
            .any(|s| matches!(s.name(), "dead_letter_topic" | "dead_letter_table")),
        "no dead-letter sink: sinks.flush_order lists only dead_letter_topic and dlq.topic is empty"
    );
    Ok(FlushPlan::new(sinks))
}

/// Warns when the dead-letter topic keeps records for another time than `dlq.retention_ms`
/// says: the pipeline does not change a topic's configuration, an operator decides.
pub async fn check_dead_letter_retention(settings: &Settings) {
    let Some(topic) = settings.dlq.topic() else {
        return;
    };
    let wanted = settings.dlq.retention_ms;
    match admin::topic_config(&settings.kafka, topic, "retention.ms").await {
        Ok(Some(value)) if value.parse::<i64>().ok() == Some(wanted) => {}
        Ok(found) => tracing::warn!(
            %topic,
            retention_ms = found.as_deref().unwrap_or("unknown"),
            dlq_retention_ms = wanted,
            "the dead-letter topic keeps records for another time than dlq.retention_ms; \
             set the topic's retention.ms (kafka-configs --alter) or dlq.retention_ms"
        ),
        Err(error) => {
            tracing::warn!(%error, %topic, "could not read the dead-letter topic's retention")
        }
    }
}
