//! Inserting a batch with the rows ClickHouse refuses isolated (ADR 0006), which the archive
//! and the dead-letter table share; each insert is the store's one insert.

use std::ops::Range;

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

/// The order to write items in so that each home shard's are together (ADR 0022): `homes[i]`
/// is item `i`'s shard; returns the items' indexes in shard order (stable within a shard).
pub(super) fn shard_order(homes: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..homes.len()).collect();
    order.sort_by_key(|&i| homes[i]);
    order
}

/// The runs of equal shards in `shards` (each record's home shard, records in shard order):
/// each shard with the range of its records.
pub(super) fn shard_runs(shards: &[usize]) -> Vec<(usize, Range<usize>)> {
    let mut runs: Vec<(usize, Range<usize>)> = Vec::new();
    for (i, &shard) in shards.iter().enumerate() {
        match runs.last_mut() {
            Some((last, range)) if *last == shard => range.end = i + 1,
            _ => runs.push((shard, i..i + 1)),
        }
    }
    runs
}

/// [`insert_isolating`] on a cluster of several shards: `records[range]` of each of `runs` go
/// to that shard's writer, one insert (or, isolating refusals, several) each. The refused
/// rows are given by their index in `records`. A shard that is down stops the write; the
/// shards written before it are written again with the next attempt, which their tables
/// merge away (both are keyed by the event or the letter's address).
pub(super) async fn insert_isolating_by_shard<T: Row + RowWrite>(
    endpoint: &Endpoint,
    table: &str,
    records: &[T::Value<'_>],
    runs: &[(usize, Range<usize>)],
    sink: &dyn Sink,
    batch: &FlushBatch<'_>,
) -> Isolated {
    if !endpoint.is_sharded() {
        return insert_isolating::<T>(endpoint, table, records, sink, batch).await;
    }
    let mut all = Isolated {
        refused: Ok(Vec::new()),
        failed_attempts: 0,
    };
    for (shard, range) in runs {
        let writer = endpoint.shard_writer(*shard);
        let part =
            insert_isolating::<T>(&writer, table, &records[range.clone()], sink, batch).await;
        all.failed_attempts += part.failed_attempts;
        match part.refused {
            Ok(refused) => {
                if let Ok(all_refused) = &mut all.refused {
                    all_refused.extend(refused.into_iter().map(|mut row| {
                        row.index += range.start;
                        row
                    }));
                }
            }
            Err(error) => {
                all.refused = Err(error);
                break;
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_grouped_by_shard_in_their_order() {
        let homes = [1, 0, 1, 2, 0];
        let order = shard_order(&homes);
        assert_eq!(order, [1, 4, 0, 2, 3]);
        let shards: Vec<usize> = order.iter().map(|&i| homes[i]).collect();
        assert_eq!(shard_runs(&shards), [(0, 0..2), (1, 2..4), (2, 4..5)]);
        assert!(shard_runs(&[]).is_empty());
    }
}
