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

/// The `salestalk` binary with `args`, logging at warn, and `env` applied last (so it can
/// override the defaults set here).
pub fn salestalk_command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_salestalk"));
    // Many runs share the machine: the metrics endpoint is off unless a test asks for it.
    command
        .args(args)
        // SALESTALK_TEST_LOG=info (or debug) shows what the binaries do while a test runs.
        .env(
            "SALESTALK__LOG__LEVEL",
            std::env::var("SALESTALK_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("SALESTALK__METRICS__LISTEN", "");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs the `salestalk` binary to completion.
pub fn salestalk(args: &[&str], env: &[(&str, String)]) -> Output {
    salestalk_command(args, env)
        .output()
        .expect("the salestalk binary runs")
}

/// Topics (one per event domain), a consumer group and a database used by one test alone.
pub struct Isolated {
    /// The unique prefix of every name.
    pub prefix: String,
    /// The topics, created.
    pub topics: Vec<String>,
    /// `SALESTALK__*` variables pointing the binary at them.
    pub env: Vec<(&'static str, String)>,
}

impl Isolated {
    /// Creates the topics with `partitions` each.
    pub async fn create(name: &str, partitions: i32) -> Self {
        let prefix = unique(name);
        let topics: Vec<String> = [
            "classification",
            "narrative",
            "conversation",
            "metrics",
            "tenant",
        ]
        .iter()
        .map(|d| format!("{prefix}.{d}"))
        .collect();
        create_topics(&topics, partitions).await;
        let dlq = format!("{prefix}.dlq");
        create_topics(std::slice::from_ref(&dlq), 1).await;
        let env = vec![
            ("SALESTALK__DLQ__TOPIC", dlq),
            (
                "SALESTALK__KAFKA__TOPIC_TEMPLATE",
                format!("{prefix}.{{domain}}"),
            ),
            ("SALESTALK__KAFKA__TOPICS", topics.join(",")),
            ("SALESTALK__KAFKA__GROUP_ID", format!("{prefix}-group")),
            (
                "SALESTALK__CLICKHOUSE__DATABASE",
                prefix.replace(['-', '.'], "_"),
            ),
        ];
        Self {
            prefix,
            topics,
            env,
        }
    }

    /// The database name.
    pub fn database(&self) -> String {
        self.prefix.replace(['-', '.'], "_")
    }

    /// Drops the database. Tests call it once they have passed, so a failure leaves its data
    /// behind to look at while ClickHouse does not grow run by run. Topics stay: on tansu
    /// 0.6.0, deleting one topic deletes every topic on the broker.
    pub async fn remove(&self) {
        drop_database(&self.database()).await;
    }
}

/// Drops `database` from the configured server, if it is there.
pub async fn drop_database(database: &str) {
    endpoint(database)
        .server_client()
        .query(&format!("DROP DATABASE IF EXISTS `{database}`"))
        .execute()
        .await
        .unwrap_or_else(|e| panic!("dropping {database}: {e}"));
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
