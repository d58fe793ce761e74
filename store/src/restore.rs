//! Reading back what a task's flushes made durable: its last checkpoint, its rows that may
//! still change, the ids it counted within the dedup horizon and the offsets a sink refused
//! (ADR 0004, ADR 0006). The task rebuilds itself from these plain rows
//! (`Task::resume`); nothing here knows how a task works.

use clickhouse::Row;
use salestalk_operators::flush::{Checkpoint, TaskState};
use salestalk_operators::new_values::Admission;
use salestalk_operators::windows::Span;
use serde::Deserialize;

use crate::endpoint::{ClickHouseError, Endpoint};
use crate::tables::task_claims::lineage_condition;
use crate::tables::window_state::{
    CHECKPOINT_FAMILY, StateRecord, checkpoint_durable_at, decode_checkpoint, family_name,
    parse_family_name, task_name,
};

#[derive(Debug, Row, Deserialize)]
struct CheckpointRow {
    epoch: u64,
    ints: Vec<i64>,
    d1: String,
}

/// The latest checkpoint of a task. Binds: checkpoint family, task.
pub const CHECKPOINT_QUERY: &str = "SELECT epoch, ints, d1 FROM window_state WHERE family = ? AND task = ? \
     ORDER BY epoch DESC LIMIT 1";

/// The latest value of each minute row of a task that may still change (hours and days are
/// sealed from durable minutes, not held: ADR 0023), in the columns of [`StateRecord`]
/// (decoded by position). Only rows of the checkpoint's flush or earlier: the checkpoint
/// and its rows land in one insert, so these are exactly the state it describes, even when a
/// later flush (one a killed owner had in flight, which the server finished after its client
/// died, or one a stalled owner wrote after losing the partition) lands between reading the
/// checkpoint and reading the rows; replaying from the checkpoint over that later state would
/// count its events twice. And only rows of the checkpoint's lineage (`lineage`): a stalled
/// owner's flushes after its successor resumed never count. Binds: task, checkpoint family,
/// the lineage ([`Lineage::bind`](crate::tables::task_claims::Lineage::bind)), then the first
/// open minute (Unix s).
pub const OPEN_ROWS_QUERY: &str = concat!(
    "SELECT family, task, max(epoch) AS last_epoch, toUInt32(window_start) AS window_start, tenant_id, d1, d2, d3, \
     argMax(ints, epoch) AS ints, argMax(floats, epoch) AS floats, \
     argMax(hist_buckets, epoch) AS hist_buckets, argMax(hist_counts, epoch) AS hist_counts \
     FROM window_state WHERE task = ? AND family != ? AND position(family, '/') = 0 AND ",
    lineage_condition!(),
    " AND window_start >= toDateTime(?) \
     GROUP BY family, task, window_start, tenant_id, d1, d2, d3"
);

/// The distinct dimensions, per UTC day, of a task's minute rows of the families that record
/// what its budgets admitted (`new_values::Admission`), from the day holding its first open
/// minute on; same rows as [`OPEN_ROWS_QUERY`] (the checkpoint's lineage, up to its epoch).
/// Binds: task, the families, the lineage, the day's start (Unix s).
const ADMITTED_QUERY: &str = concat!(
    "SELECT family, tenant_id, d1, d2, d3, toUInt32(toStartOfDay(window_start)) AS day \
     FROM window_state WHERE task = ? AND has(CAST(? AS Array(String)), family) AND ",
    lineage_condition!(),
    " AND window_start >= toDateTime(?) \
     GROUP BY family, tenant_id, d1, d2, d3, day"
);

#[derive(Debug, Row, Deserialize)]
struct AdmittedRow {
    family: String,
    tenant_id: String,
    d1: String,
    d2: String,
    d3: String,
    day: u32,
}

/// The latest checkpoint of every task.
const ALL_CHECKPOINTS_QUERY: &str = "SELECT task, max(epoch) AS last_epoch, argMax(ints, epoch) AS last_ints, \
     argMax(d1, epoch) AS last_sequence FROM window_state WHERE family = ? GROUP BY task";

