//! Inserting rows: a range of them as one insert, and a batch with the rows ClickHouse refuses
//! isolated (ADR 0006), which the archive and the dead-letter table share.

use std::ops::Range;

use clickhouse::{Client, Row, RowWrite};
use salestalk_store::{ClickHouseError, Endpoint};

use crate::retry::{Refused, RetryPolicy, write_isolating};

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

/// Inserts `records` into `table`, isolating the rows it refuses (returned, by index).
/// Fails only when ClickHouse is down.
pub(super) async fn insert_isolating<T: Row + RowWrite>(
    endpoint: &Endpoint,
    table: &str,
    records: &[T::Value<'_>],
    policy: &RetryPolicy,
    on_failure: impl FnMut(&ClickHouseError),
) -> Result<Vec<Refused>, ClickHouseError> {
    let client = endpoint.client();
    write_isolating(
        policy,
        records.len(),
        |range| insert_range::<T>(&client, &endpoint.url, table, records, range),
        || endpoint.ping(),
        on_failure,
    )
    .await
}
