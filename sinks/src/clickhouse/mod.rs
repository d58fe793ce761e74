//! The ClickHouse sinks: the raw archive, the dead-letter table, and the window state (the
//! commit point). Each is one [`Sink`](crate::sink::Sink); their order is configuration.
//! Rows and names are encoded by `salestalk_store::tables::window_state`, which every reader shares.

mod archive;
mod dead_letter_table;
pub mod ingest_ledger;
mod insert;
mod window_state;

pub use archive::Archive;
pub use dead_letter_table::DeadLetterTable;
pub use window_state::{MAX_STATE_ROWS, WindowState, state_records, write_corrections};

use salestalk_operators::flush::Flush;
use salestalk_store::tables::delivery_latency::DeliveryLatencyRow;
use salestalk_store::tables::sink_outcomes::SinkOutcomeRow;
use salestalk_store::{ClickHouseError, Endpoint};

use crate::outcomes::Outcomes;
use crate::retry::{RetryPolicy, Transient};
use crate::sink::{FlushBatch, FlushPlan, Sink, SinkError, Unobserved};

/// What health and telemetry call ClickHouse.
pub use crate::sink::services::CLICKHOUSE as SERVICE;

impl Transient for ClickHouseError {
    fn is_retryable(&self) -> bool {
        ClickHouseError::is_retryable(self)
    }
}

/// A failed ClickHouse write as a sink reports it: an outage holds the flush, anything else
/// stops the run.
fn sink_error(sink: &'static str, what: &str, error: ClickHouseError) -> SinkError {
    if error.is_retryable() {
        SinkError::Down {
            service: SERVICE,
            message: error.to_string(),
        }
    } else {
        SinkError::Fatal {
            sink,
            message: format!("{what}: {error}"),
        }
    }
}

/// Makes `flushes` durable in ClickHouse alone (archive, dead-letter table, window state, and
/// their delivery outcomes), failing if any row is refused: for tools and tests, where a
/// refusal is a bug. On error nothing is lost: call again.
pub async fn write_flushes(
    endpoint: &Endpoint,
    flushes: &[Flush],
    durable_at_ms: u64,
) -> Result<(), SinkError> {
    let sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(Archive::new(endpoint.clone())),
        Box::new(DeadLetterTable::new(endpoint.clone())),
        Box::new(WindowState::new(endpoint.clone())),
    ];
    let plan = FlushPlan::new(sinks);
    let mut batch = FlushBatch::new(flushes, durable_at_ms, RetryPolicy::default(), &Unobserved);
    plan.make_durable(&mut batch).await?;
    if batch.to_replay().is_empty() {
        record_outcomes(endpoint, durable_at_ms, &batch.outcomes)
            .await
            .map_err(|e| sink_error("window_state", "recording delivery outcomes", e))
    } else {
        Err(SinkError::Fatal {
            sink: "archive",
            message: "ClickHouse refused events".into(),
        })
    }
}

/// Stores a landed flush's `outcomes` in `sink_outcomes` (and the targets' latency in
/// `delivery_latency`) at the minute of `durable_at_ms`, one insert each, not retried: these
/// are operational counts, and a lost insert undercounts one flush rather than holding the
/// pipeline.
pub async fn record_outcomes(
    endpoint: &Endpoint,
    durable_at_ms: u64,
    outcomes: &Outcomes,
) -> Result<(), ClickHouseError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let minute = salestalk_operators::time::minute_datetime(durable_at_ms);
    let mut records = Vec::new();
    for (consumer, tenants) in &outcomes.counts {
        for (tenant, counts) in tenants {
            records.push(SinkOutcomeRow {
                minute,
                consumer,
                tenant_id: tenant,
                attempted: counts.attempted,
                failed: counts.failed,
                failed_attempts: 0,
            });
        }
    }
    // Failed attempts belong to a write, not to a tenant.
    for (consumer, n) in &outcomes.failed_attempts {
        records.push(SinkOutcomeRow {
            minute,
            consumer,
            tenant_id: "",
            attempted: 0,
            failed: 0,
            failed_attempts: *n,
        });
    }
    endpoint.insert_sink_outcomes(&records).await?;
    let latency: Vec<DeliveryLatencyRow<'_>> = outcomes
        .latency
        .iter()
        .flat_map(|((consumer, event_type), tenants)| {
            tenants.iter().map(move |(tenant, histogram)| {
                let (latency_buckets, latency_counts) = histogram.to_arrays();
                DeliveryLatencyRow {
                    minute,
                    consumer,
                    tenant_id: tenant,
                    event_type,
                    delivered: histogram.count(),
                    latency_buckets,
                    latency_counts,
                }
            })
        })
        .collect();
    if latency.is_empty() {
        return Ok(());
    }
    endpoint.insert_delivery_latency(&latency).await
}
