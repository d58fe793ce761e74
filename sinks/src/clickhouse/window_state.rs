//! The commit point (`window_state`): every changed window row of the flushes to commit and
//! their checkpoints, in ONE insert. Retried, never split, since splitting would break its
//! atomicity (ADR 0004); it is the last sink of every flush order.

use salestalk_operators::flush::{Flush, StateRow, consumers};
use salestalk_store::Endpoint;
use salestalk_store::codec::{StateRecord, task_name};

use super::insert::insert_range;
use super::{SERVICE, sink_error};
use crate::sink::{FlushBatch, Sink, SinkFuture};

/// Rows per flush kept far below `max_insert_block_size` (1,048,576), so the state insert
/// forms a single block and therefore a single, atomic part.
pub const MAX_STATE_ROWS: usize = 500_000;

/// The window-state records of one flush, its checkpoint (durable as of `durable_at_ms`) last.
pub fn state_records(flush: &Flush, durable_at_ms: u64) -> Vec<StateRecord> {
    let task = task_name(&flush.topic, flush.partition);
    let epoch = flush.checkpoint.epoch;
    flush
        .rows
        .iter()
        .map(|row| StateRecord::of_row(&task, epoch, row))
        .chain([StateRecord::of_checkpoint(
            &task,
            &flush.checkpoint,
            durable_at_ms,
        )])
        .collect()
}

/// Writes a correction of past windows (ADR 0016): `rows`, each with the task it belongs to,
/// at `epoch` (a correction epoch, above every live one, so the views take these values). One
/// insert when they fit in [`MAX_STATE_ROWS`] (a tenant's day nearly always does), so the day
/// changes at once; more are written in several inserts, and a correction cut short is made
/// again by the next check (its record is written only after its rows).
pub async fn write_corrections(
    endpoint: &Endpoint,
    rows: &[(String, StateRow)],
    epoch: u64,
) -> Result<usize, salestalk_store::ClickHouseError> {
    let records: Vec<StateRecord> = rows
        .iter()
        .map(|(task, row)| StateRecord::of_row(task, epoch, row))
        .collect();
    let client = endpoint.client();
    let mut start = 0;
    while start < records.len() {
        let end = (start + MAX_STATE_ROWS).min(records.len());
        insert_range::<StateRecord>(&client, &endpoint.url, "window_state", &records, start..end)
            .await?;
        start = end;
    }
    Ok(records.len())
}

/// The window-state sink.
pub struct WindowState {
    endpoint: Endpoint,
}

impl WindowState {
    /// The table in `endpoint`'s database.
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

impl Sink for WindowState {
    fn name(&self) -> &'static str {
        "window_state"
    }

    fn service(&self) -> &'static str {
        SERVICE
    }

    fn consumer(&self) -> &'static str {
        consumers::METRICS
    }

    fn write<'a>(&'a self, batch: &'a mut FlushBatch<'_>) -> SinkFuture<'a> {
        Box::pin(async move {
            let commit = batch.to_commit();
            if commit.is_empty() {
                return Ok(());
            }
            let durable_at_ms = batch.durable_at_ms;
            let records: Vec<StateRecord> = commit
                .iter()
                .flat_map(|f| state_records(f, durable_at_ms))
                .collect();
            // The metrics of every event of a committed flush become durable here.
            let tenants: Vec<&str> = commit
                .iter()
                .flat_map(|f| f.archive.iter().map(|e| e.tenant_id.as_str()))
                .collect();
            let client = self.endpoint.client();
            let observer = batch.observer;
            let mut failed_attempts = 0;
            let written = batch
                .policy
                .run(
                    || {
                        insert_range::<StateRecord>(
                            &client,
                            &self.endpoint.url,
                            "window_state",
                            &records,
                            0..records.len(),
                        )
                    },
                    |_| {
                        failed_attempts += 1;
                        observer.write_failed(SERVICE);
                    },
                )
                .await;
            let outcomes = &mut batch.outcomes;
            outcomes.attempts_failed(self.consumer(), failed_attempts);
            written.map_err(|e| sink_error(self.name(), "writing window state", e))?;
            for tenant in tenants {
                outcomes.attempted(self.consumer(), tenant);
            }
            Ok(())
        })
    }
}
