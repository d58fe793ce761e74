//! `salestalk replay`: archived events again, selected by event id, tenant, event type,
//! correlation id and event time, with a progress line (rate, ETA) and a `--dry-run` that only
//! counts; every replay is recorded, and `replay list` shows them. Two destinations:
//! - `--to-topic`: an isolated Kafka topic (never a live one unless asked); each event once,
//!   keyed by tenant, with the header `salestalk-replay-of: <replay id>`; replaying the same
//!   selection twice sends the same events again, which a consumer deduplicating by `eventId`
//!   counts once.
//! - `--to-database`: every metric of the selection recomputed by the same operators
//!   ([`crate::recompute`]) into a separate ClickHouse database, the live one untouched;
//!   replaying again (`--overwrite`) recomputes the same numbers.

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
use salestalk_sinks::clickhouse::write_flushes;
use salestalk_store::Endpoint;
use salestalk_store::corrections::{CorrectionRecord, DAY_S};
use salestalk_store::replay::{ReplayRecord, ReplaySelection};

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
    record.finished_at = Utc::now().timestamp().clamp(0, i64::from(u32::MAX)) as u32;
    endpoint
        .record_replay(&record)
        .await
        .context("recording the replay")?;
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

/// `--backfill`: corrects whole UTC days now, tenant by tenant, as the corrector of `salestalk
/// run` does when it finds them wrong (ADR 0016): each tenant's day recomputed from the
/// archive (late events and the events dead-lettered as late included, each event once) and
/// written over the live rows at a correction epoch. Only days every task is past, and only
/// days the archive still holds in full.
async fn backfill(settings: &crate::settings::Settings, args: RunArgs) -> anyhow::Result<ExitCode> {
    let corrector = settings.corrector();
    let endpoint = &settings.clickhouse;
    if !args.event_ids.is_empty() || !args.event_types.is_empty() || args.correlation_id.is_some() {
        bail!(
            "--backfill corrects whole windows: it takes --since, --until and --tenant only \
             (an event-type or event-id filter would leave part of a window's events out)"
        );
    }
    let (Some(since), Some(until)) = (args.since, args.until) else {
        bail!("--backfill needs --since and --until");
    };
    // Whole days: a day's and an hour's rollup rows are rewritten too, and must hold every
    // minute of theirs.
    let since_s = since.timestamp().div_euclid(DAY_S) * DAY_S;
    let until_s = (until.timestamp() + DAY_S - 1).div_euclid(DAY_S) * DAY_S;
    anyhow::ensure!(since_s < until_s, "--since must be before --until");
    let started = Utc::now();
    let now_ms = started.timestamp_millis().max(0) as u64;
    let oldest = oldest_whole_day(settings.retention.archive_days, now_ms);
    if since_s < oldest {
        bail!(
            "the archive holds whole days from {} on (retention.archive_days = {}): a backfill \
             from {} would need it from {}, and would recompute a day from part of its events",
            date(oldest),
            settings.retention.archive_days,
            date(since_s),
            date(since_s)
        );
    }
    let range = (to_u32(since_s), to_u32(until_s));
    let mut record = ReplayRecord {
        replay_id: format!("replay-{}", started.format("%Y%m%dT%H%M%S%.3fZ")),
        who: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        selection: ReplaySelection {
            tenants: args.tenants.clone(),
            since: Some(range.0),
            until: Some(range.1),
            ..ReplaySelection::default()
        }
        .to_string(),
        target: "backfill".into(),
        dry_run: u8::from(args.dry_run),
        selected: 0,
        sent: 0,
        started_at: to_u32(started.timestamp()),
        finished_at: 0,
    };
    // Every task that wrote the days must be past them for good: checked for the whole range
    // before anything is written.
    let open_from = salestalk_corrections::open_from(&corrector).await?;
    let days: Vec<i64> = (since_s..until_s).step_by(DAY_S as usize).collect();
    for day in &days {
        for task in endpoint.tasks_of_day(*day).await? {
            let open = open_from.get(&task).copied();
            if open.is_none_or(|open| open < day + DAY_S) {
                bail!(
                    "{}: backfill whole days that ended before then (its watermark minus the \
                     allowed lateness)",
                    Refusal::NotFinal {
                        task,
                        open_from: open
                    }
                );
            }
        }
    }
    let checks: BTreeMap<(String, i64), CorrectionRecord> = endpoint
        .latest_checks(since_s, until_s)
        .await?
        .into_iter()
        .map(|c| ((c.tenant_id.clone(), i64::from(c.day) * DAY_S), c))
        .collect();
    let live = endpoint.live_day_volumes(since_s, until_s).await?;
    let arrivals = endpoint.late_arrivals(since_s, until_s).await?;
    let (mut events, mut late, mut rows) = (0i64, 0i64, 0u64);
    let mut held = Corrections::default();
    for day in days {
        let mut tenants: BTreeSet<String> = args.tenants.iter().cloned().collect();
        if tenants.is_empty() {
            tenants.extend(live.iter().filter(|r| r.1 == day).map(|r| r.0.clone()));
            tenants.extend(arrivals.iter().filter(|r| r.1 == day).map(|r| r.0.clone()));
            tenants.extend(
                endpoint
                    .archived_per_tenant(day)
                    .await?
                    .into_iter()
                    .map(|r| r.0),
            );
        }
        for tenant in tenants {
            let total = |rows: &[(String, i64, i64)]| {
                rows.iter()
                    .find(|r| r.0 == tenant && r.1 == day)
                    .map_or(0, |r| r.2)
            };
            let correction = DayCorrection {
                settings: &corrector,
                tenant: &tenant,
                day,
                trigger: Trigger::Backfill,
                before: Before::new(
                    total(&live),
                    total(&arrivals),
                    checks.get(&(tenant.clone(), day)),
                ),
            };
            if args.dry_run {
                continue;
            }
            match correction.prepare(&open_from, now_ms, true).await? {
                Ok(prepared) => {
                    let done = &prepared.record;
                    events += done.events;
                    late += done.late_events;
                    rows += done.rows_written;
                    eprintln!(
                        "{tenant} {}: {} events ({} late, {} counted twice before), {} rows",
                        date(day),
                        done.events,
                        done.late_events,
                        done.duplicates_removed,
                        done.rows_written
                    );
                    held.add(&corrector, prepared).await?;
                }
                Err(refusal) => bail!("{tenant} {}: {refusal}", date(day)),
            }
        }
    }
    held.write(&corrector).await?;
    record.selected = events.max(0) as u64;
    record.sent = record.selected;
    record.finished_at = to_u32(Utc::now().timestamp());
    endpoint
        .record_replay(&record)
        .await
        .context("recording the replay")?;
    println!(
        "{} {events} events ({late} of them late) over {}: {rows} window rows rewritten",
        if args.dry_run {
            "would backfill"
        } else {
            "backfilled"
        },
        record.selection
    );
    Ok(ExitCode::SUCCESS)
}

