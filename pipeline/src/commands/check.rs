//! `salestalk check`: the configuration, and whether Kafka and ClickHouse answer.

use std::path::Path;
use std::process::ExitCode;

use salestalk_kafka::admin;

/// `salestalk check` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration only (file and SALESTALK__* variables), asking no service: for a
    /// deployment's settings before they go live.
    #[arg(long)]
    offline: bool,
}

/// Exit 0 when both services answer and every topic exists, 1 otherwise (naming the problem);
/// a configuration with problems fails before anything is asked (exit 2, listing them all).
pub fn execute(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
    if args.offline {
        println!("config     ok");
        return Ok(ExitCode::SUCCESS);
    }
    let mut healthy = true;
    let mut topics = settings.kafka.topics.clone();
    topics.extend(settings.dlq.topic().map(str::to_string));
    match admin::missing_topics(&settings.kafka, &topics) {
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
    match runtime.block_on(settings.clickhouse.probe()) {
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
