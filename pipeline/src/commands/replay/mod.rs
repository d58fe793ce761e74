//! `salestalk replay`: archived events again, selected by event id, tenant, event type,
//! correlation id and event time, with a progress line (rate, ETA) and a `--dry-run` that only
//! counts; every replay is recorded, and `replay list` shows them. Two destinations:
//! - `--to-topic`: an isolated Kafka topic (never a live one unless asked); each event once,
//!   keyed by tenant, with the header `salestalk-replay-of: <replay id>`; replaying the same
//!   selection twice sends the same events again, which a consumer deduplicating by `eventId`
//!   counts once.
//! - `--to-database`: every metric of the selection recomputed by the same operators
//!   (`salestalk_corrections::recompute`) into a separate ClickHouse database, the live one untouched;
//!   replaying again (`--overwrite`) recomputes the same numbers.
//!
//! `--backfill` corrects whole days instead (`backfill.rs`). Here: the command, its checks of
//! the destination and the record; `to_topic.rs` and `to_database.rs` page through the archive.

mod backfill;
mod to_database;
mod to_topic;

use self::backfill::backfill;
use self::to_database::recompute;
use self::to_topic::send;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use salestalk_corrections::day::{
    Before, Corrections, DayCorrection, Refusal, Trigger, oldest_whole_day,
};
use salestalk_corrections::recompute::{Purpose, Recomputation};
use salestalk_kafka::admin;
use salestalk_kafka::producer::{self, deliver};
use salestalk_operators::time::{DAY_S, datetime, now_datetime};
use salestalk_sinks::clickhouse::write_flushes;
use salestalk_store::Endpoint;
use salestalk_store::tables::corrections::CorrectionRecord;
use salestalk_store::tables::events_raw::{ArchiveCursor, ReplaySelection};
use salestalk_store::tables::replays::ReplayRecord;

/// The header naming the replay a message came from.
pub const REPLAY_OF_HEADER: &str = "salestalk-replay-of";
/// Events read from the archive, and produced, at a time.
const PAGE: u64 = 2_000;

/// `salestalk replay` subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Send the selected archived events to a topic (or count them with --dry-run).
    Run(RunArgs),
    /// The replays made, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
}

