//! Configuration: `config/salestalk.toml` (embedded) < `--config` file < `SALESTALK__*` env.
//!
//! Each section's settings type lives beside the component it configures and says what is
//! wrong with it (`problems`); this module only layers the sources, reads every section and
//! reports every problem at once, including keys that do not exist (a misspelt override is
//! otherwise silently ignored) and a value of the wrong type in any key.

use std::collections::BTreeSet;
use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use salestalk_kafka::KafkaSettings;
use salestalk_kinesis::KinesisSettings;
use salestalk_operators::SourceKind;
use salestalk_operators::routing::{RoutingSettings, RoutingTable};
use salestalk_operators::task::TaskSettings;
use salestalk_operators::versions::ContractSettings;
use salestalk_sinks::SinkSettings;
use salestalk_sinks::kafka::DlqSettings;
use salestalk_sinks::retry::RetrySettings;
use salestalk_store::Endpoint;
use salestalk_store::retention::RetentionSettings;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::logging::LogSettings;
use crate::run::settings::{GraphSettings, PipelineSettings};
use crate::serve::alerts::AlertSettings;
use crate::serve::settings::ServeSettings;
use crate::telemetry::TelemetrySettings;
use salestalk_corrections::{CorrectionSettings, CorrectorSettings};
use salestalk_gateway::IngestSettings;

/// The documented defaults, which also define the set of known keys.
pub const DEFAULTS: &str = include_str!("../../config/salestalk.toml");

/// Keys renamed by a release, old name first: the old name still works, with a warning,
/// until the release after (a value given under both names takes the new one's).
pub const RENAMED: &[(&str, &str)] = &[("metrics.listen", "telemetry.listen")];

/// Keys a release replaced by others of another meaning, with what to set instead: given,
/// they fail at start-up saying so (a value cannot be carried over).
pub const REPLACED: &[(&str, &str)] = &[
    (
        "pipeline.dedup_max_ids",
        "pipeline.dedup_memory_mib, a budget per instance shared among its partitions (24 bytes an id)",
    ),
    (
        "pipeline.dedup_max_ids_per_tenant",
        "pipeline.dedup_tenant_share_percent, a tenant's share of a partition's ids",
    ),
];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "kafka.topics",
    "graph.aggregates",
    "sinks.flush_order",
    "alerts.webhooks",
    "alerts.alertmanager_webhooks",
    "routing.unmatched",
    "kinesis.streams",
    "pipeline.sources",
    "ingest.kinesis_event_types",
    "clickhouse.shard_urls",
];

/// Everything the pipeline can be configured with, one section per component.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `[kafka]`: the brokers and the consumer group (`salestalk-kafka`).
    pub kafka: KafkaSettings,
    /// `[kinesis]`: the region, endpoint and streams (`salestalk-kinesis`).
    pub kinesis: KinesisSettings,
    /// `[clickhouse]`: where and as whom to connect (`salestalk-store`).
    pub clickhouse: Endpoint,
    /// `[pipeline]`: batching, flushing, time rules (the runtime).
    pub pipeline: PipelineSettings,
    /// `[graph]`: the aggregates every task runs (the runtime).
    pub graph: GraphSettings,
    /// `[retry]`: how failed writes are retried (`salestalk-sinks`).
    pub retry: RetrySettings,
    /// `[dlq]`: the dead-letter topic (`salestalk-sinks`).
    pub dlq: DlqSettings,
    /// `[sinks]`: the flush order (`salestalk-sinks`).
    pub sinks: SinkSettings,
    /// `[telemetry]`: the Prometheus endpoint of `run`.
    pub telemetry: TelemetrySettings,
    /// `[alerts]`: the alert evaluator of `serve`.
    pub alerts: AlertSettings,
    /// `[serve]`: where `serve` listens.
    pub serve: ServeSettings,
    /// `[retention]`: how long the archive and the dead letters are kept (`salestalk-store`).
    pub retention: RetentionSettings,
    /// `[corrections]`: late events' horizon and the corrector of past days.
    pub corrections: CorrectionSettings,
    /// `[ingest]`: the ingest gateway.
    pub ingest: IngestSettings,
    /// `[routing]`: where each valid event goes.
    pub routing: RoutingSettings,
    /// `[contracts]`: each event version's lifecycle (current, or deprecated until a date).
    pub contracts: ContractSettings,
    /// `[log]`: diagnostics.
    pub log: LogSettings,
    /// Keys given by a name a release renamed: (old, new), for [`Settings::warn_renamed`].
    pub renamed: Vec<(String, String)>,
}

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration ({} problem(s)):\n  - {}", .problems.len(), .problems.join("\n  - "))]
pub struct SettingsError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl Settings {
    /// The task rules these settings give (a run's, and a recomputation's from the archive),
    /// with the dedup caps of a task alone on its instance: the runtime shares the budget
    /// among the tasks it owns ([`PipelineSettings::dedup_caps`](crate::run::settings::PipelineSettings::dedup_caps)).
    pub fn task_settings(&self) -> TaskSettings {
        let (dedup_max_ids, dedup_max_ids_per_tenant) = self.pipeline.dedup_caps(1);
        TaskSettings {
            allowed_lateness_ms: self.pipeline.allowed_lateness_ms,
            correction_horizon_ms: self.corrections.horizon_ms,
            max_future_skew_ms: self.pipeline.max_future_skew_ms,
            dedup_horizon_ms: self.pipeline.dedup_horizon_ms,
            dedup_max_ids,
            dedup_max_ids_per_tenant,
            max_message_bytes: self.kafka.max_message_bytes,
            max_new_enum_values: self.pipeline.max_new_enum_values,
            max_sources_per_day: self.pipeline.max_sources_per_day,
            version_ends: self.contracts.version_ends(),
        }
    }

