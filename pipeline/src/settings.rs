//! Configuration: `config/salestalk.toml` (embedded) < `--config` file < `SALESTALK__*` env.
//!
//! Loading checks everything before the pipeline starts and reports every problem at once,
//! including keys that do not exist (a misspelt override is otherwise silently ignored).

use std::collections::BTreeSet;
use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use salestalk_kafka::KafkaSettings;
use salestalk_operators::aggregate::Aggregates;
use salestalk_sinks::FlushOrder;
use salestalk_store::Endpoint;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The documented defaults, which also define the set of known keys.
pub const DEFAULTS: &str = include_str!("../../config/salestalk.toml");

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "kafka.topics",
    "graph.aggregates",
    "sinks.flush_order",
    "alerts.webhooks",
    "alerts.alertmanager_webhooks",
];

/// Everything the pipeline can be configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `[kafka]`
    pub kafka: KafkaSettings,
    /// `[clickhouse]`: where and as whom to connect.
    pub clickhouse: Endpoint,
    /// `[pipeline]`
    pub pipeline: PipelineSettings,
    /// `[graph]`
    pub graph: GraphSettings,
    /// `[retry]`
    pub retry: RetrySettings,
    /// `[dlq]`
    pub dlq: DlqSettings,
    /// `[sinks]`
    pub sinks: SinkSettings,
    /// `[metrics]`
    pub metrics: MetricsSettings,
    /// `[alerts]`
    pub alerts: AlertSettings,
    /// `[serve]`
    pub serve: ServeSettings,
    /// `[log]`
    pub log: LogSettings,
}

/// `[graph]`: the operators each task runs.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// The windowed aggregates, checked against the built-in ones.
    pub aggregates: Aggregates,
}

impl PartialEq for GraphSettings {
    fn eq(&self, other: &Self) -> bool {
        self.aggregates.names() == other.aggregates.names()
    }
}

/// `[retry]`: how failed writes are retried (ADR 0006).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts per write, the first included.
    pub max_attempts: u32,
    /// Pause before the first retry, ms.
    pub initial_backoff_ms: u64,
    /// Longest pause, ms; also the pause between probes while a sink is down.
    pub max_backoff_ms: u64,
}

impl RetrySettings {
    /// The policy the sinks apply.
    pub fn policy(&self) -> salestalk_sinks::retry::RetryPolicy {
        salestalk_sinks::retry::RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: std::time::Duration::from_millis(self.initial_backoff_ms),
            max_backoff: std::time::Duration::from_millis(self.max_backoff_ms),
        }
    }
}

/// `[sinks]`: the order a flush goes through the sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// The sinks, checked: the archive before the dead-letter sinks, the commit point last.
    pub flush_order: FlushOrder,
}

/// `[dlq]`: the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqSettings {
    /// Topic every dead letter is produced to; `None` for the ClickHouse table only.
    pub topic: Option<String>,
}

/// `[alerts]`: the alert evaluator of `salestalk serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// Pause between two evaluations of every rule, ms.
    pub evaluate_every_ms: u64,
    /// URLs that receive each notification as a plain JSON body.
    pub webhooks: Vec<String>,
    /// URLs that receive each notification in Alertmanager's webhook body.
    pub alertmanager_webhooks: Vec<String>,
    /// The `receiver` named in Alertmanager bodies.
    pub receiver: String,
    /// Where people find the dashboards (Alertmanager's `externalURL`).
    pub external_url: String,
    /// The rules.
    pub rules: Vec<salestalk_alerting::Rule>,
}

/// `[serve]`: the HTTP server of `salestalk serve` (dashboards and active alerts).
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// Where `GET /metrics` is served; `None` when turned off.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[pipeline]`: batching.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSettings {
    /// Most messages per batch.
    pub batch_size: usize,
    /// Longest wait for a partial batch, in milliseconds.
    pub batch_timeout_ms: u64,
    /// Time between flushes, in milliseconds.
    pub flush_interval_ms: u64,
    /// Lateness an event may have and still correct its window, in milliseconds.
    pub allowed_lateness_ms: i64,
    /// How far ahead of broker time an event may be stamped, in milliseconds.
    pub max_future_skew_ms: i64,
    /// How long an eventId is remembered, in milliseconds.
    pub dedup_horizon_ms: i64,
    /// Raw bytes held for the next flush before it is started early.
    pub max_pending_bytes: usize,
}

