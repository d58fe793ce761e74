//! The test kit: configuration, unique names, the isolated services (`Isolated`, one test's
//! topics and database; `PrivateServices`, its own broker and ClickHouse), running the binary,
//! HTTP probes, event fixtures ([`fixtures`]) and waiting without timed assertions
//! ([`eventually`]).

pub mod eventually;
pub mod fixtures;

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use salestalk::settings::Settings;
use wait_timeout::ChildExt;

/// The settings the binary would use in this environment.
pub fn settings() -> Settings {
    Settings::load(None).expect("configuration from the environment is valid")
}

/// The configured ClickHouse server, with `database` selected.
pub fn endpoint(database: &str) -> salestalk_store::Endpoint {
    salestalk_store::Endpoint {
        database: database.to_string(),
        ..settings().clickhouse
    }
}

/// Produces `events` to their domains' topics of `isolated` (`<prefix>.<domain>`), keyed by
/// tenant, in order.
pub async fn produce_events(isolated: &Isolated, events: &[serde_json::Value]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &isolated.brokers)
        .create()
        .expect("producer");
    for event in events {
        let event_type = event["eventType"].as_str().expect("type");
        let domain = event_type.split('.').next().expect("domain");
        let topic = format!("{}.{domain}", isolated.prefix);
        let payload = serde_json::to_vec(event).expect("bytes");
        let tenant = event["tenantId"].as_str().expect("tenant");
        producer
            .send(
                FutureRecord::to(&topic).key(tenant).payload(&payload),
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
    }
}

/// Produces `count` messages that are not JSON (`not json <n>`) to `isolated`'s first topic:
/// publishes that did not come through the gateway, each a dead letter.
pub async fn produce_not_json(isolated: &Isolated, count: usize) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &isolated.brokers)
        .create()
        .expect("producer");
    for n in 0..count {
        producer
            .send(
                FutureRecord::<str, _>::to(&isolated.topics[0])
                    .payload(format!("not json {n}").as_bytes()),
                std::time::Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }
}

/// `[alerts]` evaluated every second, posting plain notifications to `<url>/plain`, with one
/// global warning rule `name` on `signal` firing above 0 at once and resolving 3 s after,
/// over `lookback_ms`: the shape of a test that one fact raises one alert.
pub fn one_alert_rule(url: &str, name: &str, signal: &str, lookback_ms: u64) -> String {
    format!(
        r#"
[alerts]
evaluate_every_ms = 1000
webhooks = ["{url}/plain"]
[[alerts.rules]]
name = "{name}"
signal = "{signal}"
comparison = "above"
threshold = 0.0
for_ms = 0
keep_firing_ms = 3000
severity = "warning"
scope = "global"
lookback_ms = {lookback_ms}
min_events = 1
"#
    )
}

/// A routing target `work` on a topic of its own with one partition, read by one downstream
/// consumer group, watched every second.
pub struct WatchedTarget {
    /// The target's topic, `<prefix>.target.work` (created).
    pub topic: String,
    /// The group reading it, `<prefix>-<name>`.
    pub group: String,
    /// The `[routing]` section that routes every event to `metrics` and `work`.
    pub routing: String,
}

impl WatchedTarget {
    /// The target of `isolated`, read by the group `name`.
    pub async fn create(isolated: &Isolated, name: &str) -> Self {
        let topic = format!("{}.target.work", isolated.prefix);
        let group = format!("{}-{name}", isolated.prefix);
        create_topics_at(&isolated.brokers, std::slice::from_ref(&topic), 1).await;
        let routing = format!(
            r#"
[routing]
unmatched = ["metrics", "work"]
consumer_watch_interval_ms = 1000
rules = []
[routing.targets.work]
topic = "{topic}"
consumer_groups = ["{group}"]
"#
        );
        Self {
            topic,
            group,
            routing,
        }
    }

