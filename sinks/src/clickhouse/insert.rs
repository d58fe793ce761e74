//! Inserting rows: a range of them as one insert, and a batch with the rows ClickHouse refuses
//! isolated (ADR 0006), which the archive and the dead-letter table share.

use std::ops::Range;

use clickhouse::{Client, Row, RowWrite};
use salestalk_store::{ClickHouseError, Endpoint};

use super::{SERVICE, sink_error};
use crate::retry::{Refused, write_isolating};
use crate::sink::{FlushBatch, Sink, SinkError};

/// Inserts `records[range]` into `table` as one insert.
pub(super) async fn insert_range<T: Row + RowWrite>(
    client: &Client,
    url: &str,
    table: &str,
    records: &[T::Value<'_>],
    range: Range<usize>,
) -> Result<(), ClickHouseError> {
    let classify = |e| ClickHouseError::classify(url, e);
    let mut insert = client.insert::<T>(table).await.map_err(classify)?;
    for record in &records[range] {
        insert.write(record).await.map_err(classify)?;
    }
    insert.end().await.map_err(classify)
}

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
    let client = endpoint.client();
    let mut failed_attempts = 0;
    let written = write_isolating(
        &batch.policy,
        records.len(),
        |range| insert_range::<T>(&client, &endpoint.url, table, records, range),
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
