//! The pipeline's own health, as Prometheus metrics on `GET /metrics`.
//!
//! The runtime updates these as it reads, processes and flushes; a small HTTP server renders
//! them on request. SREs alert on them (`deploy/prometheus/`): lag, progress, dead-letter
//! inflow and whether the sinks take writes. `GET /health` answers 503 while the process starts
//! or a sink is down; `GET /health/live` 503 once the driver loop stalled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use hyper::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use salestalk_corrections::{CorrectionObserver, Pass};
use salestalk_sinks::sink::services;
use salestalk_sources::{PartitionGauges, SourceObserver, SourcePartition};

use salestalk_http::probes::Probes;
use salestalk_http::server::respond;

/// `[telemetry]`: the Prometheus endpoint of `salestalk run` (`[metrics]` until this
/// release: the metrics are the views dashboards read; this is the pipeline's own telemetry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TelemetrySettings {
    /// Where `GET /metrics` is served; empty when turned off.
    listen: String,
}

impl TelemetrySettings {
    /// The address, unless the endpoint is turned off.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.listen.trim().parse().ok()
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        if self.listen.trim().is_empty() || self.listen().is_some() {
            Vec::new()
        } else {
            vec![format!(
                "telemetry.listen: '{}' is not an address like 127.0.0.1:9464",
                self.listen
            )]
        }
    }
}

/// Labels naming a source partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// Labels naming a downstream consumer group on the topic it reads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The consumer group.
    pub group: String,
    /// The routing target's topic.
    pub topic: String,
}

/// Labels naming a stage outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `read`, `accepted`, `duplicate` or `dead_lettered` (messages); `ok` or `failed` (runs).
    pub outcome: String,
}

/// Labels naming a dead-letter reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The reason.
    pub reason: String,
}

/// Labels naming a sink: `clickhouse` or `dlq_topic`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// The sink.
    pub sink: String,
}

/// Labels naming a routing target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The target's name.
    pub target: String,
}

/// Labels of a per-table metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// The ClickHouse table.
    pub table: String,
}

impl SinkLabels {
    /// Labels for `sink`.
    pub fn of(sink: &str) -> Self {
        Self {
            sink: sink.to_string(),
        }
    }
}

impl salestalk_sinks::SinkObserver for Telemetry {
    fn write_failed(&self, service: &'static str) {
        self.write_failures
            .get_or_create(&SinkLabels::of(service))
            .inc();
    }

    fn rows_refused(&self, service: &'static str, rows: u64) {
        self.refused_rows
            .get_or_create(&SinkLabels::of(service))
            .inc_by(rows);
    }
}

impl PartitionLabels {
    /// The labels of `partition`.
    pub fn of(partition: &SourcePartition) -> Self {
        Self {
            topic: partition.topic().to_string(),
            partition: partition.number(),
        }
    }
}

impl SourceObserver for Telemetry {
    fn read_failed(&self) {
        self.consumer_errors.inc();
    }

    fn read_throttled(&self, partition: &SourcePartition) {
        self.kinesis_throttled
            .get_or_create(&PartitionLabels::of(partition))
            .inc();
    }

    fn millis_behind(&self, partition: &SourcePartition, millis: i64) {
        self.kinesis_millis_behind
            .get_or_create(&PartitionLabels::of(partition))
            .set(millis);
    }

    fn gauges(&self, partition: &SourcePartition) -> PartitionGauges {
        let labels = PartitionLabels::of(partition);
        PartitionGauges {
            throttled_reads: self.kinesis_throttled.get_or_create(&labels).get(),
            unread: self.partition_lag.get_or_create(&labels).get(),
            millis_behind: self.kinesis_millis_behind.get_or_create(&labels).get(),
        }
    }
}