/// `[log]`: diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// tracing filter directives.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration ({} problem(s)):\n  - {}", .problems.len(), .problems.join("\n  - "))]
pub struct SettingsError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl Settings {
    /// Loads the defaults, the optional file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, None)
    }

    /// Like [`Settings::load`], with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: Option<Vec<(String, String)>>,
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let mut environment = Environment::with_prefix("SALESTALK")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true);
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        if let Some(vars) = env {
            environment = environment.source(Some(vars.into_iter().collect()));
        }
        let merged = builder
            .add_source(environment)
            .build()
            .map_err(|e| SettingsError {
                problems: vec![e.to_string()],
            })?;
        Reader::new(merged).read()
    }
}

/// Reads typed values key by key, collecting problems instead of stopping at the first.
struct Reader {
    config: Config,
    problems: Vec<String>,
}

impl Reader {
    fn new(config: Config) -> Self {
        Self {
            config,
            problems: Vec::new(),
        }
    }

    fn get<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        self.config
            .get::<T>(key)
            .map_err(|e| self.problems.push(format!("{key}: {e}")))
            .ok()
    }

    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(problem());
        }
    }

    fn read(mut self) -> Result<Settings, SettingsError> {
        self.reject_unknown_keys();
        let kafka = self.kafka();
        let clickhouse = self.clickhouse();
        let pipeline = self.pipeline();
        let graph = self.graph();
        let retry = self.retry();
        let dlq = self.dlq();
        let sinks = self.sinks();
        let metrics = self.metrics();
        let alerts = self.alerts();
        let serve = self.serve();
        let log = self.log();
        match (
            kafka, clickhouse, pipeline, graph, retry, dlq, sinks, metrics, alerts, serve, log,
        ) {
            (
                Some(kafka),
                Some(clickhouse),
                Some(pipeline),
                Some(graph),
                Some(retry),
                Some(dlq),
                Some(sinks),
                Some(metrics),
                Some(alerts),
                Some(serve),
                Some(log),
            ) if self.problems.is_empty() => Ok(Settings {
                kafka,
                clickhouse,
                pipeline,
                graph,
                retry,
                dlq,
                sinks,
                metrics,
                alerts,
                serve,
                log,
            }),
            _ => Err(SettingsError {
                problems: self.problems,
            }),
        }
    }

    fn reject_unknown_keys(&mut self) {
        let known = leaf_keys(&toml_defaults());
        let given = match self.config.clone().try_deserialize::<Value>() {
            Ok(tree) => leaf_keys(&tree),
            Err(e) => {
                self.problems.push(e.to_string());
                return;
            }
        };
        for key in given.difference(&known) {
            self.problems.push(format!(
                "{key}: unknown key (environment variable SALESTALK__{})",
                key.replace('.', "__").to_uppercase()
            ));
        }
    }

    fn kafka(&mut self) -> Option<KafkaSettings> {
        let brokers: Option<String> = self.get("kafka.brokers");
        let topics: Option<Vec<String>> = self.get("kafka.topics");
        let group_id: Option<String> = self.get("kafka.group_id");
        let instance_id: Option<String> = self.get("kafka.instance_id");
        let topic_template: Option<String> = self.get("kafka.topic_template");
        let max_message_bytes: Option<usize> = self.get("kafka.max_message_bytes");
        let prefetch_kbytes: Option<u64> = self.get("kafka.prefetch_kbytes");

        if let Some(kbytes) = prefetch_kbytes {
            self.check((1024..=2_097_151).contains(&kbytes), || {
                format!("kafka.prefetch_kbytes: {kbytes} is outside 1024..=2097151")
            });
        }
        if let Some(brokers) = &brokers {
            let entries: Vec<&str> = brokers.split(',').map(str::trim).collect();
            for entry in &entries {
                self.check(is_host_port(entry), || {
                    format!("kafka.brokers: '{entry}' is not host:port")
                });
            }
        }
        if let Some(topics) = &topics {
            self.check(!topics.is_empty(), || {
                "kafka.topics: at least one topic is needed".into()
            });
            let mut seen = BTreeSet::new();
            for topic in topics {
                self.check(is_topic_name(topic), || {
                    format!("kafka.topics: '{topic}' is not a valid topic name ([a-zA-Z0-9._-], 1-249 characters)")
                });
                self.check(seen.insert(topic), || {
                    format!("kafka.topics: '{topic}' is listed twice")
                });
            }
        }
        if let Some(group_id) = &group_id {
            self.check(!group_id.trim().is_empty(), || {
                "kafka.group_id: must not be empty".into()
            });
        }
        if let Some(template) = &topic_template {
            let sample = template.replace("{domain}", "classification");
            self.check(template.contains("{domain}") && is_topic_name(&sample), || {
                format!("kafka.topic_template: '{template}' must contain {{domain}} and form a valid topic name")
            });
        }
        if let Some(max) = max_message_bytes {
            self.check((1024..=1 << 30).contains(&max), || {
                format!("kafka.max_message_bytes: {max} is outside 1024..=1073741824")
            });
        }
        Some(KafkaSettings {
            brokers: brokers?,
            topics: topics?,
            group_id: group_id?,
            instance_id: instance_id?,
            topic_template: topic_template?,
            max_message_bytes: max_message_bytes?,
            prefetch_kbytes: prefetch_kbytes?,
        })
    }

    fn clickhouse(&mut self) -> Option<Endpoint> {
        let url: Option<String> = self.get("clickhouse.url");
        let database: Option<String> = self.get("clickhouse.database");
        let user: Option<String> = self.get("clickhouse.user");
        let password: Option<String> = self.get("clickhouse.password");
        if let Some(url) = &url {
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            self.check(
                host.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/')),
                || format!("clickhouse.url: '{url}' is not an http:// or https:// URL"),
            );
        }
        if let Some(database) = &database {
            self.check(is_identifier(database), || {
                format!("clickhouse.database: '{database}' is not an identifier ([A-Za-z_][A-Za-z0-9_]*)")
            });
        }
        Some(Endpoint {
            url: url?,
            database: database?,
            user: user?,
            password: password?,
        })
    }

    fn pipeline(&mut self) -> Option<PipelineSettings> {
        let batch_size: Option<usize> = self.get("pipeline.batch_size");
        let batch_timeout_ms: Option<u64> = self.get("pipeline.batch_timeout_ms");
        let flush_interval_ms: Option<u64> = self.get("pipeline.flush_interval_ms");
        let allowed_lateness_ms: Option<i64> = self.get("pipeline.allowed_lateness_ms");
        let max_future_skew_ms: Option<i64> = self.get("pipeline.max_future_skew_ms");
        let dedup_horizon_ms: Option<i64> = self.get("pipeline.dedup_horizon_ms");
        let max_pending_bytes: Option<usize> = self.get("pipeline.max_pending_bytes");
        if let Some(bytes) = max_pending_bytes {
            self.check((1 << 20..=1 << 34).contains(&bytes), || {
                format!("pipeline.max_pending_bytes: {bytes} is outside 1048576..=17179869184")
            });
        }
        if let Some(interval) = flush_interval_ms {
            self.check((10..=600_000).contains(&interval), || {
                format!("pipeline.flush_interval_ms: {interval} is outside 10..=600000")
            });
        }
        for (key, value) in [
            ("pipeline.allowed_lateness_ms", allowed_lateness_ms),
            ("pipeline.max_future_skew_ms", max_future_skew_ms),
            ("pipeline.dedup_horizon_ms", dedup_horizon_ms),
        ] {
            if let Some(value) = value {
                self.check((0..=30 * 86_400_000).contains(&value), || {
                    format!("{key}: {value} is outside 0..=2592000000 (30 days)")
                });
            }
        }
        if let Some(size) = batch_size {
            self.check((1..=1_000_000).contains(&size), || {
                format!("pipeline.batch_size: {size} is outside 1..=1000000")
            });
        }
        if let Some(timeout) = batch_timeout_ms {
            self.check((1..=60_000).contains(&timeout), || {
                format!("pipeline.batch_timeout_ms: {timeout} is outside 1..=60000")
            });
        }
        Some(PipelineSettings {
            batch_size: batch_size?,
            batch_timeout_ms: batch_timeout_ms?,
            flush_interval_ms: flush_interval_ms?,
            allowed_lateness_ms: allowed_lateness_ms?,
            max_future_skew_ms: max_future_skew_ms?,
            dedup_horizon_ms: dedup_horizon_ms?,
            max_pending_bytes: max_pending_bytes?,
        })
    }

    fn graph(&mut self) -> Option<GraphSettings> {
        let names: Vec<String> = self.get("graph.aggregates")?;
        match Aggregates::from_names(&names) {
            Ok(aggregates) => Some(GraphSettings { aggregates }),
            Err(problems) => {
                for problem in problems {
                    self.problems.push(format!("graph.aggregates: {problem}"));
                }
                None
            }
        }
    }

    fn retry(&mut self) -> Option<RetrySettings> {
        let max_attempts: Option<u32> = self.get("retry.max_attempts");
        let initial_backoff_ms: Option<u64> = self.get("retry.initial_backoff_ms");
        let max_backoff_ms: Option<u64> = self.get("retry.max_backoff_ms");
        if let Some(attempts) = max_attempts {
            self.check((1..=100).contains(&attempts), || {
                format!("retry.max_attempts: {attempts} is outside 1..=100")
            });
        }
        if let (Some(initial), Some(max)) = (initial_backoff_ms, max_backoff_ms) {
            self.check((1..=60_000).contains(&initial), || {
                format!("retry.initial_backoff_ms: {initial} is outside 1..=60000")
            });
            self.check((initial..=600_000).contains(&max), || {
                format!("retry.max_backoff_ms: {max} is outside initial_backoff_ms..=600000")
            });
        }
        Some(RetrySettings {
            max_attempts: max_attempts?,
            initial_backoff_ms: initial_backoff_ms?,
            max_backoff_ms: max_backoff_ms?,
        })
    }

    fn dlq(&mut self) -> Option<DlqSettings> {
        let topic: String = self.get("dlq.topic")?;
        if topic.trim().is_empty() {
            return Some(DlqSettings { topic: None });
        }
        self.check(is_topic_name(&topic), || {
            format!("dlq.topic: '{topic}' is not a valid topic name")
        });
        Some(DlqSettings { topic: Some(topic) })
    }

    fn sinks(&mut self) -> Option<SinkSettings> {
        let names: Vec<String> = self.get("sinks.flush_order")?;
        match FlushOrder::parse(&names) {
            Ok(flush_order) => Some(SinkSettings { flush_order }),
            Err(problems) => {
                for problem in problems {
                    self.problems.push(format!("sinks.flush_order: {problem}"));
                }
                None
            }
        }
    }

    fn metrics(&mut self) -> Option<MetricsSettings> {
        let listen: String = self.get("metrics.listen")?;
        if listen.trim().is_empty() {
            return Some(MetricsSettings { listen: None });
        }
        match listen.parse() {
            Ok(address) => Some(MetricsSettings {
                listen: Some(address),
            }),
            Err(_) => {
                self.problems.push(format!(
                    "metrics.listen: '{listen}' is not an address like 127.0.0.1:9464"
                ));
                None
            }
        }
    }

    fn alerts(&mut self) -> Option<AlertSettings> {
        let evaluate_every_ms: Option<u64> = self.get("alerts.evaluate_every_ms");
        let webhooks: Option<Vec<String>> = self.get("alerts.webhooks");
        let alertmanager_webhooks: Option<Vec<String>> = self.get("alerts.alertmanager_webhooks");
        let receiver: Option<String> = self.get("alerts.receiver");
        let external_url: Option<String> = self.get("alerts.external_url");
        let rules: Option<Vec<salestalk_alerting::Rule>> = self.get("alerts.rules");
        if let Some(every) = evaluate_every_ms {
            self.check((100..=3_600_000).contains(&every), || {
                format!("alerts.evaluate_every_ms: {every} is outside 100..=3600000")
            });
        }
        // An empty environment value (SALESTALK__ALERTS__WEBHOOKS=) means no webhooks.
        let urls = |list: Option<Vec<String>>| -> Option<Vec<String>> {
            Some(list?.into_iter().filter(|u| !u.trim().is_empty()).collect())
        };
        let (webhooks, alertmanager_webhooks) = (urls(webhooks), urls(alertmanager_webhooks));
        for (key, list) in [
            ("alerts.webhooks", &webhooks),
            ("alerts.alertmanager_webhooks", &alertmanager_webhooks),
        ] {
            for url in list.iter().flatten() {
                self.check(is_http_url(url), || {
                    format!("{key}: '{url}' is not an http:// URL (https is not supported)")
                });
            }
        }
        if let Some(rules) = &rules {
            self.problems
                .extend(salestalk_alerting::rule::problems(rules));
        }
        Some(AlertSettings {
            evaluate_every_ms: evaluate_every_ms?,
            webhooks: webhooks?,
            alertmanager_webhooks: alertmanager_webhooks?,
            receiver: receiver?,
            external_url: external_url?,
            rules: rules?,
        })
    }

    fn serve(&mut self) -> Option<ServeSettings> {
        let listen: String = self.get("serve.listen")?;
        match listen.parse() {
            Ok(listen) => Some(ServeSettings { listen }),
            Err(_) => {
                self.problems.push(format!(
                    "serve.listen: '{listen}' is not an address like 127.0.0.1:8080"
                ));
                None
            }
        }
    }

    fn log(&mut self) -> Option<LogSettings> {
        let level: Option<String> = self.get("log.level");
        let format: Option<LogFormat> = self.get("log.format");
        if let Some(level) = &level {
            let parsed = tracing_subscriber::EnvFilter::try_new(level);
            self.check(parsed.is_ok(), || {
                format!("log.level: '{level}' is not a tracing filter")
            });
        }
        Some(LogSettings {
            level: level?,
            format: format?,
        })
    }
}

