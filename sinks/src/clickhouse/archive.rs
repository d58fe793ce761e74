//! The raw archive (`events_raw`): every valid event with its raw bytes, keyed by `eventId`
//! so a replay's second copy is merged away. Events ClickHouse refuses are isolated and
//! handed back to the batch as dead letters.

use salestalk_store::tables::events_raw::{self, ArchiveRow};

use super::insert::{insert_isolating_by_shard, shard_order, shard_runs};
use crate::sink::{FlushBatch, Sink, SinkFuture, SinkKind};

/// The raw archive sink.
pub struct Archive {
    endpoint: salestalk_store::Endpoint,
}

impl Archive {
    /// The archive in `endpoint`'s database.
    pub fn new(endpoint: salestalk_store::Endpoint) -> Self {
        Self { endpoint }
    }
}

impl Sink for Archive {
    fn kind(&self) -> SinkKind {
        SinkKind::Archive
    }

    fn write<'a>(&'a self, batch: &'a mut FlushBatch<'_>) -> SinkFuture<'a> {
        Box::pin(async move {
            let flushes = batch.flushes;
            let durable_at_ms = batch.durable_at_ms;
            // Sized up front: large, and new at every flush (see `commit_inserts`).
            let events = flushes.iter().map(|f| f.archive.len()).sum();
            let mut origin = Vec::with_capacity(events);
            let mut records = Vec::with_capacity(events);
            // Each task's events go to its home shard (ADR 0022): written shard by shard.
            let homes: Vec<usize> = flushes
                .iter()
                .map(|f| self.endpoint.home_shard(&f.topic, f.partition))
                .collect();
            let mut shards = Vec::with_capacity(events);
            for f in shard_order(&homes) {
                let flush = &flushes[f];
                for (e, event) in flush.archive.iter().enumerate() {
                    origin.push((f, e));
                    records.push(ArchiveRow::new(flush, event, durable_at_ms));
                    shards.push(homes[f]);
                }
            }
            let isolated = insert_isolating_by_shard::<ArchiveRow<'_>>(
                &self.endpoint,
                events_raw::TABLE,
                &records,
                &shard_runs(&shards),
                self,
                batch,
            )
            .await;
            batch
                .outcomes
                .attempts_failed(self.consumer(), isolated.failed_attempts);
            let refused = isolated.refused?;
            for record in &records {
                batch.outcomes.attempted(self.consumer(), record.tenant_id);
            }
            for refused in refused {
                let (flush, event) = origin[refused.index];
                batch
                    .outcomes
                    .failed(self.consumer(), records[refused.index].tenant_id);
                batch.refuse_event(flush, event, &refused);
            }
            Ok(())
        })
    }
}