impl CorrectionObserver for Telemetry {
    fn passed(&self, pass: &Pass) {
        let count = |outcome: &str, n: u64| {
            self.corrections
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_string(),
                })
                .inc_by(n);
        };
        count("corrected", pass.corrected.len() as u64);
        count("unchanged", pass.unchanged as u64);
        count("not_final", pass.waiting as u64);
        let rows: u64 = pass.corrected.iter().map(|c| c.rows_written).sum();
        self.correction_rows.inc_by(rows);
        self.corrections_waiting.set(pass.waiting as i64);
    }

    fn failed(&self) {
        self.corrections
            .get_or_create(&OutcomeLabels {
                outcome: "failed".to_string(),
            })
            .inc();
    }
}

/// The sinks the runtime writes to, as named in labels and `/health`.
pub const SINKS: [&str; 2] = [services::CLICKHOUSE, services::DLQ_TOPIC];

/// Every metric the runtime reports.
pub struct Telemetry {
    registry: Registry,
    /// Messages by outcome.
    pub messages: Family<OutcomeLabels, Counter>,
    /// Dead letters by reason.
    pub dead_letters: Family<ReasonLabels, Counter>,
    /// Messages per batch handed to the operators.
    pub batch_size: Histogram,
    /// Seconds a flush took to become durable (all inserts, including retries).
    pub flush_seconds: Histogram,
    /// Ids the tasks' dedup caps forgot early (since the tasks started).
    pub dedup_forgotten_early: Gauge,
    /// Each owned partition's part of the instance's dedup budget, in ids.
    pub dedup_cap_ids: Gauge,
    /// Events counted without a dedup check because the cap forgot their minute.
    pub dedup_unchecked: Gauge,
    /// 1 while a flush is being written (reading goes on meanwhile), else 0.
    pub flush_in_flight: Gauge,
    /// Failed write attempts per sink (each retried or acted on per the retry policy).
    pub write_failures: Family<SinkLabels, Counter>,
    /// Rows a sink refused for good, per sink (sent to the DLQ, or kept there).
    pub refused_rows: Family<SinkLabels, Counter>,
    /// 1 while the sink takes writes, 0 while it is down.
    pub sink_up: Family<SinkLabels, Gauge>,
    /// Seconds the current outage has lasted (0 when every sink is up).
    pub outage_seconds: Gauge<f64, AtomicU64>,
    /// Tasks replayed from their checkpoint because a sink refused one of their events.
    pub replays: Counter,
    /// Errors the Kafka consumer reported (an unreachable broker reports one per partition).
    pub consumer_errors: Counter,
    /// Dead letters neither redriven nor discarded, as last read from ClickHouse.
    pub dlq_depth: Gauge,
    /// Retention runs by outcome (`ok`, `failed`).
    pub retention_runs: Family<OutcomeLabels, Counter>,
    /// Expired partitions the retention job dropped, per table.
    pub retention_dropped_partitions: Family<TableLabels, Counter>,
    /// Rows in the partitions the retention job dropped, per table.
    pub retention_dropped_rows: Family<TableLabels, Counter>,
    /// Expired rows the retention job deleted from partitions that hold newer ones, per table.
    pub retention_deleted_rows: Family<TableLabels, Counter>,
    /// Messages in the partition not yet durable: high watermark minus checkpoint offset.
    pub partition_lag: Family<PartitionLabels, Gauge>,
    /// Seconds between now and the partition's event-time watermark.
    pub watermark_lag_seconds: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    /// Open window rows across tasks.
    pub open_windows: Gauge,
    /// Event ids remembered for dedup across tasks.
    pub remembered_ids: Gauge,
    /// How far each Kinesis shard's reader is behind the shard's newest record (ms).
    pub kinesis_millis_behind: Family<PartitionLabels, Gauge>,
    /// Kinesis reads refused for the shard's read limit (each backed off and retried).
    pub kinesis_throttled: Family<PartitionLabels, Counter>,
    /// Messages a downstream consumer group has not committed on its target's topic.
    pub consumer_group_lag_messages: Family<GroupLabels, Gauge>,
    /// Age of the oldest message a downstream consumer group has not committed (0: none).
    pub consumer_group_lag_seconds: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    /// Seconds from an event's time to the downstream group's commit covering it.
    pub consumer_group_commit_latency_seconds: Family<GroupLabels, Histogram, fn() -> Histogram>,
    /// Checks of past tenant-days by outcome (`corrected`, `unchanged`, `not_final`, `failed`).
    pub corrections: Family<OutcomeLabels, Counter>,
    /// Window rows the corrections wrote.
    pub correction_rows: Counter,
    /// Tenant-days that need a correction but are not final yet for every task, at the last check.
    pub corrections_waiting: Gauge,
    /// Dead letters of a routing target redriven to it once it answered again, per target.
    pub deliveries_healed: Family<TargetLabels, Counter>,
    /// Tasks started from their stored state, per partition (at assignment, and after a
    /// replay): a partition that stays with its owner through a rebalance is not restored.
    pub task_restores: Family<PartitionLabels, Counter>,
    /// Seconds from a partition's assignment (or replay) until its task started reading.
    pub restore_seconds: Histogram,
    /// Tasks restored because another instance had claimed them since (two owners at once).
    pub superseded_tasks: Counter,
    /// 1 while this instance reads the partition (its task started), 0 once revoked.
    pub partition_owned: Family<PartitionLabels, Gauge>,
    /// What `/health` and `/health/live` answer: started or not, and the driver loop's
    /// progress.
    pub probes: Arc<Probes>,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("salestalk");
        Self {
            messages: registered(
                &mut registry,
                "messages",
                "Messages by outcome",
                Family::<OutcomeLabels, Counter>::default(),
            ),
            dead_letters: registered(
                &mut registry,
                "dead_letters",
                "Messages sent to the dead-letter path, by reason",
                Family::<ReasonLabels, Counter>::default(),
            ),
            batch_size: registered(
                &mut registry,
                "batch_size",
                "Messages per batch",
                Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            ),
            flush_seconds: registered(
                &mut registry,
                "flush_seconds",
                "Time for a flush to become durable",
                Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            ),
            dedup_forgotten_early: registered(
                &mut registry,
                "dedup_forgotten_early_ids",
                "Event ids the dedup cap forgot before their horizon, since the tasks started",
                Gauge::default(),
            ),
            dedup_cap_ids: registered(
                &mut registry,
                "dedup_cap_ids",
                "Event ids each owned partition may remember: the instance's dedup budget shared among its partitions",
                Gauge::default(),
            ),
            dedup_unchecked: registered(
                &mut registry,
                "dedup_unchecked_events",
                "Events counted without a dedup check because the dedup cap forgot their minute",
                Gauge::default(),
            ),
            flush_in_flight: registered(
                &mut registry,
                "flush_in_flight",
                "1 while a flush is being written",
                Gauge::default(),
            ),
            write_failures: registered(
                &mut registry,
                "write_failures",
                "Failed write attempts per sink",
                Family::<SinkLabels, Counter>::default(),
            ),
            refused_rows: registered(
                &mut registry,
                "refused_rows",
                "Rows a sink refused for good",
                Family::<SinkLabels, Counter>::default(),
            ),
            sink_up: registered(
                &mut registry,
                "sink_up",
                "1 while the sink takes writes",
                Family::<SinkLabels, Gauge>::default(),
            ),
            outage_seconds: registered(
                &mut registry,
                "outage_seconds",
                "How long the current sink outage has lasted",
                Gauge::<f64, AtomicU64>::default(),
            ),
            replays: registered(
                &mut registry,
                "replays",
                "Tasks replayed from their checkpoint after a refused event",
                Counter::default(),
            ),
            consumer_errors: registered(
                &mut registry,
                "consumer_errors",
                "Errors the Kafka consumer reported",
                Counter::default(),
            ),
            dlq_depth: registered(
                &mut registry,
                "dlq_depth",
                "Dead letters neither redriven nor discarded",
                Gauge::default(),
            ),
            retention_runs: registered(
                &mut registry,
                "retention_runs",
                "Retention runs by outcome",
                Family::<OutcomeLabels, Counter>::default(),
            ),
            retention_dropped_partitions: registered(
                &mut registry,
                "retention_dropped_partitions",
                "Expired partitions dropped per table",
                Family::<TableLabels, Counter>::default(),
            ),
            retention_dropped_rows: registered(
                &mut registry,
                "retention_dropped_rows",
                "Rows of the expired partitions dropped per table",
                Family::<TableLabels, Counter>::default(),
            ),
            retention_deleted_rows: registered(
                &mut registry,
                "retention_deleted_rows",
                "Expired rows deleted from partitions that hold newer ones, per table",
                Family::<TableLabels, Counter>::default(),
            ),
            partition_lag: registered(
                &mut registry,
                "partition_lag",
                "Messages not yet durable per partition",
                Family::<PartitionLabels, Gauge>::default(),
            ),
            watermark_lag_seconds: registered(
                &mut registry,
                "watermark_lag_seconds",
                "Now minus the partition's event-time watermark",
                Family::<PartitionLabels, Gauge<f64, AtomicU64>>::default(),
            ),
            open_windows: registered(
                &mut registry,
                "open_windows",
                "Open window rows in memory",
                Gauge::default(),
            ),
            remembered_ids: registered(
                &mut registry,
                "remembered_ids",
                "Event ids remembered for dedup",
                Gauge::default(),
            ),
            kinesis_millis_behind: registered(
                &mut registry,
                "kinesis_millis_behind_latest",
                "How far each Kinesis shard's reader is behind its newest record, ms",
                Family::<PartitionLabels, Gauge>::default(),
            ),
            kinesis_throttled: registered(
                &mut registry,
                "kinesis_throttled_reads",
                "Kinesis reads throttled (ProvisionedThroughputExceeded), each backed off",
                Family::<PartitionLabels, Counter>::default(),
            ),
            consumer_group_lag_messages: registered(
                &mut registry,
                "consumer_group_lag_messages",
                "Messages a downstream consumer group has not committed on its target's topic",
                Family::<GroupLabels, Gauge>::default(),
            ),
            consumer_group_lag_seconds: registered(
                &mut registry,
                "consumer_group_lag_seconds",
                "Age of the oldest message a downstream consumer group has not committed",
                Family::<GroupLabels, Gauge<f64, AtomicU64>>::default(),
            ),
            consumer_group_commit_latency_seconds: registered(
                &mut registry,
                "consumer_group_commit_latency_seconds",
                "Seconds from an event's time to the downstream consumer group's commit covering it",
                Family::new_with_constructor(commit_latency_buckets as fn() -> Histogram),
            ),
            corrections: registered(
                &mut registry,
                "corrections",
                "Checks of past tenant-days by outcome",
                Family::<OutcomeLabels, Counter>::default(),
            ),
            correction_rows: registered(
                &mut registry,
                "correction_rows",
                "Window rows written by corrections of past days",
                Counter::default(),
            ),
            corrections_waiting: registered(
                &mut registry,
                "corrections_waiting",
                "Tenant-days needing a correction that are not final for every task yet",
                Gauge::default(),
            ),
            deliveries_healed: registered(
                &mut registry,
                "deliveries_healed",
                "Dead letters of a routing target redriven to it once it answered again",
                Family::<TargetLabels, Counter>::default(),
            ),
            task_restores: registered(
                &mut registry,
                "task_restores",
                "Tasks started from their stored state, per partition",
                Family::<PartitionLabels, Counter>::default(),
            ),
            restore_seconds: registered(
                &mut registry,
                "restore_seconds",
                "Seconds from a partition's assignment until its task started reading",
                Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            ),
            superseded_tasks: registered(
                &mut registry,
                "superseded_tasks",
                "Tasks restored because another instance had claimed them since",
                Counter::default(),
            ),
            partition_owned: registered(
                &mut registry,
                "partition_owned",
                "1 while this instance reads the partition, 0 once it was revoked",
                Family::<PartitionLabels, Gauge>::default(),
            ),
            probes: Probes::starting(),
            registry,
        }
    }
}

