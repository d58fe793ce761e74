//! The dead-letter queue table (`dead_letters`): every dead letter with its raw bytes,
//! source position, reason and attempts, for `salestalk dlq` and the DLQ depth. A row it
//! refuses is lost unless an earlier sink (the dead-letter topic) already keeps it: then the
//! refusal is logged, otherwise the run stops without committing.

use salestalk_store::tables::dead_letters::{self, DeadLetterRow};

use super::insert::{insert_isolating_by_shard, shard_runs};
use crate::sink::{FlushBatch, Sink, SinkError, SinkFuture, SinkKind};

/// The dead-letter table sink.
pub struct DeadLetterTable {
    endpoint: salestalk_store::Endpoint,
}

impl DeadLetterTable {
    /// The table in `endpoint`'s database.
    pub fn new(endpoint: salestalk_store::Endpoint) -> Self {
        Self { endpoint }
    }
}

impl Sink for DeadLetterTable {
    fn kind(&self) -> SinkKind {
        SinkKind::DeadLetterTable
    }

    fn write<'a>(&'a self, batch: &'a mut FlushBatch<'_>) -> SinkFuture<'a> {
        Box::pin(async move {
            // Each letter goes to the home shard of the task it came with (ADR 0022): the
            // letters are put in shard order first.
            let home = |flush: usize| {
                let flush = &batch.flushes[flush];
                self.endpoint.home_shard(&flush.topic, flush.partition)
            };
            let mut letters = batch.dead_letters();
            // A stable sort: each shard's letters keep their order.
            letters.sort_by_cached_key(|sourced| home(sourced.flush));
            let shards: Vec<usize> = letters.iter().map(|sourced| home(sourced.flush)).collect();
            let durable_at_ms = batch.durable_at_ms;
            let records: Vec<DeadLetterRow<'_>> = letters
                .iter()
                .map(|sourced| DeadLetterRow::new(&sourced.address, sourced.letter, durable_at_ms))
                .collect();
            let isolated = insert_isolating_by_shard::<DeadLetterRow<'_>>(
                &self.endpoint,
                dead_letters::TABLE,
                &records,
                &shard_runs(&shards),
                self,
                batch,
            )
            .await;
            // The letters borrow the batch: note the outcomes once they are gone.
            let tenants: Vec<String> = letters
                .iter()
                .map(|sourced| sourced.letter.tenant_id.clone())
                .collect();
            let refused = match isolated.refused {
                Ok(refused) => refused,
                Err(error) => {
                    drop(records);
                    drop(letters);
                    batch
                        .outcomes
                        .attempts_failed(self.consumer(), isolated.failed_attempts);
                    return Err(error);
                }
            };
            for row in &refused {
                let letter = &letters[row.index];
                let Some(keeper) = batch.letters_kept() else {
                    return Err(SinkError::Fatal {
                        sink: self.name(),
                        message: format!(
                            "the dead_letters table refused the dead letter at {} and no \
                             earlier sink keeps it: {}",
                            letter.address, row.error
                        ),
                    });
                };
                tracing::error!(
                    address = %letter.address,
                    error = %row.error,
                    keeper,
                    "the dead_letters table refused a dead letter; an earlier sink keeps it"
                );
            }
            drop(records);
            drop(letters);
            let outcomes = &mut batch.outcomes;
            outcomes.attempts_failed(self.consumer(), isolated.failed_attempts);
            for tenant in &tenants {
                outcomes.attempted(self.consumer(), tenant);
            }
            for row in &refused {
                outcomes.failed(self.consumer(), &tenants[row.index]);
            }
            Ok(())
        })
    }
}
