//! The downstream consumers, watched while `salestalk run` runs: how far behind each consumer
//! group reading a routing target is ([`lag`]), how long from event time to its commit
//! covering the event ([`commit_latency`]), the failures consumers report on the
//! dead-letter topic ([`reports`]), and the targets' undelivered events, redriven once they
//! answer again ([`heal`]). Both land in ClickHouse (`salestalk_store::tables::consumer_group_lag` and `consumer_failures`),
//! where the SRE page, Grafana and the consumer error-rate alert read them (docs/routing.md).

pub mod commit_latency;
pub mod heal;
pub mod lag;
pub mod reports;

use std::sync::Arc;

use salestalk_operators::routing::RoutingTable;
use salestalk_sinks::kafka::AwaitingCommit;

use crate::settings::Settings;
use crate::telemetry::Telemetry;

/// The (group, topic) pairs to watch: each routing target's configured consumer groups on its
/// topic; none when `routing.consumer_watch_interval_ms` is 0.
pub fn watched_groups(settings: &Settings, table: &RoutingTable) -> Vec<(String, String)> {
    if settings.routing.consumer_watch_interval_ms == 0 {
        return Vec::new();
    }
    table
        .downstream()
        .filter_map(|(_, name, topic)| {
            let target = settings.routing.targets.get(name)?;
            Some(
                target
                    .consumer_groups
                    .iter()
                    .map(move |group| (group.clone(), topic.to_string())),
            )
        })
        .flatten()
        .collect()
}

/// Where delivery notes records for the watched groups' commit latency; `None` when no group
/// is watched.
pub fn awaiting_commits(groups: &[(String, String)]) -> Option<Arc<AwaitingCommit>> {
    (!groups.is_empty()).then(|| {
        Arc::new(AwaitingCommit::new(
            groups,
            AwaitingCommit::DEFAULT_CAPACITY,
        ))
    })
}

/// Starts the watches (each only when there is something to watch): lag, commit latency (with
/// what delivery notes in `awaiting`) and failure reports.
pub fn watch(
    settings: &Settings,
    groups: &[(String, String)],
    awaiting: Option<Arc<AwaitingCommit>>,
    telemetry: Arc<Telemetry>,
) {
    if settings.routing.consumer_watch_interval_ms == 0 {
        return;
    }
    if let Some(awaiting) = awaiting {
        commit_latency::schedule(settings, groups, awaiting, Arc::clone(&telemetry));
    }
    lag::schedule(
        settings,
        groups.to_vec(),
        settings.routing.consumer_watch_interval_ms,
        telemetry,
    );
    reports::schedule(settings);
}