/// Registers `metric` under `name` and hands it back, so each metric is declared once.
/// 0.25 s to about 34 min, doubling: the contract's 5 s target and 30 s threshold fall
/// between buckets.
fn commit_latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.25, 2.0, 14))
}

fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Telemetry {
    /// Counts `n` messages with `outcome`.
    pub fn count(&self, outcome: &str, n: u64) {
        self.messages
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc_by(n);
    }

    /// Sets whether `sink` takes writes.
    pub fn set_sink_up(&self, sink: &str, up: bool) {
        self.sink_up
            .get_or_create(&SinkLabels::of(sink))
            .set(i64::from(up));
    }

    /// `/health`: 200 and `ok` once started and while every sink is up, else 503 naming what
    /// it waits for or the sinks down.
    pub fn health(&self) -> (StatusCode, String) {
        if self.probes.waiting_for().is_some() {
            return self.probes.readiness();
        }
        let down: Vec<&str> = SINKS
            .into_iter()
            .filter(|sink| {
                self.sink_up
                    .get(&SinkLabels::of(sink))
                    .is_some_and(|gauge| gauge.get() == 0)
            })
            .collect();
        if down.is_empty() {
            (StatusCode::OK, "{\"status\":\"ok\"}\n".to_string())
        } else {
            let body = serde_json::json!({
                "status": "degraded",
                "down": down,
                "outage_seconds": self.outage_seconds.get(),
            });
            (StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n"))
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics`, `GET /health` (ready: started and every sink up) and
/// `GET /health/live` (the driver loop makes progress) on `listen` until the process ends.
pub async fn serve(listen: SocketAddr, telemetry: Arc<Telemetry>) -> std::io::Result<SocketAddr> {
    let router = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(t): State<Arc<Telemetry>>| async move {
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    t.render(),
                )
            }),
        )
        .route(
            "/health",
            axum::routing::get(|State(t): State<Arc<Telemetry>>| async move {
                let (status, body) = t.health();
                respond(status, "application/json", body)
            }),
        )
        // Liveness apart from readiness: a ClickHouse outage makes /health 503 (do not send
        // traffic, reading is paused) but restarting the process would not help; a driver
        // loop that stopped making progress would be.
        .route(
            "/health/live",
            axum::routing::get(|State(t): State<Arc<Telemetry>>| async move {
                let (status, body) = t.probes.liveness();
                respond(status, "application/json", body)
            }),
        )
        .fallback(|| async {
            respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "try /metrics, /health or /health/live\n",
            )
        })
        .with_state(telemetry);
    let (bound, _serving) =
        salestalk_http::server::serve(listen, router, std::future::pending()).await?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels_and_the_prefix() {
        let telemetry = Telemetry::default();
        telemetry.count("read", 3);
        telemetry
            .partition_lag
            .get_or_create(&PartitionLabels {
                topic: "t".into(),
                partition: 2,
            })
            .set(7);
        let text = telemetry.render();
        assert!(
            text.contains("salestalk_messages_total{outcome=\"read\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("salestalk_partition_lag{topic=\"t\",partition=\"2\"} 7"),
            "{text}"
        );
    }

    #[test]
    fn health_names_the_sinks_that_are_down() {
        let telemetry = Telemetry::default();
        assert_eq!(
            telemetry.health().0,
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready while starting"
        );
        telemetry.probes.ready();
        assert_eq!(telemetry.health().0, StatusCode::OK, "unknown is not down");
        telemetry.set_sink_up("clickhouse", true);
        telemetry.set_sink_up("dlq_topic", false);
        let (status, body) = telemetry.health();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"down\":[\"dlq_topic\"]"), "{body}");
        telemetry.set_sink_up("dlq_topic", true);
        assert_eq!(telemetry.health().0, StatusCode::OK);
    }
}
