//! `salestalk dlq`: list, show, redrive and discard dead letters.
//!
//! Redrive produces each entry's raw bytes back to the partition it was read from (keyed by
//! tenant, as producers do), so it takes the normal path through the same task: validated
//! again, deduplicated by `(tenantId, eventId)` against what that partition counted (an event
//! redriven twice, or redriven after it was counted, counts once), and counted or
//! dead-lettered again with its new offset. The default partitioner would choose by key,
//! which need not be the partition the message came from (a producer may pick partitions
//! itself, or the topic may have grown), and another partition's task would count it again.
//! An entry the ingest gateway refused never had a partition (it is stored as partition -1):
//! it goes where its tenant key leads, as the gateway would have sent it; one that routes
//! nowhere it may go (`ingest.refused`: no known type, or another tenant's event) is never
//! produced. Entries are marked `redriven` only once the broker has them; a redrive cut short
//! can be run again. An entry read from a Kinesis shard (topic `kinesis:<stream>`) is put
//! back to its stream with its tenant as partition key, as producers put it: it lands in the
//! shard that holds the tenant now, the same one or a child of it, whose task's dedup
//! continues its parents' (docs/kinesis.md).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use salestalk_kafka::producer::{self, deliver};
use salestalk_kinesis::put::{Outcome as KinesisOutcome, Record as KinesisRecord, put_records};
use salestalk_operators::dead_letter::DeadLetterReason;
use salestalk_operators::{DeadLetterAddress, SourceKind, SourcePartition};
use salestalk_sinks::clickhouse::ingest_ledger::NO_TOPIC;
use salestalk_sinks::kafka::dead_letter_topic::header;
use salestalk_store::dead_letter_queue::{DlqEntry, DlqFilter};

use crate::settings::Settings;

/// `salestalk dlq` subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// List entries (pending ones unless --status says otherwise), oldest first.
    List {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// pending, answered (refused at ingest: the publisher was told), redriven, discarded,
        /// backfilled or any.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Most entries listed.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one entry in full, raw message included.
    Show {
        /// The entry id, topic/partition/offset (as listed).
        id: String,
    },
    /// Produce pending entries back to their source topics, through the normal path.
    Redrive {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// Most entries redriven.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
        /// List what would be redriven, and do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Mark pending entries discarded (they leave the DLQ depth; the data stays).
    Discard {
        /// Which entries.
        #[command(flatten)]
        filter: FilterArgs,
        /// Why, stored with the action.
        #[arg(long, default_value = "")]
        note: String,
        /// Most entries discarded.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
    },
}

/// The filters every subcommand takes.
#[derive(clap::Args)]
pub struct FilterArgs {
    /// Entry id, topic/partition/offset (repeatable).
    #[arg(long)]
    id: Vec<String>,
    /// The topic an entry is addressed to, e.g. a routing target's (repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// Reason, e.g. schema_violation (repeatable).
    #[arg(long)]
    reason: Vec<String>,
    /// Tenant (repeatable).
    #[arg(long)]
    tenant: Vec<String>,
    /// Event type (repeatable).
    #[arg(long)]
    event_type: Vec<String>,
    /// Event id (repeatable).
    #[arg(long)]
    event_id: Vec<String>,
    /// Read at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Read before this time (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
}

impl FilterArgs {
    fn filter(self, status: Option<String>, limit: u64) -> anyhow::Result<DlqFilter> {
        let reasons = DeadLetterReason::ALL.map(DeadLetterReason::as_str);
        let mut problems = Vec::new();
        for reason in &self.reason {
            if !reasons.contains(&reason.as_str()) {
                problems.push(format!(
                    "unknown reason '{reason}' (one of {})",
                    reasons.join(", ")
                ));
            }
        }
        for id in &self.id {
            if DeadLetterAddress::parse(id).is_none() {
                problems.push(format!(
                    "'{id}' is not an entry id (topic/partition/offset)"
                ));
            }
        }
        if let Some(status) = &status
            && ![
                "pending",
                "answered",
                "redriven",
                "discarded",
                "backfilled",
                "any",
            ]
            .contains(&status.as_str())
        {
            problems.push(format!(
                "unknown status '{status}' (pending, answered, redriven, discarded, backfilled or any)"
            ));
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        let seconds = |t: DateTime<Utc>| u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX);
        Ok(DlqFilter {
            ids: self.id,
            topics: self.topic,
            reasons: self.reason,
            tenants: self.tenant,
            event_types: self.event_type,
            event_ids: self.event_id,
            since: self.since.map(seconds),
            until: self.until.map(seconds),
            status: status.filter(|s| s != "any"),
            limit,
        })
    }
}

/// Runs a `dlq` subcommand.
pub fn execute(config: Option<&Path>, command: Command) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    runtime.block_on(dispatch(&settings, command))
}

