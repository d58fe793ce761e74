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

use salestalk_kafka::admin::GroupOffsets;
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
    let offsets = group_offsets(settings, groups);
    if let Some(awaiting) = awaiting {
        commit_latency::schedule(settings, &offsets, awaiting, Arc::clone(&telemetry));
    }
    lag::schedule(
        settings,
        &offsets,
        settings.routing.consumer_watch_interval_ms,
        telemetry,
    );
    reports::schedule(settings);
}

/// Each watched (group, topic) with its group's offsets client: one client per group, shared
/// by the group's topics and by both the lag and the commit-latency watchers, since every
/// librdkafka client holds its own threads and broker connections. A group whose client
/// cannot be made is left out of both, with a warning.
fn group_offsets(
    settings: &Settings,
    groups: &[(String, String)],
) -> Vec<(Arc<GroupOffsets>, String)> {
    let mut clients: Vec<Arc<GroupOffsets>> = Vec::new();
    let mut out = Vec::with_capacity(groups.len());
    for (group, topic) in groups {
        let client = match clients.iter().find(|c| c.group() == group.as_str()) {
            Some(client) => Arc::clone(client),
            None => match GroupOffsets::new(&settings.kafka, group) {
                Ok(client) => {
                    let client = Arc::new(client);
                    clients.push(Arc::clone(&client));
                    client
                }
                Err(error) => {
                    tracing::warn!(%error, group, "cannot read the group's offsets: its lag and commit latency are not measured");
                    continue;
                }
            },
        };
        out.push((client, topic.clone()));
    }
    out
}
