//! Inserting rows: a range of them as one insert, and a batch with the rows ClickHouse refuses
//! isolated (ADR 0006), which the archive and the dead-letter table share.

use std::ops::Range;

use clickhouse::{Client, Row, RowWrite};
use salestalk_store::{ClickHouseError, Endpoint};

use super::{SERVICE, sink_error};
use crate::retry::{Refused, write_isolating};
use crate::sink::{FlushBatch, SinkError};

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

/// Inserts `records` into `table` for the sink `name`, isolating the rows ClickHouse refuses:
/// returns them by index, with every failed attempt and every refused row told to the batch's
/// observer. Fails only when ClickHouse is down, or with a request it refuses as a whole.
pub(super) async fn insert_isolating<T: Row + RowWrite>(
    endpoint: &Endpoint,
    table: &str,
    records: &[T::Value<'_>],
    name: &'static str,
    batch: &FlushBatch<'_>,
) -> Result<Vec<Refused>, SinkError> {
    let observer = batch.observer;
    let client = endpoint.client();
    let refused = write_isolating(
        &batch.policy,
        records.len(),
        |range| insert_range::<T>(&client, &endpoint.url, table, records, range),
        || endpoint.ping(),
        |_| observer.write_failed(SERVICE),
    )
    .await
    .map_err(|e| sink_error(name, &format!("writing {table}"), e))?;
    if !refused.is_empty() {
        observer.rows_refused(SERVICE, refused.len() as u64);
    }
    Ok(refused)
}
