//! `salestalk dlq`: list, show, redrive and discard dead letters (redrive itself is
//! `crate::redrive`, which targets that heal also use).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use salestalk_operators::DeadLetterAddress;
use salestalk_operators::dead_letter::DeadLetterReason;
use salestalk_operators::time::now_ms;
use salestalk_store::dead_letter_queue::{DlqEntry, DlqFilter};

use crate::run::redrive::redrive;
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
    /// Event id, in either letter case (repeatable).
    #[arg(long)]
    event_id: Vec<String>,
    /// Correlation id (`metadata.correlationId`), in either letter case (repeatable).
    #[arg(long)]
    correlation_id: Vec<String>,
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
            correlation_ids: self.correlation_id,
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
            "{:<40} {:<20} {:<19} {:<20} {:<28} {:<9} {:<36} ERROR",
            "ID", "REASON", "READ AT", "TENANT", "EVENT TYPE", "STATUS", "CORRELATION"
        )?;
        for e in &entries {
            let error: String = e.error.chars().take(80).collect();
            writeln!(
                out,
                "{:<40} {:<20} {:<19} {:<20} {:<28} {:<9} {:<36} {error}",
                e.id(),
                e.reason,
                super::utc_time(e.broker_time),
                e.tenant_id,
                e.event_type,
                e.status,
                e.correlation_id
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
        writeln!(out, "resolved at:   {}", super::utc_time(entry.resolved_at))?;
    }
    writeln!(out, "reason:        {}", entry.reason)?;
    writeln!(out, "error:         {}", entry.error)?;
    writeln!(out, "tenant:        {}", entry.tenant_id)?;
    writeln!(out, "event type:    {}", entry.event_type)?;
    writeln!(out, "event id:      {}", entry.event_id)?;
    writeln!(out, "correlation:   {}", entry.correlation_id)?;
    writeln!(out, "read at:       {}", super::utc_time(entry.broker_time))?;
    writeln!(out, "attempts:      {}", entry.attempts)?;
    writeln!(
        out,
        "first failure: {}",
        super::utc_time(entry.first_failure)
    )?;
    writeln!(
        out,
        "last failure:  {}",
        super::utc_time(entry.last_failure)
    )?;
    writeln!(out, "bytes:         {}", entry.bytes)?;
    match std::str::from_utf8(&raw) {
        Ok(text) => writeln!(out, "raw:\n{text}")?,
        Err(_) => writeln!(out, "raw (not UTF-8, escaped):\n{}", raw.escape_ascii())?,
    }
    Ok(true)
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
         --event-id, --correlation-id, --since or --until"
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
