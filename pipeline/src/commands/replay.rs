//! `salestalk replay`: send archived events again, selected by event id, tenant, event type,
//! correlation id and event time, to an isolated Kafka topic (never a live one unless asked),
//! with a progress line (rate, ETA) and a `--dry-run` that only counts; every replay is
//! recorded, and `replay list` shows them. Each event goes once, keyed by tenant, with the
//! header `salestalk-replay-of: <replay id>`; replaying the same selection twice sends the
//! same events again, which a consumer deduplicating by `eventId` counts once.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use salestalk_kafka::admin;
use salestalk_kafka::producer::{self, deliver};
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
pub struct RunArgs {
    /// The topic to send them to (it must exist).
    #[arg(long)]
    to_topic: String,
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
    if settings.kafka.topics.contains(&args.to_topic) && !args.into_live_topic {
        bail!(
            "{} is a topic the pipeline consumes: replaying into it changes the live metrics \
             (deduplicated by eventId); pass --into-live-topic if that is what you want",
            args.to_topic
        );
    }
    let missing = {
        let kafka = settings.kafka.clone();
        let topic = vec![args.to_topic.clone()];
        tokio::task::spawn_blocking(move || admin::missing_topics(&kafka, &topic))
            .await
            .context("asking the brokers for the topic")?
            .context("asking the brokers for the topic")?
    };
    if !args.dry_run && !missing.is_empty() {
        bail!("topic {} does not exist; create it first", args.to_topic);
    }
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
        target: format!("topic:{}", args.to_topic),
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
        let producer =
            producer::acknowledged(&settings.kafka).context("creating the Kafka producer")?;
        let clock = Instant::now();
        let (mut tenant, mut event_id) = (String::new(), String::new());
        loop {
            let page = endpoint
                .replay_page(&selection, (&tenant, &event_id), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            (tenant, event_id) = (last.tenant_id.clone(), last.event_id.clone());
            let records = page.iter().map(|event| {
                FutureRecord::to(&args.to_topic)
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
            let seconds = clock.elapsed().as_secs_f64().max(1e-3);
            let rate = record.sent as f64 / seconds;
            let left = record.selected.saturating_sub(record.sent) as f64 / rate.max(1.0);
            eprintln!(
                "sent {} of {} ({:.0} events/s, ETA {left:.0} s)",
                record.sent, record.selected, rate
            );
        }
    }
    record.finished_at = Utc::now().timestamp().clamp(0, i64::from(u32::MAX)) as u32;
    endpoint
        .record_replay(&record)
        .await
        .context("recording the replay")?;
    println!(
        "{} {} of {} archived events to {}",
        if args.dry_run { "would send" } else { "sent" },
        if args.dry_run {
            record.selected
        } else {
            record.sent
        },
        record.selected,
        args.to_topic
    );
    Ok(ExitCode::SUCCESS)
}
