//! Resuming a task: its last checkpoint, its open window rows and the ids it has counted,
//! read back from what earlier flushes made durable (ADR 0004).

use clickhouse::Row;
use salestalk_operators::dead_letter::DeadLetterReason;
use salestalk_operators::histogram::LogHistogram;
use salestalk_operators::metrics::{Span, WINDOW_SECONDS, WindowValue, window_start};
use salestalk_operators::task::{Checkpoint, Refused, Task, TaskSettings};
use serde::Deserialize;

use super::schema::CHECKPOINT_FAMILY;
use super::writer::task_name;
use super::{ClickHouseError, Endpoint};

#[derive(Debug, Row, Deserialize)]
struct CheckpointRow {
    epoch: u64,
    ints: Vec<i64>,
}

#[derive(Debug, Row, Deserialize)]
struct OpenRow {
    family: String,
    window_start: u32,
    tenant_id: String,
    d1: String,
    d2: String,
    d3: String,
    ints: Vec<i64>,
    floats: Vec<f64>,
    hist_buckets: Vec<i16>,
    hist_counts: Vec<u64>,
}

#[derive(Debug, Row, Deserialize)]
struct RefusedRow {
    offset: i64,
    last_reason: String,
    last_error: String,
    most_attempts: u32,
}

#[derive(Debug, Row, Deserialize)]
struct SeenRow {
    event_id: String,
    timestamp_ms: i64,
}

/// The latest checkpoint of a task. Binds: checkpoint family, task.
pub const CHECKPOINT_QUERY: &str = "SELECT epoch, ints FROM window_state WHERE family = ? AND task = ? \
     ORDER BY epoch DESC LIMIT 1";

/// The latest value of each window row of a task that may still change. A rollup window is
/// open while its last minute is, so each span is read from the start of its window holding
/// the earliest open minute. Binds: task, checkpoint family, then those starts (Unix s) for
/// days (twice: the first narrows the scan), hours and minutes.
pub const OPEN_ROWS_QUERY: &str = "SELECT family, toUInt32(window_start) AS window_start, tenant_id, d1, d2, d3, \
     argMax(ints, epoch) AS ints, argMax(floats, epoch) AS floats, \
     argMax(hist_buckets, epoch) AS hist_buckets, argMax(hist_counts, epoch) AS hist_counts \
     FROM window_state WHERE task = ? AND family != ? AND window_start >= toDateTime(?) \
     AND window_start >= toDateTime(multiIf(endsWith(family, '/day'), ?, endsWith(family, '/hour'), ?, ?)) \
     GROUP BY family, window_start, tenant_id, d1, d2, d3";

/// Event ids a task counted below its checkpoint. Binds: topic, partition, checkpoint offset,
/// earliest event time kept (Unix ms).
pub const SEEN_QUERY: &str = "SELECT event_id, timestamp_ms FROM events_raw \
     WHERE topic = ? AND partition = ? AND offset < ? AND timestamp_ms >= ?";

/// Messages at or after a task's checkpoint that a sink refused: replaying them dead-letters
/// them again instead of counting them (ADR 0006). Binds: topic, partition, checkpoint offset.
pub const REFUSED_QUERY: &str = "SELECT offset, argMax(reason, written_at_ms) AS last_reason, \
     argMax(error, written_at_ms) AS last_error, max(attempts) AS most_attempts FROM dead_letters \
     WHERE topic = ? AND partition = ? AND offset >= ? \
     AND reason IN ('sink_rejected', 'retries_exhausted') GROUP BY offset";

fn optional_ms(value: Option<&i64>) -> Option<i64> {
    value.copied().filter(|v| *v != i64::MIN)
}