    /// What the corrector of past days is built from: its section and the rules it shares
    /// with the live tasks.
    pub fn corrector(&self) -> CorrectorSettings {
        CorrectorSettings {
            endpoint: self.clickhouse.clone(),
            corrections: self.corrections,
            task: self.task_settings(),
            aggregates: self.graph.aggregates.names(),
            routing: self.routing.clone(),
            archive_days: self.retention.archive_days,
        }
    }

    /// Loads the defaults, the optional file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, None)
    }

    /// Like [`Settings::load`], with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: Option<Vec<(String, String)>>,
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(defaults());
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
        let failed = |e: config::ConfigError| SettingsError {
            problems: vec![e.to_string()],
        };
        let merged = builder.add_source(environment).build().map_err(failed)?;
        let (merged, renamed) = carry_renamed(merged).map_err(failed)?;
        let mut settings = Reader::new(merged).read()?;
        settings.renamed = renamed;
        Ok(settings)
    }

    /// Warns once for every renamed key these settings were given by its old name (call it
    /// once logging is set up).
    pub fn warn_renamed(&self) {
        for (old, new) in &self.renamed {
            tracing::warn!(
                old = %old,
                new = %new,
                "a setting was given by its old name; it works until the next release: rename it \
                 (in a file, or SALESTALK__{})",
                new.replace('.', "__").to_uppercase()
            );
        }
    }
}

/// `config` with every renamed key given by its old name carried to its new one (unless the
/// new one was given too), and the (old, new) pairs carried.
fn carry_renamed(config: Config) -> Result<(Config, Vec<(String, String)>), config::ConfigError> {
    let defaults = Config::builder().add_source(defaults()).build()?;
    let text = |c: &Config, key: &str| c.get::<config::Value>(key).ok().map(|v| v.to_string());
    let mut carried = Vec::new();
    let mut builder = Config::builder().add_source(config.clone());
    for (old, new) in RENAMED {
        let Ok(value) = config.get::<config::Value>(old) else {
            continue;
        };
        // Given under both names, the new one's value wins.
        if text(&config, new) == text(&defaults, new) {
            builder = builder.set_override(*new, value)?;
        }
        carried.push((old.to_string(), new.to_string()));
    }
    Ok((builder.build()?, carried))
}

fn defaults() -> File<config::FileSourceString, FileFormat> {
    File::from_str(DEFAULTS, FileFormat::Toml)
}