    /// The group commits `offset` on the topic's partition, as its worker would.
    pub fn commit(&self, brokers: &str, offset: i64) {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        use rdkafka::{Offset, TopicPartitionList};
        let worker: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("worker");
        let mut position = TopicPartitionList::new();
        position
            .add_partition_offset(&self.topic, 0, Offset::Offset(offset))
            .expect("offset");
        worker
            .commit(&position, CommitMode::Sync)
            .expect("the worker commits");
    }
}

/// A fresh database of the configured server named after `prefix`, migrated.
pub async fn migrated_database(prefix: &str) -> salestalk_store::Endpoint {
    let endpoint = endpoint(&unique(prefix).replace('-', "_"));
    let profile = endpoint.probe().await.expect("probe");
    endpoint.migrate(&profile).await.expect("migrate");
    endpoint
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Creates `topics` with `partitions` each on `brokers`.
pub async fn create_topics_at(brokers: &str, topics: &[String], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
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

/// A message of a topic as the tests read it back: key, eventId of the JSON payload, headers.
pub struct ReadBack {
    /// The record key.
    pub key: String,
    /// `eventId` of the payload.
    pub event_id: String,
    /// Headers, as text.
    pub headers: Vec<(String, String)>,
    /// The broker's time of the message (Unix ms), when it has one.
    pub broker_ms: Option<i64>,
}

impl ReadBack {
    /// The value of header `name`, or empty.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

/// Every message of `topic` (one partition), in order.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<ReadBack> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("read-back"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    while (out.len() as i64) < high {
        let Some(message) = consumer.poll(Duration::from_secs(10)) else {
            break;
        };
        let message = message.expect("message");
        let event: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default()).expect("an event");
        let headers = message.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_string(), value.into_owned())
                })
                .collect()
        });
        out.push(ReadBack {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            event_id: event["eventId"].as_str().unwrap_or_default().to_string(),
            headers,
            broker_ms: message.timestamp().to_millis(),
        });
    }
    out
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
        .env("SALESTALK__TELEMETRY__LISTEN", "");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Longest a `salestalk` process in a test may take before the test fails: far above what
/// any run here needs, far below CI's limit, so a stuck run fails its test by name.
pub const RUN_LIMIT: Duration = Duration::from_secs(600);