impl Endpoint {
    /// Rebuilds the task for `topic`/`partition` from ClickHouse; a partition never seen
    /// starts empty at offset 0.
    pub async fn restore_task(
        &self,
        topic: &str,
        partition: i32,
        settings: TaskSettings,
    ) -> Result<Task, ClickHouseError> {
        let client = self.client();
        let classify = |e| ClickHouseError::classify(&self.url, e);
        let task = task_name(topic, partition);
        let latest: Option<CheckpointRow> = client
            .query(CHECKPOINT_QUERY)
            .bind(CHECKPOINT_FAMILY)
            .bind(&task)
            .fetch_optional()
            .await
            .map_err(classify)?;
        let refused: Vec<RefusedRow> = client
            .query(REFUSED_QUERY)
            .bind(topic)
            .bind(partition)
            .bind(
                latest
                    .as_ref()
                    .and_then(|l| l.ints.first())
                    .copied()
                    .unwrap_or(0),
            )
            .fetch_all()
            .await
            .map_err(classify)?;
        let Some(latest) = latest else {
            let mut fresh = Task::new(topic, partition, settings, Checkpoint::default());
            mark_refused(&mut fresh, refused);
            return Ok(fresh);
        };
        let checkpoint = Checkpoint {
            next_offset: latest.ints.first().copied().unwrap_or(0),
            event_watermark_ms: optional_ms(latest.ints.get(1)),
            broker_watermark_ms: optional_ms(latest.ints.get(2)),
            epoch: latest.epoch,
        };
        let mut restored = Task::new(topic, partition, settings, checkpoint);
        mark_refused(&mut restored, refused);

        // Rows of windows that may still change; older ones are final and stay on disk only.
        let open_from = |watermark: Option<i64>| {
            watermark.map_or(0, |wm| {
                window_start(wm - settings.allowed_lateness_ms) - WINDOW_SECONDS
            })
        };
        let since =
            open_from(checkpoint.event_watermark_ms).min(open_from(checkpoint.broker_watermark_ms));
        let rows: Vec<OpenRow> = client
            .query(OPEN_ROWS_QUERY)
            .bind(&task)
            .bind(CHECKPOINT_FAMILY)
            .bind(Span::Day.start(since.max(0)))
            .bind(Span::Day.start(since.max(0)))
            .bind(Span::Hour.start(since.max(0)))
            .bind(since.max(0))
            .fetch_all()
            .await
            .map_err(classify)?;
        for row in rows {
            let Some((family, span)) = Span::parse_storage_name(&row.family) else {
                continue;
            };
            let value = WindowValue {
                ints: row.ints,
                floats: row.floats,
                histogram: LogHistogram::from_arrays(&row.hist_buckets, &row.hist_counts),
            };
            restored.restore_row(
                span,
                family,
                i64::from(row.window_start),
                &row.tenant_id,
                [&row.d1, &row.d2, &row.d3],
                value,
            );
        }

        // Ids counted before the checkpoint, within the dedup horizon.
        let horizon_start = checkpoint
            .event_watermark_ms
            .map_or(i64::MIN, |wm| wm - settings.dedup_horizon_ms);
        let seen: Vec<SeenRow> = client
            .query(SEEN_QUERY)
            .bind(topic)
            .bind(partition)
            .bind(checkpoint.next_offset)
            .bind(horizon_start)
            .fetch_all()
            .await
            .map_err(classify)?;
        for row in seen {
            if let Some(id) = salestalk_contracts::formats::parse_uuid(&row.event_id) {
                restored.restore_seen(id, row.timestamp_ms);
            }
        }
        Ok(restored)
    }
}

fn mark_refused(task: &mut Task, rows: Vec<RefusedRow>) {
    for row in rows {
        let reason = if row.last_reason == DeadLetterReason::RetriesExhausted.as_str() {
            DeadLetterReason::RetriesExhausted
        } else {
            DeadLetterReason::SinkRejected
        };
        task.restore_refused(
            row.offset,
            Refused {
                reason,
                error: row.last_error,
                attempts: row.most_attempts,
            },
        );
    }
}
