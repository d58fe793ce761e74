//! The commit point (`window_state`): every changed window row of the flushes to commit and
//! their checkpoints, in ONE insert. Retried, never split, since splitting would break its
//! atomicity (ADR 0004); it is the last sink of every flush order.

use salestalk_operators::flush::{Flush, StateRow};
use salestalk_store::Endpoint;
use salestalk_store::tables::window_state::{StateRecordRef, task_name};

use super::{SERVICE, sink_error};
use crate::sink::{FlushBatch, Sink, SinkFuture, SinkKind};

/// Rows per insert kept far below `max_insert_block_size` (1,048,576), so a state insert
/// forms a single block and therefore a single, atomic part.
pub const MAX_STATE_ROWS: usize = salestalk_operators::task::MAX_FLUSH_ROWS;

/// The commit's inserts: whole flushes (each task's rows with the checkpoint they complete)
/// grouped into inserts of at most `max_rows` records. A flush larger than that on its own (a
/// message with thousands of new dimension values can make one) is split into inserts of at
/// most `max_rows`, its checkpoint in the last: a crash between them leaves rows after the
/// checkpoint, which no restore reads (the lineage ends at the checkpoint) and no view counts
/// once the next owner resumed (the fence, ADR 0014). Each insert is one block: all or nothing.
pub fn commit_inserts<T>(flushes: Vec<Vec<T>>, max_rows: usize) -> Vec<Vec<T>> {
    let max_rows = max_rows.max(1);
    // Each insert is sized for what is left (up to the cap) rather than grown: these vectors
    // are large and new at every flush (docs/performance.md, issue 31's fourth part).
    let mut left: usize = flushes.iter().map(Vec::len).sum();
    let mut inserts: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::with_capacity(left.min(max_rows));
    for mut records in flushes {
        if current.len() + records.len() > max_rows && !current.is_empty() {
            let capacity = left.min(max_rows);
            inserts.push(std::mem::replace(
                &mut current,
                Vec::with_capacity(capacity),
            ));
        }
        left -= records.len();
        if records.len() > max_rows {
            while records.len() > max_rows {
                let rest = records.split_off(max_rows);
                inserts.push(std::mem::replace(&mut records, rest));
            }
            inserts.push(records);
        } else {
            current.append(&mut records);
        }
    }
    if !current.is_empty() {
        inserts.push(current);
    }
    inserts
}

/// The window-state records of one flush of `task` (its [`task_name`]), its checkpoint
/// (durable as of `durable_at_ms`) last.
pub fn state_records<'a>(
    flush: &'a Flush,
    task: &'a str,
    durable_at_ms: u64,
) -> Vec<StateRecordRef<'a>> {
    let epoch = flush.checkpoint.epoch;
    flush
        .rows
        .iter()
        .map(|row| StateRecordRef::of_row(task, epoch, row))
        .chain([StateRecordRef::of_checkpoint(
            task,
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
    // Each task's rows go to its home shard (ADR 0022).
    let homes: Vec<usize> = rows
        .iter()
        .map(|(task, _)| endpoint.home_shard_of_task(task))
        .collect();
    let order = super::insert::shard_order(&homes);
    let records: Vec<StateRecordRef<'_>> = order
        .iter()
        .map(|&i| StateRecordRef::of_row(&rows[i].0, epoch, &rows[i].1))
        .collect();
    let shards: Vec<usize> = order.iter().map(|&i| homes[i]).collect();
    for (shard, range) in super::insert::shard_runs(&shards) {
        let writer = endpoint.shard_writer(shard);
        for chunk in records[range].chunks(MAX_STATE_ROWS) {
            writer
                .insert_rows::<StateRecordRef<'_>>("window_state", chunk)
                .await?;
        }
    }
    Ok(records.len())
}

/// The window-state sink.
pub struct WindowState {
    endpoint: Endpoint,
    /// Most records one insert carries.
    max_rows: usize,
}

impl WindowState {
    /// The table in `endpoint`'s database, [`MAX_STATE_ROWS`] an insert.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            max_rows: MAX_STATE_ROWS,
        }
    }

    /// At most `max_rows` records an insert (`pipeline.max_flush_rows`).
    pub fn with_max_rows(mut self, max_rows: usize) -> Self {
        self.max_rows = max_rows.clamp(1, MAX_STATE_ROWS);
        self
    }
}