#[derive(Debug, Row, Deserialize)]
struct TaskCheckpointRow {
    task: String,
    last_epoch: u64,
    last_ints: Vec<i64>,
    last_sequence: String,
}

impl Endpoint {
    /// The latest checkpoint of every task, by task name (`topic/partition`), with when it
    /// became durable (Unix ms; `None` for checkpoints older than that record): how far each
    /// partition is durable, and since when (consumer lag and stalls). Each shard's writer
    /// answers for the tasks at home there (ADR 0022).
    pub async fn checkpoints(
        &self,
    ) -> Result<Vec<(String, Checkpoint, Option<i64>)>, ClickHouseError> {
        let mut rows: Vec<TaskCheckpointRow> = Vec::new();
        for writer in self.shard_writers() {
            rows.extend(
                writer
                    .query(ALL_CHECKPOINTS_QUERY)
                    .bind(CHECKPOINT_FAMILY)
                    .fetch_all::<TaskCheckpointRow>()
                    .await?,
            );
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let checkpoint =
                    decode_checkpoint(row.last_epoch, &row.last_ints, row.last_sequence);
                (row.task, checkpoint, checkpoint_durable_at(&row.last_ints))
            })
            .collect())
    }

    /// What the flushes of `topic`/`partition` made durable, for a task that resumes with
    /// `allowed_lateness_ms` and `dedup_horizon_ms`; a partition never flushed has an empty
    /// state at offset 0 (and perhaps refusals from an earlier attempt).
    pub async fn task_state(
        &self,
        topic: &str,
        partition: i32,
        allowed_lateness_ms: i64,
        dedup_horizon_ms: i64,
    ) -> Result<TaskState, ClickHouseError> {
        let task = task_name(topic, partition);
        let latest: Option<CheckpointRow> = self
            .query(CHECKPOINT_QUERY)
            .bind(CHECKPOINT_FAMILY)
            .bind(&task)
            .fetch_optional()
            .await?;
        let checkpoint = latest
            .map(|row| decode_checkpoint(row.epoch, &row.ints, row.d1))
            .unwrap_or_default();
        let refused = self
            .refusals(topic, partition, checkpoint.next_offset)
            .await?;
        if checkpoint.epoch == 0 {
            return Ok(TaskState {
                checkpoint,
                refused,
                ..TaskState::default()
            });
        }

        // Rows of windows that may still change; older ones are final and stay on disk only.
        let since = checkpoint.first_open_window(allowed_lateness_ms).max(0);
        let lineage = self.lineage(&task, checkpoint.epoch).await?;
        let query = self
            .query(OPEN_ROWS_QUERY)
            .bind(&task)
            .bind(CHECKPOINT_FAMILY);
        let rows: Vec<StateRecord> = lineage.bind(query).bind(since).fetch_all().await?;
        let rows = rows.into_iter().filter_map(StateRecord::into_row).collect();
        let families: Vec<&str> = Admission::families()
            .map(|family| family_name(family, Span::Minute))
            .collect();
        let query = self.query(ADMITTED_QUERY).bind(&task).bind(families);
        let admitted: Vec<AdmittedRow> = lineage
            .bind(query)
            .bind(Span::Day.start(since))
            .fetch_all()
            .await?;
        let admitted = admitted
            .into_iter()
            .filter_map(|row| {
                let (family, _) = parse_family_name(&row.family)?;
                Admission::of_row(
                    family,
                    &row.tenant_id,
                    &[row.d1, row.d2, row.d3],
                    i64::from(row.day),
                )
            })
            .collect();

        // Ids counted before the checkpoint, within the dedup horizon.
        let horizon_start = checkpoint
            .event_watermark_ms
            .map_or(i64::MIN, |wm| wm - dedup_horizon_ms);
        let seen = self
            .counted_ids(topic, partition, checkpoint.next_offset, horizon_start)
            .await?;
        Ok(TaskState {
            checkpoint,
            rows,
            seen,
            refused,
            generation: None,
            admitted,
        })
    }
}
