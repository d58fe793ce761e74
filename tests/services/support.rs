//! Shared helpers: configuration, unique names, topic creation, running the binary.

use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use salestalk::settings::Settings;

/// The settings the binary would use in this environment.
pub fn settings() -> Settings {
    Settings::load(None).expect("configuration from the environment is valid")
}

/// The configured ClickHouse server, with `database` selected.
pub fn endpoint(database: &str) -> salestalk_sinks::clickhouse::Endpoint {
    let s = settings().clickhouse;
    salestalk_sinks::clickhouse::Endpoint {
        url: s.url,
        database: database.to_string(),
        user: s.user,
        password: s.password,
    }
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Creates `topics` with `partitions` each on the configured brokers.
pub async fn create_topics(topics: &[String], partitions: i32) {
    let brokers = settings().kafka.brokers;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new, &options)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach the broker at {brokers} ({e}); start it with deploy/services/up")
        });
    for result in results {
        result.unwrap_or_else(|(topic, e)| panic!("creating topic {topic}: {e}"));
    }
}

/// Runs the `salestalk` binary with extra environment variables.
pub fn salestalk(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_salestalk"));
    // Many runs share the machine: the metrics endpoint is off unless a test asks for it.
    command
        .args(args)
        .env("SALESTALK__LOG__LEVEL", "warn")
        .env("SALESTALK__METRICS__LISTEN", "");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the salestalk binary runs")
}

/// Standard output of a successful run, or a panic that shows stderr.
pub fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "salestalk failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