fn to_u32(seconds: i64) -> u32 {
    seconds.clamp(0, i64::from(u32::MAX)) as u32
}

fn date(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |t| t.date_naive().to_string())
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
        .query("SELECT toUInt64(count()) FROM window_state")
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
            target
                .query(&format!("TRUNCATE TABLE IF EXISTS {table}"))
                .execute()
                .await?;
        }
    }
    Ok(target)
}

/// Where paging through the archive (in (tenant, eventId) order) is: after this event.
#[derive(Default)]
struct Cursor {
    tenant: String,
    event_id: String,
}

impl Cursor {
    /// The bound the next page starts after.
    fn after(&self) -> (&str, &str) {
        (&self.tenant, &self.event_id)
    }

    /// Moves past the last event of a page.
    fn past(&mut self, tenant: &str, event_id: &str) {
        tenant.clone_into(&mut self.tenant);
        event_id.clone_into(&mut self.event_id);
    }
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

/// Sends the selection to `topic`, page by page.
async fn send(
    settings: &crate::settings::Settings,
    topic: &str,
    selection: &ReplaySelection,
    record: &mut ReplayRecord,
) -> anyhow::Result<()> {
    let endpoint = &settings.clickhouse;
    let producer =
        producer::acknowledged(&settings.kafka).context("creating the Kafka producer")?;
    let clock = Instant::now();
    let mut cursor = Cursor::default();
    loop {
        let page = endpoint
            .replay_page(selection, cursor.after(), PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        cursor.past(&last.tenant_id, &last.event_id);
        let records = page.iter().map(|event| {
            FutureRecord::to(topic)
                .key(event.tenant_id.as_str())
                .payload(&event.raw[..])
                .headers(OwnedHeaders::new().insert(Header {
                    key: REPLAY_OF_HEADER,
                    value: Some(record.replay_id.as_str()),
                }))
        });
        let failed: Vec<_> = deliver(&producer, records)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if let Some(error) = failed.first() {
            bail!(
                "{} events of a page were not taken ({error}); {} sent so far: run it again",
                failed.len(),
                record.sent
            );
        }
        record.sent += page.len() as u64;
        progress(record, clock, "sent");
    }
    Ok(())
}

/// Recomputes the selection's metrics into `target`, page by page (each page one flush).
async fn recompute(
    settings: &crate::settings::Settings,
    target: &Endpoint,
    selection: &ReplaySelection,
    record: &mut ReplayRecord,
) -> anyhow::Result<()> {
    let endpoint = &settings.clickhouse;
    let mut recomputation = Recomputation::new(&settings.corrector(), Purpose::Database)?;
    let clock = Instant::now();
    let mut cursor = Cursor::default();
    loop {
        let page = endpoint
            .replay_copies(selection, cursor.after(), PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        cursor.past(&last.tenant_id, &last.event_id);
        for event in &page {
            recomputation.feed(event);
        }
        let durable_at = Utc::now().timestamp_millis().max(0) as u64;
        let flushes = recomputation.flush(durable_at as i64);
        write_flushes(target, &flushes, durable_at)
            .await
            .context("writing the recomputed metrics")?;
        record.sent = recomputation.events;
        progress(record, clock, "recomputed");
    }
    Ok(())
}