/// Reads section by section, collecting problems instead of stopping at the first.
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

    /// The section `name` with its problems recorded; `None` when a value has the wrong type
    /// (every such key is named).
    fn section<T: DeserializeOwned>(
        &mut self,
        name: &str,
        problems: impl Fn(&T) -> Vec<String>,
    ) -> Option<T> {
        match self.config.get::<T>(name) {
            Ok(section) => {
                self.problems.extend(problems(&section));
                Some(section)
            }
            Err(error) => {
                let before = self.problems.len();
                self.name_wrong_keys::<T>(name);
                if self.problems.len() == before {
                    self.problems.push(format!("[{name}]: {error}"));
                }
                None
            }
        }
    }

    /// Reports each key of section `name` whose value alone keeps the section from being
    /// read: the defaults with that one value put in.
    fn name_wrong_keys<T: DeserializeOwned>(&mut self, name: &str) {
        let given = match self.config.clone().try_deserialize::<Value>() {
            Ok(tree) => leaf_keys(&tree),
            Err(_) => return,
        };
        let prefix = format!("{name}.");
        for key in given.iter().filter(|k| k.starts_with(&prefix)) {
            let Ok(value) = self.config.get::<config::Value>(key) else {
                continue;
            };
            let probe = Config::builder()
                .add_source(defaults())
                .set_override(key.as_str(), value)
                .and_then(|b| b.build())
                .and_then(|c| c.get::<T>(name));
            if let Err(error) = probe {
                // The reader names the section (" for key `graph`"); the key is named here.
                let text = error.to_string();
                let text = text
                    .rsplit_once(" for key `")
                    .map_or(text.as_str(), |(t, _)| t);
                // A checked list (aggregates, flush order) reports its problems as one text.
                for problem in text.split("; ") {
                    self.problems.push(format!("{key}: {problem}"));
                }
            }
        }
    }

    fn read(mut self) -> Result<Settings, SettingsError> {
        self.reject_unknown_keys();
        let kafka = self.section("kafka", KafkaSettings::problems);
        let kinesis = self.section("kinesis", KinesisSettings::problems);
        let clickhouse = self.section("clickhouse", Endpoint::problems);
        let pipeline = self.section("pipeline", PipelineSettings::problems);
        let graph = self.section("graph", |_: &GraphSettings| Vec::new());
        let retry = self.section("retry", RetrySettings::problems);
        let dlq = self.section("dlq", DlqSettings::problems);
        let sinks = self.section("sinks", |_: &SinkSettings| Vec::new());
        let telemetry = self.section("telemetry", TelemetrySettings::problems);
        let alerts = self.section("alerts", AlertSettings::problems);
        let serve = self.section("serve", ServeSettings::problems);
        let log = self.section("log", LogSettings::problems);
        let retention = self.section("retention", RetentionSettings::problems);
        let archive_days = retention.as_ref().map_or(90, |r| r.archive_days);
        let corrections = self.section("corrections", |c: &CorrectionSettings| {
            c.problems(archive_days)
        });
        if let (Some(graph), Some(corrections)) = (&graph, &corrections)
            && corrections.scheduled()
        {
            for needed in ["volume", "late_arrivals"] {
                if !graph.aggregates.names().contains(&needed) {
                    self.problems.push(format!(
                        "graph.aggregates: the corrector (corrections.interval_ms) reads the \
                         '{needed}' aggregate's rows; add it, or set corrections.interval_ms = 0"
                    ));
                }
            }
        }
        let ingest = self.section("ingest", IngestSettings::problems);
        let contracts = self.section("contracts", ContractSettings::problems);
        let routing = self.section("routing", |r: &RoutingSettings| {
            RoutingTable::compile(r).err().unwrap_or_default()
        });
        if let (Some(pipeline), Some(kinesis)) = (&pipeline, &kinesis)
            && pipeline.reads(SourceKind::Kinesis)
            && kinesis.streams.is_empty()
        {
            self.problems.push(
                "kinesis.streams: pipeline.sources reads Kinesis, so name at least one stream"
                    .into(),
            );
        }
        match (
            kafka,
            kinesis,
            clickhouse,
            pipeline,
            graph,
            retry,
            dlq,
            sinks,
            telemetry,
            alerts,
            serve,
            log,
            retention,
            ingest,
            routing,
            corrections,
            contracts,
        ) {
            (
                Some(kafka),
                Some(kinesis),
                Some(clickhouse),
                Some(pipeline),
                Some(graph),
                Some(retry),
                Some(dlq),
                Some(sinks),
                Some(telemetry),
                Some(alerts),
                Some(serve),
                Some(log),
                Some(retention),
                Some(ingest),
                Some(routing),
                Some(corrections),
                Some(contracts),
            ) if self.problems.is_empty() => Ok(Settings {
                kafka,
                kinesis,
                clickhouse,
                pipeline,
                graph,
                retry,
                dlq,
                sinks,
                telemetry,
                alerts,
                serve,
                log,
                retention,
                ingest,
                routing,
                corrections,
                contracts,
                renamed: Vec::new(),
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
        let open = |key: &&String| {
            OPEN_TABLES
                .iter()
                .any(|table| key.strip_prefix(table).is_some_and(|k| k.starts_with('.')))
        };
        let renamed = |key: &&String| RENAMED.iter().any(|(old, _)| old == key);
        for key in given
            .difference(&known)
            .filter(|key| !open(key) && !renamed(key))
        {
            if let Some((_, instead)) = REPLACED.iter().find(|(old, _)| old == key) {
                self.problems
                    .push(format!("{key}: no longer a setting; set {instead}"));
                continue;
            }
            self.problems.push(format!(
                "{key}: unknown key (in a file, or the environment variable SALESTALK__{})",
                key.replace('.', "__").to_uppercase()
            ));
        }
    }
}

/// Tables whose keys are the user's to choose (checked by their section's own rules).
const OPEN_TABLES: [&str; 2] = ["clickhouse.settings", "routing.targets"];

fn toml_defaults() -> Value {
    Config::builder()
        .add_source(defaults())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::LogFormat;

    fn env(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_renamed_key_works_by_its_old_name_and_is_told() {
        let old = Settings::load_from(
            None,
            env(&[("SALESTALK__METRICS__LISTEN", "127.0.0.1:9500")]),
        )
        .expect("the old name is still accepted");
        assert_eq!(old.telemetry.listen(), "127.0.0.1:9500".parse().ok());
        assert_eq!(
            old.renamed,
            [("metrics.listen".to_string(), "telemetry.listen".to_string())]
        );
        let both = Settings::load_from(
            None,
            env(&[
                ("SALESTALK__METRICS__LISTEN", "127.0.0.1:9500"),
                ("SALESTALK__TELEMETRY__LISTEN", "127.0.0.1:9600"),
            ]),
        )
        .expect("both names");
        assert_eq!(both.telemetry.listen(), "127.0.0.1:9600".parse().ok());
        let new = Settings::load_from(None, env(&[("SALESTALK__TELEMETRY__LISTEN", "")]))
            .expect("the new name");
        assert_eq!((new.telemetry.listen(), new.renamed.len()), (None, 0));
    }

    #[test]
    fn the_dedup_budget_is_shared_among_the_partitions_owned_and_replaced_keys_are_told() {
        let settings = Settings::load_from(
            None,
            env(&[
                ("SALESTALK__PIPELINE__DEDUP_MEMORY_MIB", "240"),
                ("SALESTALK__PIPELINE__DEDUP_TENANT_SHARE_PERCENT", "10"),
            ]),
        )
        .expect("valid");
        // 240 MiB at 24 bytes an id: 10,485,760 ids.
        let pipeline = &settings.pipeline;
        assert_eq!(pipeline.dedup_caps(1), (10_485_760, 1_048_576));
        assert_eq!(pipeline.dedup_caps(0), pipeline.dedup_caps(1));
        assert_eq!(pipeline.dedup_caps(4), (2_621_440, 262_144));
        assert_eq!(
            pipeline.dedup_caps(1_000_000),
            (crate::run::settings::MIN_DEDUP_IDS, 100),
            "a floor rather than no dedup"
        );
        let (cap, _) = pipeline.dedup_caps(7);
        assert!(7 * cap * salestalk_operators::dedup::BYTES_PER_ID <= 240 << 20);
        assert_eq!(settings.task_settings().dedup_max_ids, 10_485_760);

        let old = Settings::load_from(
            None,
            env(&[
                ("SALESTALK__PIPELINE__DEDUP_MAX_IDS", "5000000"),
                ("SALESTALK__PIPELINE__DEDUP_TENANT_SHARE_PERCENT", "0"),
            ]),
        )
        .expect_err("a replaced key and a share of 0");
        let problems = old.problems.join("\n");
        assert!(
            problems.contains(
                "pipeline.dedup_max_ids: no longer a setting; set pipeline.dedup_memory_mib"
            ),
            "{problems}"
        );
        assert!(
            problems.contains("dedup_tenant_share_percent"),
            "{problems}"
        );
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
    fn idle_clocks_move_after_a_minute_at_least_or_never() {
        let load = |value: &str| {
            Settings::load_from(None, env(&[("SALESTALK__PIPELINE__IDLE_AFTER_MS", value)]))
        };
        assert_eq!(
            load("0").expect("never").pipeline.idle_after_ms,
            0,
            "0 turns it off"
        );
        let error = load("5000").expect_err("too short").to_string();
        assert!(
            error.contains("pipeline.idle_after_ms: 5000 is outside 60000..=86400000"),
            "{error}"
        );
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
                ("SALESTALK__CLICKHOUSE__SETTINGS__LOG_QUERIES", "1"),
                ("SALESTALK__CLICKHOUSE__COMPRESSION", "none"),
                ("SALESTALK__PIPELINE__BATCH_SIZE", "20000"),
                ("SALESTALK__GRAPH__AGGREGATES", "volume,cost"),
                // The corrector reads late_arrivals' rows, which this graph leaves out.
                ("SALESTALK__CORRECTIONS__INTERVAL_MS", "0"),
                ("SALESTALK__CORRECTIONS__HORIZON_MS", "86400000"),
                ("SALESTALK__LOG__FORMAT", "json"),
                ("SALESTALK__RETRY__MAX_ATTEMPTS", "5"),
                ("SALESTALK__DLQ__TOPIC", ""),
                ("SALESTALK__DLQ__RETENTION_MS", "86400000"),
                ("SALESTALK__RETENTION__ARCHIVE_DAYS", "30"),
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
        assert_eq!(settings.dlq.topic(), None);
        assert_eq!(settings.dlq.retention_ms, 86_400_000);
        assert_eq!(settings.retention.archive_days, 30);
        assert_eq!(settings.graph.aggregates.names(), ["volume", "cost"]);
        assert_eq!(settings.kafka.brokers, "kafka-1:9092,kafka-2:9093");
        assert_eq!(settings.kafka.topics, ["a.events", "b.events"]);
        assert_eq!(settings.kafka.group_id, "analytics-7");
        assert_eq!(settings.clickhouse.url, "https://ch.internal:8443");
        assert_eq!(settings.clickhouse.database, "salestalk_test");
        assert_eq!(
            settings
                .clickhouse
                .settings
                .get("log_queries")
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(
            settings.clickhouse.compression,
            salestalk_store::InsertCompression::None
        );
        assert_eq!(settings.pipeline.batch_size, 20_000);
        assert_eq!(settings.log.format, LogFormat::Json);
        assert!(!settings.corrections.scheduled());
        assert_eq!(settings.corrections.horizon_ms, 86_400_000);
    }

    #[test]
    fn the_corrector_needs_the_rows_it_reads_and_an_archive_that_holds_its_horizon() {
        let problems = Settings::load_from(
            None,
            env(&[
                ("SALESTALK__GRAPH__AGGREGATES", "cost"),
                ("SALESTALK__RETENTION__ARCHIVE_DAYS", "5"),
            ]),
        )
        .expect_err("the corrector lacks its rows")
        .problems;
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("'volume'")));
        assert!(problems.iter().any(|p| p.contains("'late_arrivals'")));
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("corrections.horizon_ms"))
        );
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
    fn the_default_routing_is_the_contracts_table_and_takes_every_event_type() {
        let settings = Settings::load_from(None, env(&[])).expect("valid");
        let table = RoutingTable::compile(&settings.routing).expect("compiles");
        assert!(table.not_always_routed().is_empty());
        let names = |event_type: &str| -> Vec<String> {
            let (_, targets) = table.route(event_type, "tenant-1", "svc");
            targets
                .iter()
                .map(|&i| table.targets()[i].clone())
                .collect()
        };
        // The contract's routing table, with the metrics beside every row.
        assert_eq!(
            names("classification.performed.v1"),
            ["metrics", "insights-queue"]
        );
        assert_eq!(
            names("classification.performed.v2"),
            ["metrics", "insights-queue"]
        );
        assert_eq!(
            names("narrative.generated.v1"),
            ["metrics", "analytics-stream"]
        );
        assert_eq!(
            names("conversation.completed.v1"),
            ["metrics", "archival-queue", "billing-queue"]
        );
        assert_eq!(
            names("metrics.ingested.v1"),
            ["metrics", "aggregation-queue"]
        );
        assert_eq!(
            names("tenant.provisioned.v1"),
            ["metrics", "welcome-email-queue", "billing-queue"]
        );
        // A list overridden from the environment.
        let settings = Settings::load_from(
            None,
            env(&[("SALESTALK__ROUTING__UNMATCHED", "metrics,billing-queue")]),
        )
        .expect("valid");
        assert_eq!(settings.routing.unmatched, ["metrics", "billing-queue"]);
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
            env(&[(
                "SALESTALK__ALERTS__ALERTMANAGER_WEBHOOKS",
                "ftp://x/secret-token,https://",
            )]),
        )
        .expect_err("invalid");
        let text = error.to_string();
        for needle in [
            "alerts.rules[1] (Same): name is used by another rule",
            "alerts.rules[1] (Same): threshold must not be negative",
            "alerts.alertmanager_webhooks: 'ftp://x/…' is not an http:// or https:// URL",
            "alerts.alertmanager_webhooks: '<an unparsable URL>' is not an http:// or https:// URL",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(!text.contains("secret-token"), "{text}");
    }

    #[test]
    fn sources_are_named_once_each_and_kinesis_instances_are_checked() {
        let error = Settings::load_from(
            None,
            env(&[
                ("SALESTALK__PIPELINE__SOURCES", "kinesis,pulsar,kinesis"),
                ("SALESTALK__KINESIS__INSTANCES", "2"),
                ("SALESTALK__KINESIS__INSTANCE_INDEX", "2"),
            ]),
        )
        .expect_err("invalid");
        let text = error.to_string();
        for needle in [
            "pipeline.sources: 'pulsar' is not a source",
            "pipeline.sources: 'kinesis' is listed twice",
            "kinesis.instance_index: 2 must be below kinesis.instances (2",
        ] {
            assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
        }
        let both = Settings::load_from(
            None,
            env(&[("SALESTALK__PIPELINE__SOURCES", "kafka,kinesis")]),
        )
        .expect("both sources");
        assert_eq!(both.pipeline.sources, ["kafka", "kinesis"]);
    }

    #[test]
    fn the_gateways_kinesis_event_types_are_patterns_of_known_types() {
        let error = Settings::load_from(
            None,
            env(&[(
                "SALESTALK__INGEST__KINESIS_EVENT_TYPES",
                "narative.*,narrative.*.v1,conversation.completed.v1",
            )]),
        )
        .expect_err("invalid");
        let text = error.to_string();
        for needle in [
            "ingest.kinesis_event_types[0]: 'narative.*' matches no event type this build knows",
            "ingest.kinesis_event_types[1]: 'narrative.*.v1': '*' may only end a pattern",
        ] {
            assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
        }
        assert!(!text.contains("kinesis_event_types[2]"), "{text}");
        let good = Settings::load_from(
            None,
            env(&[("SALESTALK__INGEST__KINESIS_EVENT_TYPES", "narrative.*")]),
        )
        .expect("a known pattern");
        assert_eq!(good.ingest.kinesis_event_types, ["narrative.*"]);
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
                ("SALESTALK__CLICKHOUSE__SETTINGS__PASSWORD", "hunter2"),
                ("SALESTALK__DLQ__RETENTION_MS", "1000"),
            ]),
        )
        .expect_err("invalid");
        let text = error.to_string();
        for needle in [
            "'no-port' is not host:port",
            "'also:bad:x' is not host:port",
            "'bad topic' is not a valid topic name",
            "kafka.group_id: must not be empty",
            "kafka.broker: unknown key (in a file, or the environment variable SALESTALK__KAFKA__BROKER)",
            "clickhouse.url: 'ftp://x'",
            "clickhouse.database: 'drop table'",
            "clickhouse.settings.password: not a setting; use clickhouse.password",
            "pipeline.batch_size",
            "graph.aggregates: unknown aggregate 'costs'",
            "retry.max_attempts: 0 is outside 1..=100",
            "dlq.topic: 'dead letters'",
            "dlq.retention_ms: 1000 is outside 3600000..=315360000000",
            "sinks.flush_order: the last sink must be window_state",
            "sinks.flush_order: no dead-letter sink",
            "log.format",
        ] {
            assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(error.problems.len(), 16, "{text}");
    }

    #[test]
    fn a_missing_config_file_is_a_problem() {
        let error = Settings::load_from(Some(Path::new("/nonexistent/salestalk.toml")), env(&[]))
            .expect_err("missing file");
        assert!(error.to_string().contains("salestalk.toml"), "{error}");
    }
}