impl Sink for WindowState {
    fn kind(&self) -> SinkKind {
        SinkKind::WindowState
    }

    fn write<'a>(&'a self, batch: &'a mut FlushBatch<'_>) -> SinkFuture<'a> {
        Box::pin(async move {
            let commit = batch.to_commit();
            if commit.is_empty() {
                return Ok(());
            }
            let durable_at_ms = batch.durable_at_ms;
            let tasks: Vec<String> = commit
                .iter()
                .map(|f| task_name(&f.topic, f.partition))
                .collect();
            // Each task's commit goes to its home shard (ADR 0022): one set of inserts each.
            let homes: Vec<usize> = commit
                .iter()
                .map(|f| self.endpoint.home_shard(&f.topic, f.partition))
                .collect();
            let mut per_shard: Vec<Vec<Vec<StateRecordRef<'_>>>> =
                vec![Vec::new(); self.endpoint.shard_count()];
            for ((f, task), home) in commit.iter().zip(&tasks).zip(&homes) {
                per_shard[*home].push(state_records(f, task, durable_at_ms));
            }
            // The metrics of every event of a committed flush become durable here.
            let mut tenants: Vec<&str> =
                Vec::with_capacity(commit.iter().map(|f| f.archive.len()).sum());
            tenants.extend(
                commit
                    .iter()
                    .flat_map(|f| f.archive.iter().map(|e| e.tenant_id.as_str())),
            );
            let observer = batch.observer;
            let mut failed_attempts = 0;
            let mut written = Ok(());
            // A shard that is down stops the commit; the shards written before it are written
            // again with the next attempt: the same rows at the same epochs, which count once.
            'shards: for (shard, per_flush) in per_shard.into_iter().enumerate() {
                if per_flush.is_empty() {
                    continue;
                }
                let writer = self.endpoint.shard_writer(shard);
                for insert in commit_inserts(per_flush, self.max_rows) {
                    written = batch
                        .policy
                        .run(
                            || writer.insert_rows::<StateRecordRef<'_>>("window_state", &insert),
                            |_| {
                                failed_attempts += 1;
                                observer.write_failed(SERVICE);
                            },
                        )
                        .await;
                    if written.is_err() {
                        break 'shards;
                    }
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use salestalk_operators::flush::Checkpoint;
    use salestalk_store::tables::window_state::StateRecord;

    /// A flush's records: `rows` window rows, then its checkpoint.
    fn flush(task: &str, rows: usize) -> Vec<StateRecord> {
        let checkpoint = StateRecordRef::of_checkpoint(task, &Checkpoint::default(), 0).to_record();
        let row = StateRecord {
            family: "volume".into(),
            ..checkpoint.clone()
        };
        std::iter::repeat_n(row, rows).chain([checkpoint]).collect()
    }

    #[test]
    fn inserts_hold_whole_flushes_up_to_the_cap() {
        let inserts = commit_inserts(vec![flush("a", 3), flush("b", 4), flush("c", 1)], 8);
        let shape: Vec<Vec<String>> = inserts
            .iter()
            .map(|insert| insert.iter().map(|r| r.task.clone()).collect())
            .collect();
        assert_eq!(shape.len(), 2, "{shape:?}");
        assert_eq!(shape[0].len(), 4, "a alone: a and b would be 9");
        assert_eq!(shape[1].len(), 7, "b and c");
        assert!(inserts.iter().all(|insert| insert.len() <= 8));
    }

    #[test]
    fn a_flush_over_the_cap_alone_is_split_with_its_checkpoint_last() {
        let inserts = commit_inserts(vec![flush("a", 1), flush("b", 9), flush("c", 1)], 4);
        let sizes: Vec<usize> = inserts.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 4, 4, 2, 2]);
        let b: Vec<&StateRecord> = inserts[1..4].iter().flatten().collect();
        assert!(b.iter().all(|r| r.task == "b"));
        let last = b.last().expect("records");
        assert_eq!(
            last.family, "checkpoint",
            "the checkpoint lands with the last part"
        );
        assert_eq!(b.iter().filter(|r| r.family == "checkpoint").count(), 1);
    }
}
