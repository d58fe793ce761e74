//! Inserting rows: a range of them as one insert, and a batch with the rows ClickHouse refuses
//! isolated (ADR 0006), which the archive and the dead-letter table share.

use std::ops::Range;

use clickhouse::{Client, Row, RowWrite};
use salestalk_store::{ClickHouseError, Endpoint};

use super::{SERVICE, sink_error};
use crate::retry::{Refused, RetryPolicy, write_isolating};
use crate::sink::{SinkError, SinkObserver};

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

/// Inserts `records` into `table` for `sink`, isolating the rows ClickHouse refuses: returns
/// them by index, every attempt that failed and every row refused told to `observer`. Fails
/// only when ClickHouse is down, or with a request it refuses as a whole.
pub(super) async fn insert_isolating<T: Row + RowWrite>(
    endpoint: &Endpoint,
    table: &str,
    records: &[T::Value<'_>],
    sink: (&'static str, &RetryPolicy, &dyn SinkObserver),
) -> Result<Vec<Refused>, SinkError> {
    let (name, policy, observer) = sink;
    let client = endpoint.client();
    let refused = write_isolating(
        policy,
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