/// `salestalk replay run` arguments.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["to_topic", "to_database", "backfill"])))]
pub struct RunArgs {
    /// The topic to send them to (it must exist).
    #[arg(long)]
    to_topic: Option<String>,
    /// A ClickHouse database (on the configured server) to recompute their metrics into.
    #[arg(long)]
    to_database: Option<String>,
    /// Correct the live metrics of whole, final UTC days now (--since, --until; --tenant
    /// narrows), as `salestalk run` does by itself for days it finds wrong.
    #[arg(long)]
    backfill: bool,
    /// Recompute into a --to-database that already holds metrics (its tables are emptied).
    #[arg(long)]
    overwrite: bool,
    /// Allow a topic the pipeline consumes (the live metrics would count them, deduplicated).
    #[arg(long)]
    into_live_topic: bool,
    /// Only these event ids (repeatable).
    #[arg(long = "event-id")]
    event_ids: Vec<String>,
    /// Only these tenants (repeatable).
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Only these event types (repeatable).
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    /// Only this correlation id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// Event time at or after (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Event time before (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// Count what would be sent; send nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs a `replay` subcommand.
pub fn execute(config: Option<&Path>, command: Command) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    let endpoint = settings.clickhouse.clone();
    match command {
        Command::List { limit } => {
            let replays = runtime.block_on(endpoint.replays(limit))?;
            for r in replays {
                let at = |s: u32| {
                    DateTime::from_timestamp(i64::from(s), 0)
                        .map_or_else(String::new, |t| t.to_rfc3339())
                };
                println!(
                    "{}  {}  by {}  {}  to {}  selected {}  sent {}{}",
                    r.replay_id,
                    at(r.started_at),
                    r.who,
                    r.selection,
                    r.target,
                    r.selected,
                    r.sent,
                    if r.dry_run == 1 { "  (dry run)" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => runtime.block_on(run(&settings, args)),
    }
}

async fn run(settings: &crate::settings::Settings, args: RunArgs) -> anyhow::Result<ExitCode> {
    let endpoint = &settings.clickhouse;
    if args.backfill {
        return backfill(settings, args).await;
    }
    let destination = match (&args.to_topic, &args.to_database) {
        (Some(topic), _) => Destination::Topic(checked_topic(settings, topic, &args).await?),
        (None, Some(database)) => {
            Destination::Database(checked_database(settings, database, &args).await?)
        }
        (None, None) => bail!("give --to-topic, --to-database or --backfill"),
    };
    let selection = ReplaySelection {
        event_ids: args.event_ids,
        tenants: args.tenants,
        event_types: args.event_types,
        correlation_id: args.correlation_id,
        since: args
            .since
            .map(|t| t.timestamp().clamp(0, i64::from(u32::MAX)) as u32),
        until: args
            .until
            .map(|t| t.timestamp().clamp(0, i64::from(u32::MAX)) as u32),
    };
    let started = Utc::now();
    let mut record = ReplayRecord {
        replay_id: format!("replay-{}", started.format("%Y%m%dT%H%M%S%.3fZ")),
        who: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        selection: selection.to_string(),
        target: destination.to_string(),
        dry_run: u8::from(args.dry_run),
        selected: endpoint.replay_count(&selection).await?,
        sent: 0,
        started_at: started.timestamp().clamp(0, i64::from(u32::MAX)) as u32,
        finished_at: started.timestamp().clamp(0, i64::from(u32::MAX)) as u32,
    };
    endpoint
        .record_replay(&record)
        .await
        .context("recording the replay")?;
    eprintln!(
        "{}: {} archived events selected ({})",
        record.replay_id, record.selected, record.selection
    );
    if !args.dry_run {
        match &destination {
            Destination::Topic(topic) => send(settings, topic, &selection, &mut record).await?,
            Destination::Database(target) => {
                recompute(settings, target, &selection, &mut record).await?
            }
        }
    }
    finish(endpoint, &mut record).await?;
    println!(
        "{} {} of {} archived events to {destination}",
        match (&destination, args.dry_run) {
            (Destination::Topic(_), true) => "would send",
            (Destination::Topic(_), false) => "sent",
            (Destination::Database(_), true) => "would recompute",
            (Destination::Database(_), false) => "recomputed",
        },
        if args.dry_run {
            record.selected
        } else {
            record.sent
        },
        record.selected,
    );
    Ok(ExitCode::SUCCESS)
}

/// Where a replay goes.
enum Destination {
    /// A Kafka topic.
    Topic(String),
    /// A separate database on the configured server.
    Database(Endpoint),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Topic(topic) => write!(f, "topic:{topic}"),
            Self::Database(endpoint) => write!(f, "database:{}", endpoint.database),
        }
    }
}

/// `topic`, if a replay may go there: not a live topic unless asked, and existing.
async fn checked_topic(
    settings: &crate::settings::Settings,
    topic: &str,
    args: &RunArgs,
) -> anyhow::Result<String> {
    if settings.kafka.topics.iter().any(|t| t == topic) && !args.into_live_topic {
        bail!(
            "{topic} is a topic the pipeline consumes: replaying into it changes the live \
             metrics (deduplicated by eventId); pass --into-live-topic if that is what you want"
        );
    }
    let missing = {
        let kafka = settings.kafka.clone();
        let topics = vec![topic.to_string()];
        tokio::task::spawn_blocking(move || admin::missing_topics(&kafka, &topics))
            .await
            .context("asking the brokers for the topic")?
            .context("asking the brokers for the topic")?
    };
    if !args.dry_run && !missing.is_empty() {
        bail!("topic {topic} does not exist; create it first");
    }
    Ok(topic.to_string())
}

/// The endpoint of `database`, if a replay may recompute into it: not the live database, a
/// plain name, and empty of metrics unless `--overwrite` (then emptied). Migrated.
async fn checked_database(
    settings: &crate::settings::Settings,
    database: &str,
    args: &RunArgs,
) -> anyhow::Result<Endpoint> {
    let live = &settings.clickhouse;
    if database == live.database {
        bail!("--to-database {database} is the live database; name another one");
    }
    if database.is_empty()
        || database.len() > 128
        || !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        bail!("--to-database '{database}': use letters, digits and '_' only");
    }
    let target = Endpoint {
        database: database.to_string(),
        ..live.clone()
    };
    if args.dry_run {
        return Ok(target);
    }
    let profile = target.probe().await?;
    target.migrate(&profile).await?;
    let rows: u64 = target
        .query(&format!(
            "SELECT toUInt64(count()) FROM {}",
            target.everywhere("window_state")
        ))
        .fetch_one()
        .await?;
    if rows > 0 {
        if !args.overwrite {
            bail!(
                "database {database} already holds metrics ({rows} rows): pass --overwrite to \
                 recompute into it"
            );
        }
        for table in [
            "window_state",
            "events_raw",
            "dead_letters",
            "sink_outcomes",
        ] {
            // Each shard's writer empties its own (a replicated table's TRUNCATE reaches the
            // other replicas of its shard).
            for writer in target.shard_writers() {
                writer
                    .query(&format!("TRUNCATE TABLE IF EXISTS {table}"))
                    .execute()
                    .await?;
            }
        }
    }
    Ok(target)
}

/// Stamps `record` finished now and stores it.
async fn finish(endpoint: &Endpoint, record: &mut ReplayRecord) -> anyhow::Result<()> {
    record.finished_at = now_datetime();
    endpoint
        .record_replay(record)
        .await
        .context("recording the replay")
}

/// Prints the progress line of `record` since `clock`.
fn progress(record: &ReplayRecord, clock: Instant, what: &str) {
    let seconds = clock.elapsed().as_secs_f64().max(1e-3);
    let rate = record.sent as f64 / seconds;
    let left = record.selected.saturating_sub(record.sent) as f64 / rate.max(1.0);
    eprintln!(
        "{what} {} of {} ({:.0} events/s, ETA {left:.0} s)",
        record.sent, record.selected, rate
    );
}
