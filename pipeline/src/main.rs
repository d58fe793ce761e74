//! `salestalk`: validate, generate and process SalesTalk events.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use salestalk::generate::{FaultRates, Generator, GeneratorOptions, Stop};
use salestalk::run::{RunLimits, run};
use salestalk::settings::Settings;
use salestalk::validate::{OutputFormat, validate_stream};
use salestalk::{logging, produce};
use salestalk_store::billing::Month;
use salestalk_store::dead_letter_queue::DlqFilter;

#[derive(Parser)]
#[command(
    name = "salestalk",
    version,
    about = "SalesTalk event analytics pipeline"
)]
struct Cli {
    /// A TOML file layered over the built-in defaults (see config/salestalk.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check JSON Lines events against the contracts. Exit 0: all valid, 1: some invalid, 2: error.
    Validate {
        /// File to read; `-` or nothing for standard input.
        #[arg(value_name = "FILE|-")]
        input: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: OutputFormat,
        /// Lines longer than this are reported as oversized without being parsed.
        #[arg(long, default_value_t = 64 << 20)]
        max_line_bytes: usize,
    },
    /// Generate realistic synthetic traffic (deterministic for a seed).
    Generate(GenerateArgs),
    /// Consume the configured topics into windowed metrics in ClickHouse; print a summary.
    Run {
        /// Stop once every partition is read to its end and nothing has arrived for this long
        /// (e.g. 10s); default: run until SIGTERM.
        #[arg(long, value_parser = humantime::parse_duration)]
        idle_exit: Option<Duration>,
        /// Stop after this many messages.
        #[arg(long)]
        max_messages: Option<u64>,
    },
    /// Print P50/P95/P99 processing latency per consumer, merged over a time range and tenants.
    Latency {
        /// How far back to look (e.g. 15m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Only these tenants (repeatable); default: all.
        #[arg(long)]
        tenant: Vec<String>,
        /// Only these event types (repeatable); default: all.
        #[arg(long)]
        event_type: Vec<String>,
    },
    /// Inspect and resolve the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Serve GET /api/alerts and evaluate the alert rules, notifying the webhooks.
    Serve,
    /// The alert notifications sent so far.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Billing: per-tenant monthly cost rollups.
    #[command(subcommand)]
    Billing(BillingCommand),
    /// Apply the ClickHouse schema migrations this server lacks (also done by `run`).
    Migrate,
    /// Check the configuration and that Kafka and ClickHouse answer.
    Check,
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// The latest notifications (firing and resolved), newest first.
    History {
        /// Most notifications listed.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Write one CSV row per tenant for a calendar month: messages, tokens, the exact cost and
    /// the cost billed (rounded to the cent).
    Export {
        /// The month, YYYY-MM (UTC).
        #[arg(long, value_parser = clap::value_parser!(Month))]
        month: Month,
        /// File to write; standard output by default.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List entries (pending ones unless --status says otherwise), oldest first.
    List {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// pending, redriven, discarded or any.
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
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Most entries redriven.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
        /// List what would be redriven, and do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Mark pending entries discarded (they leave the DLQ depth; the data stays).
    Discard {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Why, stored with the action.
        #[arg(long, default_value = "")]
        note: String,
        /// Most entries discarded.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
    },
}

#[derive(Args)]
struct DlqFilterArgs {
    /// Entry id, topic/partition/offset (repeatable).
    #[arg(long)]
    id: Vec<String>,
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

impl DlqFilterArgs {
    fn filter(self, status: Option<String>, limit: u64) -> anyhow::Result<DlqFilter> {
        const REASONS: [&str; 8] = [
            "not_json",
            "schema_violation",
            "unknown_event_type",
            "unsupported_version",
            "oversized",
            "late",
            "sink_rejected",
            "retries_exhausted",
        ];
        let mut problems = Vec::new();
        for reason in &self.reason {
            if !REASONS.contains(&reason.as_str()) {
                problems.push(format!(
                    "unknown reason '{reason}' (one of {})",
                    REASONS.join(", ")
                ));
            }
        }
        for id in &self.id {
            if salestalk::dlq::parse_id(id).is_none() {
                problems.push(format!(
                    "'{id}' is not an entry id (topic/partition/offset)"
                ));
            }
        }
        if let Some(status) = &status
            && !["pending", "redriven", "discarded", "any"].contains(&status.as_str())
        {
            problems.push(format!(
                "unknown status '{status}' (pending, redriven, discarded or any)"
            ));
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        let seconds = |t: DateTime<Utc>| u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX);
        Ok(DlqFilter {
            ids: self.id,
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

#[derive(Args)]
struct GenerateArgs {
    /// Seed of the random stream: the same seed and options give the same events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of events of the clean stream (before duplicates).
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Span of event time to generate (e.g. 10m, 2h).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Mean events per second of event time.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Number of tenants (their sizes are skewed).
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// Event time of the first event: RFC 3339, or `now`.
    #[arg(long, default_value = "2025-11-09T00:00:00Z")]
    start: String,
    /// Share of events resent with the same eventId.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Share of events broken on purpose (bad JSON, missing fields, wrong types, ...).
    #[arg(long, default_value_t = 0.0)]
    invalid: f64,
    /// Share of events delivered after later ones.
    #[arg(long, default_value_t = 0.0)]
    out_of_order: f64,
    /// Share of events delivered minutes late.
    #[arg(long, default_value_t = 0.0)]
    late: f64,
    /// Share of events stamped by a clock hours ahead.
    #[arg(long, default_value_t = 0.0)]
    future_skew: f64,
    /// Write JSON Lines here (`-` for standard output, the default).
    #[arg(long, value_name = "FILE|-", conflicts_with = "kafka")]
    output: Option<PathBuf>,
    /// Produce to Kafka instead (topic per event domain, key = tenantId).
    #[arg(long)]
    kafka: bool,
    /// With --kafka: send each event when its event time comes round on the wall clock (live
    /// traffic; use with --start now) instead of as fast as possible.
    #[arg(long, requires = "kafka")]
    realtime: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(error) => {
            // A closed stdout (`salestalk validate ... | head`) is the reader's choice, not news.
            let broken_pipe = error
                .downcast_ref::<io::Error>()
                .or_else(|| error.root_cause().downcast_ref::<io::Error>())
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe);
            if !broken_pipe {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(2)
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate {
            input,
            format,
            max_line_bytes,
        } => {
            let stdout = io::stdout().lock();
            let out = BufWriter::new(stdout);
            let summary = match input.filter(|p| p.as_os_str() != "-") {
                Some(path) => {
                    let file =
                        File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                    validate_stream(
                        BufReader::with_capacity(1 << 20, file),
                        out,
                        format,
                        max_line_bytes,
                    )
                }
                None => validate_stream(io::stdin().lock(), out, format, max_line_bytes),
            }
            .context("validating")?;
            eprintln!(
                "{} line(s): {} valid, {} invalid",
                summary.lines, summary.valid, summary.invalid
            );
            Ok(if summary.invalid == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Generate(args) => generate(cli.config, args),
        Command::Run {
            idle_exit,
            max_messages,
        } => {
            let (settings, runtime) = start(cli.config.as_deref())?;
            let tally = runtime.block_on(run(
                &settings,
                RunLimits {
                    idle_exit,
                    max_messages,
                },
            ))?;
            println!("{}", serde_json::to_string(&tally)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let (settings, runtime) = start(cli.config.as_deref())?;
            let applied = runtime.block_on(salestalk::run::migrate(&settings))?;
            println!(
                "applied {applied} migration(s) to {}",
                settings.clickhouse.database
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => check(cli.config),
        Command::Dlq(command) => {
            let (settings, runtime) = start(cli.config.as_deref())?;
            runtime.block_on(dlq(&settings, command))
        }
        Command::Serve => {
            let (settings, runtime) = start(cli.config.as_deref())?;
            runtime.block_on(async {
                let mut terminate =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .context("listening for SIGTERM")?;
                let stop = async move {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                };
                salestalk::serve::serve(&settings, stop).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Alerts(AlertsCommand::History { limit, json }) => {
            let (settings, runtime) = start(cli.config.as_deref())?;
            let records = runtime
                .block_on(settings.clickhouse.clone().alert_history(limit))
                .context("reading the alerts table")?;
            for record in records {
                if json {
                    println!("{}", serde_json::to_string(&record)?);
                } else {
                    let at = DateTime::from_timestamp(record.notified_at.into(), 0)
                        .unwrap_or_default()
                        .format("%Y-%m-%d %H:%M:%S");
                    let delivered = if record.delivered == 1 {
                        ""
                    } else {
                        " (not delivered)"
                    };
                    println!(
                        "{at}  {:<8} {:<9} {:<26} {}{delivered}",
                        record.status, record.severity, record.rule, record.summary
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Billing(BillingCommand::Export { month, output }) => {
            let (settings, runtime) = start(cli.config.as_deref())?;
            let rows = runtime
                .block_on(settings.clickhouse.clone().tenant_months(month))
                .context("reading the month's costs")?;
            match output {
                Some(path) => {
                    let file = File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    salestalk::billing::write_csv(month, &rows, BufWriter::new(file))?;
                    eprintln!("{} tenant(s) for {month} in {}", rows.len(), path.display());
                }
                None => salestalk::billing::write_csv(month, &rows, io::stdout().lock())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Latency {
            since,
            tenant,
            event_type,
        } => {
            let (settings, runtime) = start(cli.config.as_deref())?;
            let rows = runtime.block_on(settings.clickhouse.clone().latency_percentiles(
                since.as_secs(),
                &tenant,
                &event_type,
            ))?;
            println!(
                "{:<26} {:>10} {:>12} {:>12} {:>12}",
                "consumer", "events", "p50_ms", "p95_ms", "p99_ms"
            );
            for row in rows {
                println!(
                    "{:<26} {:>10} {:>12.1} {:>12.1} {:>12.1}",
                    row.consumer, row.events, row.p50_ms, row.p95_ms, row.p99_ms
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What every command that talks to the services needs: the checked settings, logging, and
/// an async runtime.
fn start(config: Option<&Path>) -> anyhow::Result<(Settings, tokio::runtime::Runtime)> {
    let settings = Settings::load(config)?;
    logging::init(&settings.log);
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    Ok((settings, runtime))
}

fn generate(config: Option<PathBuf>, args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let faults = FaultRates {
        duplicates: args.duplicates,
        invalid: args.invalid,
        out_of_order: args.out_of_order,
        late: args.late,
        future_skew: args.future_skew,
    };
    let shares = [
        faults.duplicates,
        faults.invalid,
        faults.out_of_order,
        faults.late,
        faults.future_skew,
    ];
    if shares.iter().any(|s| !(0.0..=1.0).contains(s)) {
        bail!("fault shares must be between 0 and 1");
    }
    if faults.invalid + faults.out_of_order + faults.late + faults.future_skew > 1.0 {
        bail!("--invalid, --out-of-order, --late and --future-skew together must not exceed 1");
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be positive");
    }
    let start: DateTime<Utc> = if args.start == "now" {
        Utc::now()
    } else {
        DateTime::parse_from_rfc3339(&args.start)
            .context("--start must be RFC 3339 or `now`")?
            .with_timezone(&Utc)
    };
    let stop = match (args.count, args.duration) {
        (_, Some(duration)) => {
            Stop::Duration(chrono::Duration::from_std(duration).context("--duration is too long")?)
        }
        (count, None) => Stop::Count(count.unwrap_or(10_000)),
    };
    let mut generator = Generator::new(GeneratorOptions {
        seed: args.seed,
        start,
        rate: args.rate,
        tenants: args.tenants,
        stop,
        faults,
    });
    if args.kafka {
        let settings = Settings::load(config.as_deref())?;
        logging::init(&settings.log);
        let report = produce::produce(
            &settings.kafka,
            &mut generator,
            args.realtime.then_some(start.timestamp_millis()),
        )?;
        eprintln!("{}", serde_json::to_string(generator.stats())?);
        println!("{}", serde_json::to_string(&report)?);
        if report.failed > 0 || report.delivered != report.submitted {
            bail!(
                "{} of {} messages were not delivered",
                report.submitted - report.delivered,
                report.submitted
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let sink: Box<dyn Write> = match args.output.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            Box::new(File::create(&path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    for message in generator.by_ref() {
        out.write_all(&message.bytes)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!("{}", serde_json::to_string(generator.stats())?);
    Ok(ExitCode::SUCCESS)
}

fn check(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config.as_deref())?;
    logging::init(&settings.log);
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let mut healthy = true;
    let mut topics = settings.kafka.topics.clone();
    topics.extend(settings.dlq.topic.clone());
    match salestalk_kafka::admin::missing_topics(&settings.kafka, &topics) {
        Ok(missing) if missing.is_empty() => println!(
            "kafka      ok: {} answers, all {} topics exist",
            settings.kafka.brokers,
            topics.len()
        ),
        Ok(missing) => {
            healthy = false;
            println!("kafka      PROBLEM: missing topics: {}", missing.join(", "));
        }
        Err(error) => {
            healthy = false;
            println!("kafka      PROBLEM: {error:#}");
        }
    }
    let endpoint = settings.clickhouse.clone();
    match runtime.block_on(endpoint.probe()) {
        Ok(profile) => println!(
            "clickhouse ok: {} answers, version {} ({})",
            settings.clickhouse.url,
            profile.version,
            if profile.is_modern() {
                "modern"
            } else {
                "legacy: no TTL, DateTime64 or LowCardinality"
            }
        ),
        Err(error) => {
            healthy = false;
            println!("clickhouse PROBLEM: {error}");
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn dlq(settings: &Settings, command: DlqCommand) -> anyhow::Result<ExitCode> {
    use salestalk::dlq;
    match command {
        DlqCommand::List {
            filter,
            status,
            limit,
            json,
        } => {
            dlq::list(settings, &filter.filter(Some(status), limit)?, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id } => Ok(if dlq::show(settings, &id).await? {
            ExitCode::SUCCESS
        } else {
            eprintln!("no dead letter {id}");
            ExitCode::from(1)
        }),
        DlqCommand::Redrive {
            filter,
            limit,
            dry_run,
        } => {
            let (entries, done) =
                dlq::redrive(settings, &filter.filter(None, limit)?, dry_run).await?;
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
        DlqCommand::Discard {
            filter,
            note,
            limit,
        } => {
            let entries = dlq::discard(settings, &filter.filter(None, limit)?, &note).await?;
            println!("discarded {} entr(ies)", entries.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
