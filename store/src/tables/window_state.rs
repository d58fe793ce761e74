//! `window_state`: every window row and checkpoint, the pipeline's exact state (ADR 0004).
//! How its facts are written and read back, the one codec the write path (sinks) and every
//! reader (restore, corrections, dashboards, `serve`) share:
//!
//! - a task's name: `topic/partition`;
//! - a window row: `window_state` with `family` = `<family>` for minutes, `<family>/hour`
//!   and `<family>/day` for rollups (ADR 0008);
//! - a checkpoint: a `window_state` row of family `checkpoint` whose
//!   `ints = [next_offset, event_watermark_ms, broker_watermark_ms, durable_at_ms,
//!   sealed_hours_before, sealed_days_before]` (`i64::MIN` for a watermark or seal not known
//!   yet; the last two since ADR 0023) and `d1` = the source's sequence number (Kinesis;
//!   empty for Kafka), written in the same insert as the rows it completes (ADR 0004);
//! - a time: `DateTime` seconds, clamped to ClickHouse's range (`operators::time::datetime`).
//!
//! Other tables' facts have their own modules beside this one (a dead letter's address in
//! `dead_letters`, an event id in `events_raw`).

use std::borrow::Cow;
use std::sync::LazyLock;

use clickhouse::Row;
use salestalk_operators::aggregate::Family;
use salestalk_operators::flush::{Checkpoint, StateRow};
use salestalk_operators::histogram::LogHistogram;
use salestalk_operators::time::datetime;
use salestalk_operators::time::epoch::generation_sql;
use salestalk_operators::windows::{Span, WindowValue};
use serde::{Deserialize, Serialize};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 1: every window row and checkpoint. Read in short time slices per tenant (a
/// dashboard's edge minutes, an alert's lookback): granules of 1,024 rows instead of 8,192
/// cut what such a read drags in, which made the SRE page's panels about 40 % faster
/// (docs/performance.md); databases created before keep 8,192 (the DDL is `IF NOT EXISTS`).
///
/// A merge keeps a key's highest epoch *within one generation* (`generation`, computed by the
/// server from `epoch`, ends the sorting key): a row of a generation outside the lineage that
/// counts (a claim that lost, a stalled owner's, ADR 0014) never replaces the rows that do, which
/// the views and restores then could not find. Databases created before keep the key without
/// it until rebuilt (`generation_in_sorting_key`, docs/operations.md).
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.window_state (\n\
         family {low},\n\
         task String,\n\
         epoch UInt64,\n\
         window_start DateTime('UTC'),\n\
         tenant_id String,\n\
         d1 {low},\n\
         d2 {low},\n\
         d3 {low},\n\
         ints Array(Int64),\n\
         floats Array(Float64),\n\
         hist_buckets Array(Int16),\n\
         hist_counts Array(UInt64),\n\
         generation UInt64 MATERIALIZED {}\n\
         ) ENGINE = ReplacingMergeTree(epoch)\n\
         ORDER BY (family, tenant_id, window_start, d1, d2, d3, task, generation)\n\
         SETTINGS index_granularity = 1024",
        generation_sql("epoch")
    )
}

/// Whether `window_state` of `database` keeps each generation's rows apart in merges (its
/// sorting key ends with `generation`); `false` for a table created before that, which a
/// rebuild fixes (docs/operations.md, "Rebuilding window_state"). `true` where there is no
/// such table yet (`migrate` makes it so).
///
/// Reads the one table's definition (`SHOW CREATE TABLE`), not `system.tables`: ClickHouse
/// 18.16 reads every table of the database for that, and fails when another instance's
/// `migrate` drops a view meanwhile ("Table … doesn't exist"), as two processes starting
/// together on a fresh database do.
pub async fn generation_in_sorting_key(
    endpoint: &Endpoint,
    database: &str,
) -> Result<bool, ClickHouseError> {
    let exists: u8 = endpoint
        .query(&format!("EXISTS TABLE {database}.window_state"))
        .fetch_one()
        .await?;
    if exists == 0 {
        return Ok(true);
    }
    let statement: String = endpoint
        .query(&format!("SHOW CREATE TABLE {database}.window_state"))
        .fetch_one()
        .await?;
    Ok(sorting_key_has_generation(&statement))
}