fn toml_defaults() -> Value {
    Config::builder()
        .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .unwrap_or(Value::Null)
}

/// Dotted paths of the non-table values in a tree (lists count as leaves).
fn leaf_keys(tree: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(child, &path, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(tree, "", &mut out);
    out
}

fn is_http_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

fn is_host_port(entry: &str) -> bool {
    match entry.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn is_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_load_without_problems() {
        let settings = Settings::load_from(None, env(&[])).expect("defaults are valid");
        assert_eq!(settings.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(settings.kafka.topics.len(), 5);
        assert_eq!(settings.clickhouse.database, "salestalk");
        assert_eq!(settings.log.format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_every_documented_key() {
        let settings = Settings::load_from(
            None,
            env(&[
                ("SALESTALK__KAFKA__BROKERS", "kafka-1:9092,kafka-2:9093"),
                ("SALESTALK__KAFKA__TOPICS", "a.events,b.events"),
                ("SALESTALK__KAFKA__GROUP_ID", "analytics-7"),
                ("SALESTALK__CLICKHOUSE__URL", "https://ch.internal:8443"),
                ("SALESTALK__CLICKHOUSE__DATABASE", "salestalk_test"),
                ("SALESTALK__PIPELINE__BATCH_SIZE", "20000"),
                ("SALESTALK__GRAPH__AGGREGATES", "volume,cost"),
                ("SALESTALK__LOG__FORMAT", "json"),
                ("SALESTALK__RETRY__MAX_ATTEMPTS", "5"),
                ("SALESTALK__DLQ__TOPIC", ""),
                (
                    "SALESTALK__SINKS__FLUSH_ORDER",
                    "archive,dead_letter_table,window_state",
                ),
            ]),
        )
        .expect("valid overrides");
        assert_eq!(
            settings.sinks.flush_order.names(),
            ["archive", "dead_letter_table", "window_state"]
        );
        assert_eq!(settings.retry.max_attempts, 5);
        assert_eq!(settings.dlq.topic, None);
        assert_eq!(settings.graph.aggregates.names(), ["volume", "cost"]);
        assert_eq!(settings.kafka.brokers, "kafka-1:9092,kafka-2:9093");
        assert_eq!(settings.kafka.topics, ["a.events", "b.events"]);
        assert_eq!(settings.kafka.group_id, "analytics-7");
        assert_eq!(settings.clickhouse.url, "https://ch.internal:8443");
        assert_eq!(settings.clickhouse.database, "salestalk_test");
        assert_eq!(settings.pipeline.batch_size, 20_000);
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn a_file_layers_over_the_defaults_and_under_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mine.toml");
        std::fs::write(
            &path,
            "[kafka]\ngroup_id = \"from-file\"\nbrokers = \"file:9092\"\n",
        )
        .expect("write");
        let settings = Settings::load_from(
            Some(&path),
            env(&[("SALESTALK__KAFKA__BROKERS", "env:9092")]),
        )
        .expect("valid");
        assert_eq!(settings.kafka.group_id, "from-file");
        assert_eq!(settings.kafka.brokers, "env:9092");
    }

    #[test]
    fn the_default_alert_rules_are_the_spec_thresholds() {
        let settings = Settings::load_from(None, env(&[])).expect("valid");
        assert_eq!(
            settings.alerts.rules,
            salestalk_alerting::Rule::spec_defaults()
        );
        assert!(settings.alerts.webhooks.is_empty());
    }

    #[test]
    fn a_file_replaces_the_alert_rules_and_bad_ones_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.toml");
        let rule = |name: &str, threshold: &str, extra: &str| {
            format!(
                "[[alerts.rules]]\nname = \"{name}\"\nsignal = \"dlq_depth\"\n\
                 comparison = \"above\"\nthreshold = {threshold}\nfor_ms = 0\n\
                 keep_firing_ms = 1000\nseverity = \"info\"\nscope = \"global\"\n\
                 lookback_ms = 60000\nmin_events = 0\n{extra}"
            )
        };
        std::fs::write(&path, rule("OnlyOne", "3", "")).expect("write");
        let settings = Settings::load_from(
            Some(&path),
            env(&[(
                "SALESTALK__ALERTS__WEBHOOKS",
                "http://127.0.0.1:1/a,http://127.0.0.1:1/b",
            )]),
        )
        .expect("valid");
        assert_eq!(
            settings.alerts.rules.len(),
            1,
            "the file's list replaces the defaults"
        );
        assert_eq!(settings.alerts.rules[0].name, "OnlyOne");
        assert_eq!(settings.alerts.rules[0].threshold, 3.0);
        assert_eq!(settings.alerts.webhooks.len(), 2);

        let bad = format!("{}{}", rule("Same", "1", ""), rule("Same", "-1", ""));
        std::fs::write(&path, bad).expect("write");
        let error = Settings::load_from(
            Some(&path),
            env(&[("SALESTALK__ALERTS__ALERTMANAGER_WEBHOOKS", "https://x")]),
        )
        .expect_err("invalid");
        let text = error.to_string();
        for needle in [
            "alerts.rules[1] (Same): name is used by another rule",
            "alerts.rules[1] (Same): threshold must not be negative",
            "alerts.alertmanager_webhooks: 'https://x' is not an http:// URL",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let error = Settings::load_from(
            None,
            env(&[
                ("SALESTALK__KAFKA__BROKERS", "no-port,also:bad:x"),
                ("SALESTALK__KAFKA__TOPICS", "ok.topic,bad topic"),
                ("SALESTALK__KAFKA__GROUP_ID", " "),
                ("SALESTALK__KAFKA__BROKER", "typo:9092"),
                ("SALESTALK__CLICKHOUSE__URL", "ftp://x"),
                ("SALESTALK__CLICKHOUSE__DATABASE", "drop table"),
                ("SALESTALK__PIPELINE__BATCH_SIZE", "lots"),
                ("SALESTALK__GRAPH__AGGREGATES", "volume,costs"),
                ("SALESTALK__RETRY__MAX_ATTEMPTS", "0"),
                ("SALESTALK__DLQ__TOPIC", "dead letters"),
                ("SALESTALK__SINKS__FLUSH_ORDER", "window_state,archive"),
                ("SALESTALK__LOG__FORMAT", "xml"),
            ]),
        )
        .expect_err("invalid");
        let text = error.to_string();
        for needle in [
            "'no-port' is not host:port",
            "'also:bad:x' is not host:port",
            "'bad topic' is not a valid topic name",
            "kafka.group_id: must not be empty",
            "kafka.broker: unknown key (environment variable SALESTALK__KAFKA__BROKER)",
            "clickhouse.url: 'ftp://x'",
            "clickhouse.database: 'drop table'",
            "pipeline.batch_size",
            "graph.aggregates: unknown aggregate 'costs'",
            "retry.max_attempts: 0 is outside 1..=100",
            "dlq.topic: 'dead letters'",
            "sinks.flush_order: the last sink must be window_state",
            "sinks.flush_order: no dead-letter sink",
            "log.format",
        ] {
            assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
        }
        assert_eq!(error.problems.len(), 14, "{text}");
    }

    #[test]
    fn a_missing_config_file_is_a_problem() {
        let error = Settings::load_from(Some(Path::new("/nonexistent/salestalk.toml")), env(&[]))
            .expect_err("missing file");
        assert!(error.to_string().contains("salestalk.toml"), "{error}");
    }
}
