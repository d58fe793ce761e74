//! Inserting a batch with the rows ClickHouse refuses isolated (ADR 0006), which the archive
//! and the dead-letter table share; each insert is the store's one insert.

use clickhouse::{Row, RowWrite};
use salestalk_store::Endpoint;

use super::{SERVICE, sink_error};
use crate::retry::{Refused, write_isolating};
use crate::sink::{FlushBatch, Sink, SinkError};

/// What [`insert_isolating`] did: the rows refused (or why it could not go on), and how many
/// write attempts failed on the way, which the caller records as the sink's outcomes once it
/// no longer borrows the batch.
pub(super) struct Isolated {
    /// The refused rows by index, or the error that stopped the insert.
    pub refused: Result<Vec<Refused>, SinkError>,
    /// Failed write attempts.
    pub failed_attempts: u64,
}

/// Inserts `records` into `table` for the sink `sink`, isolating the rows ClickHouse refuses,
/// with every failed attempt and every refused row told to the batch's observer. Fails only
/// when ClickHouse is down, or with a request it refuses as a whole.
pub(super) async fn insert_isolating<T: Row + RowWrite>(
    endpoint: &Endpoint,
    table: &str,
    records: &[T::Value<'_>],
    sink: &dyn Sink,
    batch: &FlushBatch<'_>,
) -> Isolated {
    let observer = batch.observer;
    let mut failed_attempts = 0;
    let written = write_isolating(
        &batch.policy,
        records.len(),
        |range| endpoint.insert_rows::<T>(table, &records[range]),
        || endpoint.ping(),
        |_| {
            failed_attempts += 1;
            observer.write_failed(SERVICE);
        },
    )
    .await;
    let refused = written.map_err(|e| sink_error(sink.name(), &format!("writing {table}"), e));
    if let Ok(refused) = &refused
        && !refused.is_empty()
    {
        observer.rows_refused(SERVICE, refused.len() as u64);
    }
    Isolated {
        refused,
        failed_attempts,
    }
}
