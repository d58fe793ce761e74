//! `salestalk trace <correlationId>`: every event of one correlation and what became of it,
//! read from where each fate is stored: the archive (`events_raw`: counted, or late and
//! counted by its day's correction), the dead-letter queue (refused, with its reason and
//! status; a routing target that did not take it), the routing table (the targets it was
//! delivered to) and the replays' recorded selections (replayed by which replay).
//!
//! Delivery is not recorded per event: an event routed to a target is reported delivered
//! unless a `delivery_failed` dead letter names that target.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use salestalk_operators::routing::{METRICS, RoutingTable};
use salestalk_store::dead_letter_queue::{DlqEntry, DlqFilter};
use salestalk_store::tables::events_raw::{CorrelatedEvent, ReplaySelection};
use salestalk_store::tables::replays::ReplayRecord;
use serde::Serialize;

use crate::settings::Settings;

/// Most dead letters and replays read for one correlation.
const MOST: u64 = 10_000;

/// `salestalk trace` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The correlation id (`metadata.correlationId`), in either letter case.
    correlation_id: String,
    /// One JSON object per event instead of text.
    #[arg(long)]
    json: bool,
}

/// What became of one event of the correlation.
#[derive(Debug, Serialize)]
struct Fate {
    /// The event id (or, for a message whose id could not be read, its dead letter's id).
    event: String,
    event_type: String,
    tenant: String,
    /// Event time (archived events) or read time (dead letters), UTC.
    at: String,
    /// `counted`, `late` (archived after its window was final, counted by its day's
    /// correction), `not_counted` (archived; the routing keeps it out of the metrics) or
    /// `dead_lettered`.
    fate: &'static str,
    /// The dead letter's reason and status, when dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter: Option<String>,
    /// The routing targets it was delivered to.
    delivered_to: Vec<String>,
    /// The routing targets that did not take it, with their dead letters' status.
    delivery_failed: Vec<String>,
    /// The replays (not dry runs) whose selection holds it.
    replayed_by: Vec<String>,
}

/// Prints the fate of every event of the correlation; exit 1 when it has none.
pub fn execute(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let fates = runtime.block_on(fates(&settings, &args.correlation_id))?;
    let mut out = std::io::stdout().lock();
    for fate in &fates {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(fate)?)?;
        } else {
            print_text(&mut out, fate)?;
        }
    }
    if fates.is_empty() {
        eprintln!(
            "no event of correlation {} is archived or dead-lettered",
            args.correlation_id
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn fates(settings: &Settings, correlation: &str) -> anyhow::Result<Vec<Fate>> {
    let endpoint = &settings.clickhouse;
    let table = RoutingTable::compile(&settings.routing)
        .map_err(|problems| anyhow::anyhow!("routing: {}", problems.join("; ")))?;
    let archived = endpoint
        .correlated_events(correlation)
        .await
        .context("reading the archive")?;
    let letters = endpoint
        .dlq_entries(&DlqFilter {
            correlation_ids: vec![correlation.to_string()],
            limit: MOST,
            ..DlqFilter::default()
        })
        .await
        .context("reading the dead-letter queue")?;
    let replays: Vec<(ReplayRecord, ReplaySelection)> = endpoint
        .replays(MOST)
        .await
        .context("reading the replays")?
        .into_iter()
        .filter(|replay| replay.dry_run == 0)
        .filter_map(|replay| {
            let selection = ReplaySelection::parse(&replay.selection)?;
            Some((replay, selection))
        })
        .collect();
    let (failed_deliveries, refused): (Vec<&DlqEntry>, Vec<&DlqEntry>) = letters
        .iter()
        .partition(|letter| letter.reason == "delivery_failed");
    let mut fates: Vec<Fate> = archived
        .iter()
        .map(|event| archived_fate(event, &table, &failed_deliveries, &replays))
        .collect();
    fates.extend(refused.into_iter().map(refused_fate));
    Ok(fates)
}

fn archived_fate(
    event: &CorrelatedEvent,
    table: &RoutingTable,
    failed_deliveries: &[&DlqEntry],
    replays: &[(ReplayRecord, ReplaySelection)],
) -> Fate {
    let (_, targets) = table.route(&event.event_type, &event.tenant_id, &event.source);
    let names = targets.iter().map(|&i| table.targets()[i].as_str());
    let counted = names.clone().any(|name| name == METRICS);
    let failures: Vec<(&str, &str)> = failed_deliveries
        .iter()
        .filter(|letter| letter.event_id.eq_ignore_ascii_case(&event.event_id))
        .filter_map(|letter| Some((failed_target(&letter.error)?, letter.status.as_str())))
        .collect();
    let (mut delivered_to, mut delivery_failed) = (Vec::new(), Vec::new());
    for name in names.filter(|name| *name != METRICS) {
        match failures.iter().find(|(target, _)| *target == name) {
            Some((_, status)) => delivery_failed.push(format!("{name} (dead letter {status})")),
            None => delivered_to.push(name.to_string()),
        }
    }
    Fate {
        event: event.event_id.clone(),
        event_type: event.event_type.clone(),
        tenant: event.tenant_id.clone(),
        at: super::utc_time(event.timestamp),
        fate: match (event.late != 0, counted) {
            (true, _) => "late",
            (false, true) => "counted",
            (false, false) => "not_counted",
        },
        dead_letter: None,
        delivered_to,
        delivery_failed,
        replayed_by: replays
            .iter()
            .filter(|(_, selection)| selection.selects(event))
            .map(|(replay, _)| format!("{} to {}", replay.replay_id, replay.target))
            .collect(),
    }
}

fn refused_fate(letter: &DlqEntry) -> Fate {
    let event = if letter.event_id.is_empty() {
        letter.id()
    } else {
        letter.event_id.clone()
    };
    let error: String = letter.error.chars().take(200).collect();
    Fate {
        event,
        event_type: letter.event_type.clone(),
        tenant: letter.tenant_id.clone(),
        at: super::utc_time(letter.broker_time),
        fate: "dead_lettered",
        dead_letter: Some(format!("{} ({}): {error}", letter.reason, letter.status)),
        delivered_to: Vec::new(),
        delivery_failed: Vec::new(),
        replayed_by: Vec::new(),
    }
}

/// The target a `delivery_failed` dead letter's error names (`target NAME (topic ...) ...`).
fn failed_target(error: &str) -> Option<&str> {
    error.strip_prefix("target ")?.split(' ').next()
}

fn print_text(out: &mut impl Write, fate: &Fate) -> std::io::Result<()> {
    let what = match fate.fate {
        "counted" => "counted".to_string(),
        "late" => "late: archived, counted by the correction of its day".to_string(),
        "not_counted" => "archived, not counted (the routing keeps it out of the metrics)".into(),
        _ => format!(
            "dead-lettered: {}",
            fate.dead_letter.as_deref().unwrap_or_default()
        ),
    };
    writeln!(
        out,
        "{} {} {} {}: {what}",
        fate.at, fate.event, fate.event_type, fate.tenant
    )?;
    if !fate.delivered_to.is_empty() {
        writeln!(out, "    delivered to: {}", fate.delivered_to.join(", "))?;
    }
    if !fate.delivery_failed.is_empty() {
        writeln!(out, "    not taken by: {}", fate.delivery_failed.join(", "))?;
    }
    for replay in &fate.replayed_by {
        writeln!(out, "    replayed by {replay}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_delivery_names_its_target() {
        let error = "target billing (topic c.billing) did not take it: Message timed out";
        assert_eq!(failed_target(error), Some("billing"));
        assert_eq!(failed_target("something else"), None);
    }
}