/// Whether the `CREATE TABLE` statement `statement` sorts by `generation` last.
fn sorting_key_has_generation(statement: &str) -> bool {
    statement.split_once("ORDER BY").is_some_and(|(_, key)| {
        key.split(')')
            .next()
            .is_some_and(|key| key.trim_end().ends_with("generation"))
    })
}

/// Family name of the checkpoint rows in `window_state`.
pub const CHECKPOINT_FAMILY: &str = "checkpoint";

/// The task name stored with rows: `topic/partition`.
pub fn task_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// What follows a family's name in `window_state.family` for rows of `span` (`""` for
/// minutes, so minute rows carry the bare family name).
pub const fn span_suffix(span: Span) -> &'static str {
    match span {
        Span::Minute => "",
        Span::Hour => "/hour",
        Span::Day => "/day",
    }
}

/// The name `family`'s rows of `span` are stored under in `window_state`: made once per
/// family and span, since the commit names every row it writes.
pub fn family_name(family: Family, span: Span) -> &'static str {
    static NAMES: LazyLock<Vec<((Family, Span), String)>> = LazyLock::new(|| {
        Family::ALL
            .into_iter()
            .flat_map(|family| {
                Span::ALL.map(|span| {
                    let name = format!("{}{}", family.layout().name, span_suffix(span));
                    ((family, span), name)
                })
            })
            .collect()
    });
    NAMES
        .iter()
        .find(|(key, _)| *key == (family, span))
        .map_or("", |(_, name)| name.as_str())
}

/// The family and span stored under `name`, if it is one (not for checkpoints).
pub fn parse_family_name(name: &str) -> Option<(Family, Span)> {
    let span = Span::ROLLUPS
        .into_iter()
        .find(|span| name.ends_with(span_suffix(*span)))
        .unwrap_or(Span::Minute);
    let base = &name[..name.len() - span_suffix(span).len()];
    Family::ALL
        .into_iter()
        .find(|f| f.layout().name == base)
        .map(|f| (f, span))
}

/// A `window_state` row: a window row or a checkpoint.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct StateRecord {
    /// Metric family (see [`family_name`]), or `checkpoint`.
    pub family: String,
    /// `topic/partition`.
    pub task: String,
    /// The flush that wrote it.
    pub epoch: u64,
    /// Window start, Unix seconds.
    pub window_start: u32,
    /// Tenant.
    pub tenant_id: String,
    /// First dimension.
    pub d1: String,
    /// Second dimension.
    pub d2: String,
    /// Third dimension.
    pub d3: String,
    /// Counters.
    pub ints: Vec<i64>,
    /// Sums.
    pub floats: Vec<f64>,
    /// Histogram buckets.
    pub hist_buckets: Vec<i16>,
    /// Histogram counts.
    pub hist_counts: Vec<u64>,
}

impl StateRecord {
    /// The window row this record holds, or `None` for a checkpoint or an unknown family.
    pub fn into_row(self) -> Option<StateRow> {
        let (family, span) = parse_family_name(&self.family)?;
        Some(StateRow {
            family,
            span,
            window_start: i64::from(self.window_start),
            tenant_id: self.tenant_id,
            dims: [self.d1, self.d2, self.d3],
            value: WindowValue {
                ints: self.ints,
                floats: self.floats,
                histogram: LogHistogram::from_arrays(&self.hist_buckets, &self.hist_counts),
            },
        })
    }
}