async fn dispatch(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List {
            filter,
            status,
            limit,
            json,
        } => {
            list(settings, &filter.filter(Some(status), limit)?, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { id } => Ok(if show(settings, &id).await? {
            ExitCode::SUCCESS
        } else {
            eprintln!("no dead letter {id}");
            ExitCode::from(1)
        }),
        Command::Redrive {
            filter,
            limit,
            dry_run,
        } => {
            let (entries, done) = redrive(settings, &filter.filter(None, limit)?, dry_run).await?;
            if dry_run {
                for entry in &entries {
                    println!("{} {} {}", entry.id(), entry.reason, entry.event_id);
                }
                println!("would redrive {} entr(ies)", entries.len());
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "redrove {} entr(ies); {} not taken by the broker (still pending)",
                done.produced, done.failed
            );
            Ok(if done.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Discard {
            filter,
            note,
            limit,
        } => {
            let entries = discard(settings, &filter.filter(None, limit)?, &note).await?;
            println!("discarded {} entr(ies)", entries.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Header a redriven message carries: the id of the entry it came from.
pub const REDRIVE_OF_HEADER: &str = "salestalk.redrive-of";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn time(seconds: u32) -> String {
    if seconds == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp(i64::from(seconds), 0).map_or_else(
        || seconds.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// Prints the entries matching `filter`: a table, or one JSON object per line.
pub async fn list(settings: &Settings, filter: &DlqFilter, json: bool) -> anyhow::Result<usize> {
    let entries = settings
        .clickhouse
        .clone()
        .dlq_entries(filter)
        .await
        .context("reading the dead-letter queue")?;
    let mut out = std::io::stdout().lock();
    if json {
        for entry in &entries {
            let mut value = serde_json::to_value(entry)?;
            value["id"] = entry.id().into();
            writeln!(out, "{value}")?;
        }
    } else {
        writeln!(
            out,
            "{:<40} {:<20} {:<19} {:<20} {:<28} {:<9} ERROR",
            "ID", "REASON", "READ AT", "TENANT", "EVENT TYPE", "STATUS"
        )?;
        for e in &entries {
            let error: String = e.error.chars().take(80).collect();
            writeln!(
                out,
                "{:<40} {:<20} {:<19} {:<20} {:<28} {:<9} {error}",
                e.id(),
                e.reason,
                time(e.broker_time),
                e.tenant_id,
                e.event_type,
                e.status
            )?;
        }
    }
    Ok(entries.len())
}

/// Prints one entry in full, with its raw message (as text when it is UTF-8).
pub async fn show(settings: &Settings, id: &str) -> anyhow::Result<bool> {
    let address = DeadLetterAddress::parse(id)
        .with_context(|| format!("'{id}' is not an entry id (topic/partition/offset)"))?;
    let endpoint = settings.clickhouse.clone();
    let filter = DlqFilter {
        ids: vec![id.to_string()],
        limit: 1,
        ..DlqFilter::default()
    };
    let Some(entry) = endpoint.dlq_entries(&filter).await?.into_iter().next() else {
        return Ok(false);
    };
    let raw = endpoint.dlq_raw(&address).await?.unwrap_or_default();
    let mut out = std::io::stdout().lock();
    writeln!(out, "id:            {}", entry.id())?;
    writeln!(out, "status:        {}", entry.status)?;
    if entry.resolved_at > 0 {
        writeln!(out, "resolved at:   {}", time(entry.resolved_at))?;
    }
    writeln!(out, "reason:        {}", entry.reason)?;
    writeln!(out, "error:         {}", entry.error)?;
    writeln!(out, "tenant:        {}", entry.tenant_id)?;
    writeln!(out, "event type:    {}", entry.event_type)?;
    writeln!(out, "event id:      {}", entry.event_id)?;
    writeln!(out, "read at:       {}", time(entry.broker_time))?;
    writeln!(out, "attempts:      {}", entry.attempts)?;
    writeln!(out, "first failure: {}", time(entry.first_failure))?;
    writeln!(out, "last failure:  {}", time(entry.last_failure))?;
    writeln!(out, "bytes:         {}", entry.bytes)?;
    match std::str::from_utf8(&raw) {
        Ok(text) => writeln!(out, "raw:\n{text}")?,
        Err(_) => writeln!(out, "raw (not UTF-8, escaped):\n{}", raw.escape_ascii())?,
    }
    Ok(true)
}

/// What a redrive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Entries produced back to their topics and marked `redriven`.
    pub produced: usize,
    /// Entries the broker did not take (still pending).
    pub failed: usize,
}

/// Produces the pending entries matching `filter` back to their source topics.
pub async fn redrive(
    settings: &Settings,
    filter: &DlqFilter,
    dry_run: bool,
) -> anyhow::Result<(Vec<DlqEntry>, Redriven)> {
    redrive_noting(settings, filter, dry_run, "salestalk dlq redrive").await
}

/// [`redrive`], with `note` stored beside each entry marked redriven (who or what did it).
pub async fn redrive_noting(
    settings: &Settings,
    filter: &DlqFilter,
    dry_run: bool,
    note: &str,
) -> anyhow::Result<(Vec<DlqEntry>, Redriven)> {
    let endpoint = settings.clickhouse.clone();
    let filter = DlqFilter {
        status: Some("unresolved".into()),
        ..filter.clone()
    };
    let (entries, unroutable): (Vec<DlqEntry>, Vec<DlqEntry>) = endpoint
        .dlq_entries(&filter)
        .await?
        .into_iter()
        .partition(|entry| entry.topic != NO_TOPIC);
    if !unroutable.is_empty() {
        tracing::warn!(
            entries = unroutable.len(),
            "left pending: refused at ingest with no topic they may go to (discard them)"
        );
    }
    if dry_run || entries.is_empty() {
        return Ok((
            entries,
            Redriven {
                produced: 0,
                failed: 0,
            },
        ));
    }
    let mut raws = Vec::with_capacity(entries.len());
    for entry in &entries {
        let raw = endpoint
            .dlq_raw(&entry.address())
            .await?
            .unwrap_or_default();
        raws.push(raw);
    }
    let selected = entries.clone();
    let (kinesis, kafka): (Vec<usize>, Vec<usize>) = (0..entries.len())
        .partition(|i| entries[*i].address().source_kind() == Some(SourceKind::Kinesis));
    let mut delivered = redrive_to_kinesis(settings, &entries, &raws, &kinesis).await?;
    let (entries, raws): (Vec<DlqEntry>, Vec<Vec<u8>>) = kafka
        .iter()
        .map(|i| (entries[*i].clone(), raws[*i].clone()))
        .unzip();
    let mut failed = kinesis.len() - delivered.len();
    if entries.is_empty() {
        return finish_redrive(&endpoint, selected, delivered, failed, note).await;
    }
    let producer =
        producer::acknowledged(&settings.kafka).context("creating the Kafka producer")?;
    let ids: Vec<String> = entries.iter().map(DlqEntry::id).collect();
    // Collected before the await: a lazy iterator of borrowing closures held across it would
    // keep the future from being `Send` (the healing runs it on a spawned task).
    let records: Vec<FutureRecord<'_, str, [u8]>> = entries
        .iter()
        .zip(&raws)
        .zip(&ids)
        .map(|((entry, raw), id)| {
            let record = FutureRecord::to(&entry.topic)
                .partition(entry.partition)
                .payload(&raw[..])
                .headers(redrive_headers(id, entry));
            if entry.tenant_id.is_empty() {
                record
            } else {
                record.key(entry.tenant_id.as_str())
            }
        })
        .collect();
    let outcomes = deliver(&producer, records).await;
    for (entry, outcome) in entries.iter().zip(outcomes) {
        match outcome {
            Ok(()) => delivered.push(entry.clone()),
            Err(error) => {
                failed += 1;
                tracing::warn!(id = %entry.id(), %error, "not redriven");
            }
        }
    }
    finish_redrive(&endpoint, selected, delivered, failed, note).await
}

/// Marks the `delivered` entries (of those `selected`) redriven.
async fn finish_redrive(
    endpoint: &salestalk_store::Endpoint,
    selected: Vec<DlqEntry>,
    delivered: Vec<DlqEntry>,
    failed: usize,
    note: &str,
) -> anyhow::Result<(Vec<DlqEntry>, Redriven)> {
    endpoint
        .dlq_resolve(&delivered, "redriven", note, now_ms())
        .await
        .context("marking entries redriven")?;
    let produced = delivered.len();
    Ok((selected, Redriven { produced, failed }))
}

/// Puts the entries at `which` (read from Kinesis shards) back to their streams; returns
/// the ones the service stored.
async fn redrive_to_kinesis(
    settings: &Settings,
    entries: &[DlqEntry],
    raws: &[Vec<u8>],
    which: &[usize],
) -> anyhow::Result<Vec<DlqEntry>> {
    let mut delivered = Vec::new();
    if which.is_empty() {
        return Ok(delivered);
    }
    let client = salestalk_kinesis::client(&settings.kinesis).await;
    let mut by_stream: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for i in which {
        if let Some(stream) = SourcePartition::stream_of(&entries[*i].topic) {
            by_stream.entry(stream).or_default().push(*i);
        }
    }
    for (stream, members) in by_stream {
        let records: Vec<KinesisRecord<'_>> = members
            .iter()
            .map(|i| KinesisRecord {
                // A letter with no readable tenant has no key of its own (a key may not be
                // empty); one shared key keeps them in one shard.
                partition_key: [&entries[*i].tenant_id, &entries[*i].event_id]
                    .into_iter()
                    .find(|key| !key.is_empty())
                    .map_or("unreadable", String::as_str),
                data: &raws[*i],
            })
            .collect();
        let outcomes = put_records(&client, stream, &records)
            .await
            .with_context(|| format!("putting to {stream}"))?;
        for (i, outcome) in members.iter().zip(outcomes) {
            match outcome {
                KinesisOutcome::Stored { .. } => delivered.push(entries[*i].clone()),
                KinesisOutcome::Failed(error) => {
                    tracing::warn!(id = %entries[*i].id(), %error, "not redriven");
                }
            }
        }
    }
    Ok(delivered)
}

/// A redriven record's headers: the entry it redrives and, when known, the event's id, type
/// and tenant, as delivery to a routing target sets them (an undelivered event's redrive is
/// its delivery).
fn redrive_headers(id: &str, entry: &DlqEntry) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(4).insert(Header {
        key: REDRIVE_OF_HEADER,
        value: Some(id),
    });
    for (key, value) in [
        (header::EVENT_ID, &entry.event_id),
        (header::EVENT_TYPE, &entry.event_type),
        (header::TENANT, &entry.tenant_id),
    ] {
        if !value.is_empty() {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
    }
    headers
}

/// Marks the pending entries matching `filter` discarded; returns them.
pub async fn discard(
    settings: &Settings,
    filter: &DlqFilter,
    note: &str,
) -> anyhow::Result<Vec<DlqEntry>> {
    anyhow::ensure!(
        filter.is_narrowed(),
        "refusing to discard every entry: give --id, --reason, --tenant, --event-type, \
         --event-id, --since or --until"
    );
    let endpoint = settings.clickhouse.clone();
    let filter = DlqFilter {
        status: Some("unresolved".into()),
        ..filter.clone()
    };
    let entries = endpoint.dlq_entries(&filter).await?;
    endpoint
        .dlq_resolve(&entries, "discarded", note, now_ms())
        .await
        .context("marking entries discarded")?;
    Ok(entries)
}
