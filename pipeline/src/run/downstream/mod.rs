//! The downstream consumers, watched while `salestalk run` runs: how far behind each consumer
//! group reading a routing target is ([`lag`]), the failures consumers report on the
//! dead-letter topic ([`reports`]), and the targets' undelivered events, redriven once they
//! answer again ([`heal`]). Both land in ClickHouse (`salestalk_store::tables::consumer_group_lag` and `consumer_failures`),
//! where the SRE page, Grafana and the consumer error-rate alert read them (docs/routing.md).

pub mod heal;
pub mod lag;
pub mod reports;

use std::sync::Arc;

use salestalk_operators::routing::RoutingTable;

use crate::settings::Settings;
use crate::telemetry::Telemetry;

/// Starts both watches (each only when there is something to watch).
pub fn watch(settings: &Settings, table: &RoutingTable, telemetry: Arc<Telemetry>) {
    let interval = settings.routing.consumer_watch_interval_ms;
    if interval == 0 {
        return;
    }
    let groups: Vec<(String, String)> = table
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
        .collect();
    lag::schedule(settings, groups, interval, telemetry);
    reports::schedule(settings);
}