/// A `window_state` row as the commit writes it: [`StateRecord`]'s columns borrowed from the
/// flush instead of copied, which saves about ten allocations a row (the strings, counters and
/// family name) on the hot path; readers get [`StateRecord`]s back.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct StateRecordRef<'a> {
    /// As [`StateRecord::family`].
    pub family: &'a str,
    /// As [`StateRecord::task`].
    pub task: &'a str,
    /// As [`StateRecord::epoch`].
    pub epoch: u64,
    /// As [`StateRecord::window_start`].
    pub window_start: u32,
    /// As [`StateRecord::tenant_id`].
    pub tenant_id: &'a str,
    /// As [`StateRecord::d1`].
    pub d1: &'a str,
    /// As [`StateRecord::d2`].
    pub d2: &'a str,
    /// As [`StateRecord::d3`].
    pub d3: &'a str,
    /// As [`StateRecord::ints`] (a checkpoint's are encoded, a row's borrowed).
    pub ints: Cow<'a, [i64]>,
    /// As [`StateRecord::floats`].
    pub floats: &'a [f64],
    /// As [`StateRecord::hist_buckets`].
    pub hist_buckets: Vec<i16>,
    /// As [`StateRecord::hist_counts`].
    pub hist_counts: Vec<u64>,
}

impl<'a> StateRecordRef<'a> {
    /// The record of a window row of `task`, written by the flush of `epoch`.
    pub fn of_row(task: &'a str, epoch: u64, row: &'a StateRow) -> Self {
        let (hist_buckets, hist_counts) = row.value.histogram.to_arrays();
        let [d1, d2, d3] = &row.dims;
        Self {
            family: family_name(row.family, row.span),
            task,
            epoch,
            window_start: datetime(row.window_start),
            tenant_id: &row.tenant_id,
            d1,
            d2,
            d3,
            ints: Cow::Borrowed(&row.value.ints),
            floats: &row.value.floats,
            hist_buckets,
            hist_counts,
        }
    }

    /// The checkpoint record of `task`.
    pub fn of_checkpoint(task: &'a str, checkpoint: &'a Checkpoint, durable_at_ms: u64) -> Self {
        Self {
            family: CHECKPOINT_FAMILY,
            task,
            epoch: checkpoint.epoch,
            window_start: 0,
            tenant_id: "",
            d1: &checkpoint.sequence,
            d2: "",
            d3: "",
            ints: Cow::Owned(encode_checkpoint(checkpoint, durable_at_ms)),
            floats: &[],
            hist_buckets: Vec::new(),
            hist_counts: Vec::new(),
        }
    }

    /// The same record, owned, as a reader gets it back.
    pub fn to_record(&self) -> StateRecord {
        StateRecord {
            family: self.family.to_string(),
            task: self.task.to_string(),
            epoch: self.epoch,
            window_start: self.window_start,
            tenant_id: self.tenant_id.to_string(),
            d1: self.d1.to_string(),
            d2: self.d2.to_string(),
            d3: self.d3.to_string(),
            ints: self.ints.to_vec(),
            floats: self.floats.to_vec(),
            hist_buckets: self.hist_buckets.clone(),
            hist_counts: self.hist_counts.clone(),
        }
    }
}

/// A checkpoint's `ints`: where the task is, and when that became durable (the flush's start,
/// Unix ms: how `serve` tells a stalled partition from a busy one).
fn encode_checkpoint(checkpoint: &Checkpoint, durable_at_ms: u64) -> Vec<i64> {
    vec![
        checkpoint.next_offset,
        checkpoint.event_watermark_ms.unwrap_or(i64::MIN),
        checkpoint.broker_watermark_ms.unwrap_or(i64::MIN),
        i64::try_from(durable_at_ms).unwrap_or(i64::MAX),
        checkpoint.sealed_hours_before.unwrap_or(i64::MIN),
        checkpoint.sealed_days_before.unwrap_or(i64::MIN),
    ]
}

/// When a stored checkpoint became durable (Unix ms); `None` for checkpoints written before
/// the time was stored.
pub fn checkpoint_durable_at(ints: &[i64]) -> Option<i64> {
    ints.get(3).copied()
}