/// Runs the `salestalk` binary to completion (within [`RUN_LIMIT`]), capturing its output.
pub fn salestalk(args: &[&str], env: &[(&str, String)]) -> Output {
    let child = salestalk_command(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the salestalk binary runs");
    finish(child, RUN_LIMIT, &format!("salestalk {}", args.join(" ")))
}

/// Waits for `child` for at most `within`, collecting whatever it pipes. Past `within` it is
/// killed and the test fails with the tail of its stderr, instead of hanging the suite.
pub fn finish(mut child: Child, within: Duration, what: &str) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = child.wait_timeout(within).expect("waiting for a child");
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        let text = String::from_utf8_lossy(&stderr);
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{what} did not finish within {within:?}; killed. Last stderr lines:\n{}",
            tail.join("\n")
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Topics (one per event domain), a consumer group and a database used by one test alone.
pub struct Isolated {
    /// The unique prefix of every name.
    pub prefix: String,
    /// The topics, created.
    pub topics: Vec<String>,
    /// `SALESTALK__*` variables pointing the binary at them.
    pub env: Vec<(&'static str, String)>,
    /// The brokers holding the topics.
    pub brokers: String,
    /// The ClickHouse server holding the database.
    pub clickhouse_url: String,
    /// Partitions per topic.
    pub partitions: i32,
}

impl Isolated {
    /// Creates the topics with `partitions` each on the shared services.
    pub async fn create(name: &str, partitions: i32) -> Self {
        let s = settings();
        Self::create_at(name, partitions, &s.kafka.brokers, &s.clickhouse.url).await
    }

    /// Creates the topics with `partitions` each on `brokers`, the database on `clickhouse_url`.
    pub async fn create_at(
        name: &str,
        partitions: i32,
        brokers: &str,
        clickhouse_url: &str,
    ) -> Self {
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
        create_topics_at(brokers, &topics, partitions).await;
        let dlq = format!("{prefix}.dlq");
        create_topics_at(brokers, std::slice::from_ref(&dlq), 1).await;
        // The routing targets' topics, one partition each: what the tests' runs deliver stays
        // with the test.
        let target_template = format!("{prefix}.consumer.{{target}}");
        let targets: Vec<String> = settings()
            .routing
            .targets
            .keys()
            .map(|name| target_template.replace("{target}", name))
            .collect();
        create_topics_at(brokers, &targets, 1).await;
        let env = vec![
            ("SALESTALK__KAFKA__BROKERS", brokers.to_string()),
            ("SALESTALK__CLICKHOUSE__URL", clickhouse_url.to_string()),
            ("SALESTALK__DLQ__TOPIC", dlq),
            (
                "SALESTALK__KAFKA__TOPIC_TEMPLATE",
                format!("{prefix}.{{domain}}"),
            ),
            ("SALESTALK__KAFKA__TOPICS", topics.join(",")),
            ("SALESTALK__KAFKA__GROUP_ID", format!("{prefix}-group")),
            ("SALESTALK__ROUTING__TARGET_TOPIC_TEMPLATE", target_template),
            (
                "SALESTALK__CLICKHOUSE__DATABASE",
                prefix.replace(['-', '.'], "_"),
            ),
        ];
        Self {
            prefix,
            topics,
            env,
            brokers: brokers.to_string(),
            clickhouse_url: clickhouse_url.to_string(),
            partitions,
        }
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.prefix)
    }

    /// The test's database on its server.
    pub fn endpoint(&self) -> salestalk_store::Endpoint {
        salestalk_store::Endpoint {
            url: self.clickhouse_url.clone(),
            ..endpoint(&self.database())
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
        let database = self.database();
        self.endpoint()
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS `{database}`"))
            .execute()
            .await
            .unwrap_or_else(|e| panic!("dropping {database}: {e}"));
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

/// The standard output of an external tool the suite installs (`installed_by` names the
/// script that does), failing the test with the tool's own error when it cannot run or fails.
pub fn tool_output(command: &mut Command, installed_by: &str) -> Vec<u8> {
    let tool = format!("{:?}", command.get_program());
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{tool} does not run ({e}); {installed_by} installs it"));
    assert!(
        output.status.success(),
        "{tool} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A broker and a ClickHouse server of one test's own, started and stopped with the project's
/// scripts (`deploy/services/up|down`) on free ports, for fault tests that stop and restart
/// them without disturbing the tests sharing the suite's services. Removed on drop.
pub struct PrivateServices {
    state_dir: std::path::PathBuf,
    vars: Vec<(&'static str, String)>,
    /// `host:port` of the broker.
    pub brokers: String,
    /// HTTP URL of ClickHouse.
    pub clickhouse_url: String,
}

/// Sends `signal` (`-TERM`, `-STOP`, `-CONT`) to `child`.
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {}", child.id());
}

/// Runs `deploy/services/<name> <args>` with `vars` set, failing the test if it fails.
pub fn services_script(name: &str, args: &[&str], vars: &[(&'static str, String)]) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/services/");
    let output = Command::new(format!("{path}{name}"))
        .args(args)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("the services script runs");
    assert!(
        output.status.success(),
        "deploy/services/{name} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PrivateServices {
    /// Starts both services (ClickHouse's first start takes a few seconds), the broker with
    /// durable (sqlite) storage.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, "sqlite")
    }

    /// Starts both services, the broker with `storage` (`sqlite` or `memory`).
    pub fn start_with(name: &str, storage: &str) -> Self {
        let state_dir = std::path::PathBuf::from(format!("/var/tmp/{}", unique(name)));
        let (kafka, http, tcp, interserver) = (free_port(), free_port(), free_port(), free_port());
        let vars = vec![
            ("SALESTALK_STATE_DIR", state_dir.display().to_string()),
            ("SALESTALK_KAFKA_PORT", kafka.to_string()),
            ("SALESTALK_CLICKHOUSE_HTTP_PORT", http.to_string()),
            ("SALESTALK_CLICKHOUSE_TCP_PORT", tcp.to_string()),
            (
                "SALESTALK_CLICKHOUSE_INTERSERVER_PORT",
                interserver.to_string(),
            ),
            // The tests create their own topics.
            ("SALESTALK_KAFKA_TOPICS", String::new()),
            ("SALESTALK_KAFKA_STORAGE", storage.to_string()),
        ];
        let services = Self {
            state_dir,
            vars,
            brokers: format!("127.0.0.1:{kafka}"),
            clickhouse_url: format!("http://127.0.0.1:{http}"),
        };
        services.script("up", &[]);
        services
    }

    /// Starts a ClickHouse server of its own that also serves https on the returned port,
    /// with the certificate and key (PEM files the server's user can read).
    pub fn start_clickhouse_https(name: &str, cert: &str, key: &str) -> (Self, u16) {
        let state_dir = std::path::PathBuf::from(format!("/var/tmp/{}", unique(name)));
        let (http, https, tcp, interserver) = (free_port(), free_port(), free_port(), free_port());
        let vars = vec![
            ("SALESTALK_STATE_DIR", state_dir.display().to_string()),
            ("SALESTALK_CLICKHOUSE_HTTP_PORT", http.to_string()),
            ("SALESTALK_CLICKHOUSE_HTTPS_PORT", https.to_string()),
            ("SALESTALK_CLICKHOUSE_TLS_CERT", cert.to_string()),
            ("SALESTALK_CLICKHOUSE_TLS_KEY", key.to_string()),
            ("SALESTALK_CLICKHOUSE_TCP_PORT", tcp.to_string()),
            (
                "SALESTALK_CLICKHOUSE_INTERSERVER_PORT",
                interserver.to_string(),
            ),
        ];
        let services = Self {
            state_dir,
            vars,
            brokers: String::new(),
            clickhouse_url: format!("http://127.0.0.1:{http}"),
        };
        services.script("up", &["clickhouse"]);
        (services, https)
    }

    fn script(&self, name: &str, args: &[&str]) {
        services_script(name, args, &self.vars);
    }

    /// Stops `service` (`clickhouse` or `broker`), keeping its data.
    pub fn stop(&self, service: &str) {
        self.script("down", &[service]);
    }

    /// Starts `service` again and waits until it answers.
    pub fn restart(&self, service: &str) {
        self.script("up", &[service]);
    }
}

impl Drop for PrivateServices {
    fn drop(&mut self) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/services/down");
        let _ = Command::new(path)
            .arg("--purge")
            .envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// `GET path` on 127.0.0.1:`port`: the status code and body, if anything answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_as(port, path, None)
}

/// `GET path` on 127.0.0.1:`port` with `key` as the bearer token: the status code and body,
/// if anything answers.
pub fn http_get_as(port: u16, path: &str, key: Option<&str>) -> Option<(u16, String)> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A new API key with `role` for `tenants`, made with `salestalk keys create`.
pub fn api_key(env: &[(&'static str, String)], role: &str, tenants: &[&str]) -> String {
    api_key_for_types(env, role, tenants, &[])
}

/// A new key as [`api_key`], publishing only `event_types` (patterns; a platform type needs
/// one naming it).
pub fn api_key_for_types(
    env: &[(&'static str, String)],
    role: &str,
    tenants: &[&str],
    event_types: &[&str],
) -> String {
    let mut args = vec!["keys", "create", "--role", role];
    for tenant in tenants {
        args.extend(["--tenant", tenant]);
    }
    for pattern in event_types {
        args.extend(["--event-type", pattern]);
    }
    stdout_of(&salestalk(&args, env)).trim().to_string()
}

/// The event-type grants of a key publishing everything the generator makes, the platform's
/// `tenant.provisioned` included (the generator stands for every SalesTalk service).
pub const EVERY_EVENT_TYPE: [&str; 2] = ["*", "tenant.provisioned.*"];

/// The id of a key (`stk_<id>_<secret>`).
pub fn key_id(key: &str) -> &str {
    key.strip_prefix("stk_")
        .and_then(|rest| rest.split('_').next())
        .unwrap_or_default()
}

/// The Prometheus exposition of a run's `/metrics`.
pub fn scrape(port: u16) -> Option<String> {
    http_get(port, "/metrics").map(|(_, body)| body)
}

/// The value of the series starting with `series` (name and labels) in an exposition.
pub fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held by the tests that start private services and push large backlogs, so they run one at
/// a time: on a 2-core machine, two of them at once starve each other's brokers.
pub async fn one_heavy_test_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// From a run's `/metrics`: messages read, and the lag of every partition reported.
pub fn read_and_lags(body: &str) -> (f64, Vec<f64>) {
    let read = value(body, "salestalk_messages_total{outcome=\"read\"}").unwrap_or(0.0);
    let lags = body
        .lines()
        .filter(|l| l.starts_with("salestalk_partition_lag{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (read, lags)
}

/// An HTTP server that takes every POST and keeps (path, JSON body): a webhook receiver.
pub struct WebhookReceiver {
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl WebhookReceiver {
    /// Starts one on a free port; it answers 200 to everything until the test ends.
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts one on `port` (0: a free one).
    pub fn start_on(port: u16) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = std::sync::Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                if let Ok(json) = serde_json::from_slice(&body)
                    && let Ok(mut all) = store.lock()
                {
                    all.push((path, json));
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self { url, received }
    }

    /// Every body received at `path`, in arrival order.
    pub fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .map(|all| {
                all.iter()
                    .filter(|(p, _)| p == path)
                    .map(|(_, body)| body.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A child process killed (SIGKILL) when the guard is dropped, so a failing test leaves no
/// `salestalk` process behind holding ports and pipes.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The processes a test started and hands around by value (stopped, waited for, replaced):
/// killed (SIGKILL) if the test panics first, so a failed test leaves no `salestalk run`
/// behind to write into the services the next tests use (one did: it went on migrating a
/// dropped database on the cluster and held up its DDL queue).
#[derive(Default)]
pub struct KillIfPanicking(Vec<u32>);

impl KillIfPanicking {
    /// Kills `child` too, should the test panic.
    pub fn watch(&mut self, child: &Child) {
        self.0.push(child.id());
    }
}

impl Drop for KillIfPanicking {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for pid in &self.0 {
            // Only while it is still ours: a pid that ended may have been given to another.
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| line.windows(9).any(|w| w == b"salestalk"));
            if ours {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .output();
            }
        }
    }
}

/// The consumer-group session timeout the tests that kill or stop a run set (ms): how long a
/// dead member keeps its partitions.
pub const SESSION_TIMEOUT_MS: u64 = 6_000;

/// `SALESTALK__KAFKA__SESSION_TIMEOUT_MS` set to [`SESSION_TIMEOUT_MS`].
pub fn session_timeout_env() -> (&'static str, String) {
    (
        "SALESTALK__KAFKA__SESSION_TIMEOUT_MS",
        SESSION_TIMEOUT_MS.to_string(),
    )
}

/// Waits until the group has given up on a killed or stopped member, before its replacement
/// joins. Joining earlier makes the test broker (tansu 0.6) hand the newcomer a group led by
/// the dead member, and in one CI run it then made no progress for five minutes
/// (tests/README.md); with Kafka the group would have moved on.
pub async fn past_a_dead_members_session() {
    tokio::time::sleep(Duration::from_millis(SESSION_TIMEOUT_MS + 2_000)).await;
}
