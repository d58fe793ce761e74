//! What a run needs before it reads: the schema applied, and the sinks of the configured
//! flush order built from their settings.

use std::sync::Arc;

use anyhow::Context;
use salestalk_http::probes::Probes;
use salestalk_kafka::admin;
use salestalk_operators::routing::RoutingTable;
use salestalk_operators::time;
use salestalk_operators::versions::{ContractSettings, VersionEnds};
use salestalk_sinks::kafka::AwaitingCommit;
use salestalk_sinks::retry::RetryPolicy;
use salestalk_sinks::{FlushPlan, SinkBuild};
use salestalk_store::ClickHouseError;
use salestalk_store::tables::event_versions::EventVersionRow;
use salestalk_store::tables::window_state::generation_in_sorting_key;

use crate::settings::Settings;

/// Retries `attempt` while ClickHouse is unavailable (start-up and restores, where nothing
/// else can proceed without it): backoff per `policy`, capped, without an attempt limit.
/// `beat` is called before every attempt: waiting for ClickHouse is not a stall.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    beat: impl Fn(),
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClickHouseError>>,
{
    let mut retry = 0;
    loop {
        beat();
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

/// Applies the migrations this server lacks (run at start-up and by `salestalk migrate`),
/// waiting for ClickHouse as long as it takes; `probes` say so meanwhile.
pub async fn migrate(settings: &Settings, probes: &Probes) -> anyhow::Result<usize> {
    let endpoint = &settings.clickhouse;
    let policy = settings.retry.policy();
    probes.wait_for("ClickHouse");
    let beat = || probes.beat();
    let profile = with_retries(&policy, "probing ClickHouse", beat, || endpoint.probe()).await?;
    tracing::info!(version = %profile.version, modern = profile.is_modern(), "ClickHouse");
    probes.wait_for("the schema");
    let applied = with_retries(&policy, "migrating", beat, || endpoint.migrate(&profile)).await?;
    // Servers with TTL expire rows themselves: after the configured days, by trusted time.
    if let Err(error) = endpoint
        .apply_retention_ttl(&profile, &settings.retention)
        .await
    {
        tracing::warn!(%error, "could not set the tables' TTL from [retention]");
    }
    match generation_in_sorting_key(endpoint, &endpoint.database).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "window_state was created before its sorting key kept each generation's rows apart: \
             a rebalance that gives a partition to two instances at once can lose counts in a \
             merge; rebuild it with the pipeline stopped (docs/operations.md, \
             \"Rebuilding window_state\")"
        ),
        Err(error) => tracing::warn!(%error, "could not read window_state's sorting key"),
    }
    Ok(applied)
}

/// The sinks `sinks.flush_order` names, each built from its settings (delivery noting what
/// it delivers in `awaiting_commit`, when groups are watched).
pub fn flush_plan(
    settings: &Settings,
    table: &RoutingTable,
    awaiting_commit: Option<Arc<AwaitingCommit>>,
) -> anyhow::Result<FlushPlan> {
    let with = SinkBuild {
        endpoint: &settings.clickhouse,
        kafka: &settings.kafka,
        dlq: &settings.dlq,
        routing: &settings.routing,
        table,
        max_flush_rows: settings.pipeline.max_flush_rows,
        awaiting_commit,
    };
    Ok(FlushPlan::build(&settings.sinks.flush_order, &with)?)
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

/// Records the version registry the tasks enforce, for the page and the alert to read. Only
/// `run` and `serve` do (the processes that enforce and show it): a one-off command started
/// with another configuration must not rewrite it.
pub async fn record_versions(settings: &Settings) {
    let rows = version_rows(&settings.contracts, time::now_ms());
    if let Err(error) = settings.clickhouse.record_event_versions(&rows).await {
        tracing::warn!(%error, "could not record the event versions' lifecycle");
    }
}

/// Every supported event version's lifecycle under `contracts` (current unless listed), as
/// `event_versions` rows stamped `now_ms`.
pub fn version_rows(contracts: &ContractSettings, now_ms: u64) -> Vec<EventVersionRow> {
    contracts
        .version_ends()
        .all()
        .map(|(event_type, end_ms)| EventVersionRow {
            event_type: event_type.as_str().to_string(),
            status: if end_ms.is_some() {
                "deprecated"
            } else {
                "current"
            }
            .to_string(),
            ends: end_ms.map_or(0, |ms| u16::try_from(ms / 86_400_000).unwrap_or(u16::MAX)),
            successor: VersionEnds::successor(event_type).as_str().to_string(),
            recorded_at_ms: now_ms,
        })
        .collect()
}
