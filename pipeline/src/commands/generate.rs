//! `salestalk generate`: realistic synthetic traffic, to a file, standard output, Kafka or
//! Kinesis.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use crate::logging;
use crate::settings::Settings;
use salestalk_generator::{DEFAULT_TENANT_SKEW, FaultRates, Generator, GeneratorOptions, Stop};

/// `salestalk generate` arguments.
#[derive(clap::Args)]
pub struct Args {
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
    /// Number of tenants.
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// Skew of tenant sizes: tenant k is picked with weight 1/k^skew (0: all alike, as for a
    /// memory test with every tenant active).
    #[arg(long, default_value_t = DEFAULT_TENANT_SKEW)]
    tenant_skew: f64,
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
    /// Share of events carrying the eventId of a recent event of another tenant (ids are
    /// unique per tenant only: both count).
    #[arg(long, default_value_t = 0.0)]
    shared_ids: f64,
    /// Share of classifications sent as classification.performed.v2.
    #[arg(long, default_value_t = 0.0)]
    v2: f64,
    /// Share of events carrying an enum value added to the contract after this build.
    #[arg(long, default_value_t = 0.0)]
    new_enum_values: f64,
    /// Write JSON Lines here (`-` for standard output, the default).
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["kafka", "kinesis"])]
    output: Option<PathBuf>,
    /// Produce to Kafka instead (topic per event domain, key = tenantId).
    #[arg(long, conflicts_with = "kinesis")]
    kafka: bool,
    /// Put to Kinesis instead (stream per event domain, partition key = tenantId).
    #[arg(long)]
    kinesis: bool,
    /// With --kinesis: a stream that does not exist yet is created with this many shards.
    #[arg(long, default_value_t = 2, requires = "kinesis")]
    kinesis_shards: i32,
    /// With --kafka: send each event when its event time comes round on the wall clock (live
    /// traffic; use with --start now) instead of as fast as possible.
    #[arg(long, requires = "kafka")]
    realtime: bool,
}

impl Args {
    /// The generator's options, or every problem with the arguments.
    fn options(&self) -> anyhow::Result<GeneratorOptions> {
        let faults = FaultRates {
            duplicates: self.duplicates,
            invalid: self.invalid,
            out_of_order: self.out_of_order,
            late: self.late,
            future_skew: self.future_skew,
            shared_ids: self.shared_ids,
            v2: self.v2,
            new_enum_values: self.new_enum_values,
        };
        let mut problems = faults.problems();
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            problems.push("--rate must be positive".into());
        }
        if !(self.tenant_skew >= 0.0 && self.tenant_skew.is_finite()) {
            problems.push("--tenant-skew must be zero or positive".into());
        }
        if self.tenants == 0 {
            problems.push("--tenants must be at least 1".into());
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        let start: DateTime<Utc> = if self.start == "now" {
            Utc::now()
        } else {
            DateTime::parse_from_rfc3339(&self.start)
                .context("--start must be RFC 3339 or `now`")?
                .with_timezone(&Utc)
        };
        let stop = match (self.count, self.duration) {
            (_, Some(duration)) => Stop::Duration(
                chrono::Duration::from_std(duration).context("--duration is too long")?,
            ),
            (count, None) => Stop::Count(count.unwrap_or(10_000)),
        };
        Ok(GeneratorOptions {
            seed: self.seed,
            start,
            rate: self.rate,
            tenants: self.tenants,
            tenant_skew: self.tenant_skew,
            stop,
            faults,
        })
    }
}

/// Writes the traffic (statistics to standard error); fails if Kafka or Kinesis did not take
/// it all.
pub fn execute(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    let start_ms = options.start.timestamp_millis();
    let mut generator = Generator::new(options);
    if args.kafka || args.kinesis {
        let settings = Settings::load(config)?;
        logging::init(&settings.log);
        settings.warn_renamed();
        let report = if args.kafka {
            salestalk_generator::produce::kafka::produce(
                &settings.kafka,
                &mut generator,
                args.realtime.then_some(start_ms),
            )?
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(salestalk_generator::produce::kinesis::put(
                    &settings.kinesis,
                    args.kinesis_shards,
                    &mut generator,
                ))?
        };
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