/// The checkpoint stored as `ints` and `sequence` (its `d1`) by the flush of `epoch`.
pub fn decode_checkpoint(epoch: u64, ints: &[i64], sequence: String) -> Checkpoint {
    let watermark = |i: usize| ints.get(i).copied().filter(|v| *v != i64::MIN);
    Checkpoint {
        next_offset: ints.first().copied().unwrap_or(0),
        sequence,
        event_watermark_ms: watermark(1),
        broker_watermark_ms: watermark(2),
        epoch,
        // Absent from checkpoints stored before sealing (ADR 0023): the task marks them.
        sealed_hours_before: watermark(4),
        sealed_days_before: watermark(5),
    }
}

impl Endpoint {
    /// The highest epoch any window row carries, on any shard (each writer asked: its own
    /// rows are the newest it has).
    pub async fn max_epoch(&self) -> Result<u64, ClickHouseError> {
        let mut highest = 0;
        for writer in self.shard_writers() {
            let epoch: u64 = writer
                .query("SELECT max(epoch) FROM window_state")
                .fetch_one()
                .await?;
            highest = highest.max(epoch);
        }
        Ok(highest)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_sorting_key_ending_with_the_generation_is_recognised() {
        let ddl = create(&Ddl {
            database: "db",
            low: "String",
            ttl: false,
        });
        assert!(sorting_key_has_generation(&ddl));
        let before = "CREATE TABLE db.window_state (family String, epoch UInt64) \
                      ENGINE = ReplacingMergeTree(epoch) ORDER BY (family, tenant_id, window_start, d1, d2, d3, task) \
                      SETTINGS index_granularity = 1024";
        assert!(!sorting_key_has_generation(before));
        assert!(!sorting_key_has_generation(
            "CREATE TABLE db.t (a UInt8) ENGINE = Log"
        ));
    }
    use super::*;

    #[test]
    fn family_names_round_trip() {
        for family in Family::ALL {
            for span in Span::ALL {
                let name = family_name(family, span);
                assert_eq!(parse_family_name(name), Some((family, span)));
            }
        }
        assert_eq!(family_name(Family::Cost, Span::Hour), "cost/hour");
        assert_eq!(parse_family_name(CHECKPOINT_FAMILY), None);
        assert_eq!(parse_family_name("nope/hour"), None);
        assert_eq!(
            parse_family_name("latency/day"),
            Some((Family::Latency, Span::Day))
        );
    }

    #[test]
    fn the_written_record_has_the_read_records_columns_in_order() {
        assert_eq!(
            <StateRecordRef<'_> as Row>::COLUMN_NAMES,
            <StateRecord as Row>::COLUMN_NAMES
        );
    }

    #[test]
    fn checkpoints_and_rows_round_trip() {
        for checkpoint in [
            Checkpoint::default(),
            Checkpoint {
                next_offset: 42,
                event_watermark_ms: Some(-5),
                broker_watermark_ms: Some(1_762_646_400_000),
                epoch: 7,
                sequence: "49590338271490256608559692538361571095921575989136588898".into(),
                sealed_hours_before: Some(1_762_642_800),
                sealed_days_before: Some(1_762_560_000),
            },
        ] {
            let record = StateRecordRef::of_checkpoint("t/0", &checkpoint, 5).to_record();
            assert_eq!(record.clone().into_row(), None);
            assert_eq!(
                decode_checkpoint(record.epoch, &record.ints, record.d1),
                checkpoint
            );
            assert_eq!(checkpoint_durable_at(&record.ints), Some(5));
        }
        let mut histogram = LogHistogram::default();
        histogram.record(12.0);
        let row = StateRow {
            family: Family::Latency,
            span: Span::Day,
            window_start: 86_400,
            tenant_id: "a".into(),
            dims: ["x.y.v1".into(), "clickhouse.archive".into(), String::new()],
            value: WindowValue {
                ints: vec![1],
                floats: vec![12.0],
                histogram,
            },
        };
        let record = StateRecordRef::of_row("t/0", 3, &row).to_record();
        assert_eq!(record.family, "latency/day");
        assert_eq!(record.into_row(), Some(row));
    }
}
