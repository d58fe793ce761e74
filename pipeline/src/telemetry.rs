//! The pipeline's own health, as Prometheus metrics on `GET /metrics`.
//!
//! The runtime updates these as it reads, processes and flushes; a small HTTP server renders
//! them on request. SREs alert on them (`deploy/prometheus/`): lag, progress, dead-letter
//! inflow and whether ClickHouse accepts flushes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Labels naming a source partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// Labels naming a stage outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `read`, `accepted`, `duplicate` or `dead_lettered`.
    pub outcome: String,
}

/// Labels naming a dead-letter reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The reason.
    pub reason: String,
}

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
    /// Flush attempts that failed (and were retried).
    pub flush_failures: Counter,
    /// 1 while the last flush attempt succeeded, 0 while ClickHouse is refusing or unreachable.
    pub clickhouse_up: Gauge,
    /// Messages in the partition not yet durable: high watermark minus checkpoint offset.
    pub partition_lag: Family<PartitionLabels, Gauge>,
    /// Seconds between now and the partition's event-time watermark.
    pub watermark_lag_seconds: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    /// Open window rows across tasks.
    pub open_windows: Gauge,
    /// Event ids remembered for dedup across tasks.
    pub remembered_ids: Gauge,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("salestalk");
        let messages = Family::<OutcomeLabels, Counter>::default();
        registry.register("messages", "Messages by outcome", messages.clone());
        let dead_letters = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "dead_letters",
            "Messages sent to the dead-letter path, by reason",
            dead_letters.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register("batch_size", "Messages per batch", batch_size.clone());
        let flush_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "flush_seconds",
            "Time for a flush to become durable",
            flush_seconds.clone(),
        );
        let flush_failures = Counter::default();
        registry.register(
            "flush_failures",
            "Failed flush attempts (retried)",
            flush_failures.clone(),
        );
        let clickhouse_up = Gauge::default();
        registry.register(
            "clickhouse_up",
            "1 if the last flush attempt succeeded",
            clickhouse_up.clone(),
        );
        let partition_lag = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "partition_lag",
            "Messages not yet durable per partition",
            partition_lag.clone(),
        );
        let watermark_lag_seconds = Family::<PartitionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "watermark_lag_seconds",
            "Now minus the partition's event-time watermark",
            watermark_lag_seconds.clone(),
        );
        let open_windows = Gauge::default();
        registry.register(
            "open_windows",
            "Open window rows in memory",
            open_windows.clone(),
        );
        let remembered_ids = Gauge::default();
        registry.register(
            "remembered_ids",
            "Event ids remembered for dedup",
            remembered_ids.clone(),
        );
        Self {
            registry,
            messages,
            dead_letters,
            batch_size,
            flush_seconds,
            flush_failures,
            clickhouse_up,
            partition_lag,
            watermark_lag_seconds,
            open_windows,
            remembered_ids,
        }
    }
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `listen` until the process ends.
pub async fn serve(listen: SocketAddr, telemetry: Arc<Telemetry>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let telemetry = Arc::clone(&telemetry);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let telemetry = Arc::clone(&telemetry);
                    async move {
                        if request.uri().path() == "/metrics" {
                            Response::builder()
                                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                                .body(Full::new(Bytes::from(telemetry.render())))
                        } else {
                            Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from("try /metrics\n")))
                        }
                    }
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "metrics connection");
                }
            });
        }
    });
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
}
