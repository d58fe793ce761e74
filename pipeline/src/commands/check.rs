//! `salestalk check`: the configuration, and whether Kafka and ClickHouse answer.

use std::path::Path;
use std::process::ExitCode;

use salestalk_kafka::admin;

/// Exit 0 when both services answer and every topic exists, 1 otherwise (naming the problem).
pub fn execute(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (settings, runtime) = super::start(config)?;
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
