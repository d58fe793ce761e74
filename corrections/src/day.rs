//! Correcting one tenant's UTC day: recompute it from the archive with the pipeline's own
//! operators, and write every window row of it (for every task that wrote one) at a
//! correction epoch, so the views take the recomputed values (ADR 0016).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{CorrectionError, store};
use chrono::DateTime;
use salestalk_operators::aggregate::Family;
use salestalk_operators::flush::StateRow;
use salestalk_operators::time::epoch::correction_epoch;
use salestalk_operators::time::{DAY_S, datetime};
use salestalk_operators::windows::{Span, WindowValue};
use salestalk_sinks::clickhouse::{MAX_STATE_ROWS, write_corrections};
use salestalk_store::corrections::LiveKey;
use salestalk_store::tables::corrections::CorrectionRecord;
use salestalk_store::tables::dead_letters::LateLetter;
use salestalk_store::tables::window_state::{parse_family_name, task_name};

use crate::recompute::{Purpose, Recomputation};
use crate::settings::CorrectorSettings;

/// Archived events read at a time.
const PAGE: u64 = 20_000;

/// Where each task may still change windows: the first minute (Unix s) it may write, by task.
pub type OpenFrom = BTreeMap<String, i64>;

/// What a correction of a tenant's day found before writing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A task may still write the day's windows (its watermark has not passed the day plus the
    /// allowed lateness, or its seal of the day has not landed): correcting now would lose its
    /// later changes.
    NotFinal {
        /// The task.
        task: String,
        /// The first window it may still change (Unix s), `None` when it never flushed.
        open_from: Option<i64>,
    },
    /// The archive no longer holds the whole day (retention).
    Expired {
        /// The oldest day start (Unix s) the archive still holds in full.
        oldest_day: i64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |s: i64| {
            DateTime::from_timestamp(s, 0).map_or_else(|| s.to_string(), |t| t.to_rfc3339())
        };
        match self {
            Self::NotFinal { task, open_from } => write!(
                f,
                "{task} may still change windows from {} on",
                open_from.map_or_else(|| "anywhere (it never flushed)".to_string(), at)
            ),
            Self::Expired { oldest_day } => write!(
                f,
                "the archive holds whole days from {} on only (retention.archive_days)",
                at(*oldest_day)
            ),
        }
    }
}

/// What starts a check of a day, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The day became final and was never checked.
    FirstCheck,
    /// Late events of the day arrived since its last check.
    LateEvents,
    /// A task wrote the day's windows since its last check.
    LiveChanged,
    /// A task the last correction had to leave out is past the day now.
    NowFinal,
    /// `salestalk replay run --backfill`.
    Backfill,
}

impl Trigger {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstCheck => "first_check",
            Self::LateEvents => "late_events",
            Self::LiveChanged => "live_changed",
            Self::NowFinal => "now_final",
            Self::Backfill => "backfill",
        }
    }
}

/// What the day looked like when its check began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Before {
    /// The day's live event total (the volume view).
    pub live: i64,
    /// Late arrivals of the day recorded so far.
    pub late_arrivals: i64,
    /// Late arrivals the previous check had seen (all of them: what the next is compared with).
    pub late_arrivals_seen: i64,
    /// Late arrivals of tasks past the day the previous correction took in (they are in
    /// `live` now).
    pub late_arrivals_counted: i64,
    /// Copies beyond the first the earlier corrections of the day removed.
    pub duplicates_removed: i64,
}

impl Before {
    /// The day as `previous` (its newest check, if any) left it, and as it is now.
    pub fn new(live: i64, late_arrivals: i64, previous: Option<&CorrectionRecord>) -> Self {
        Self {
            live,
            late_arrivals,
            late_arrivals_seen: previous.map_or(0, |c| c.late_arrivals_seen),
            late_arrivals_counted: previous.map_or(0, |c| c.late_arrivals_counted),
            duplicates_removed: previous.map_or(0, |c| c.duplicates_removed),
        }
    }
}

/// A tenant's day to correct, and the rules it is corrected by.
pub struct DayCorrection<'a> {
    /// The pipeline's settings: its operators, routing and time rules.
    pub settings: &'a CorrectorSettings,
    /// The tenant.
    pub tenant: &'a str,
    /// The day's start (Unix s, a multiple of a day).
    pub day: i64,
    /// What asked for it.
    pub trigger: Trigger,
    /// The day as it was.
    pub before: Before,
}

/// A tenant-day's correction, recomputed and not written yet: [`Corrections`] writes it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The rows to write over the live ones, each with its task.
    pub rows: Vec<(String, StateRow)>,
    /// The check's record, written once the rows are.
    pub record: CorrectionRecord,
    /// The late dead letters it counted (topic, partition, offset), marked once it is written.
    pub letters: Vec<(String, i32, i64)>,
}

impl DayCorrection<'_> {
    /// Recomputes the day as of `now_ms` (its correction epoch), to be written over the live
    /// rows by [`Corrections`]; or says why it may not.
    ///
    /// Only tasks past the day for good (their watermark minus the allowed lateness is after
    /// it, and their seal of it has landed) are corrected: a task that may still write the day
    /// would write at lower epochs and lose, and a seal landing after the correction read the
    /// day's keys would leave rollup rows of keys it moved to another task. The others (a
    /// partition gone quiet holds its watermark back) keep their live rows, their events are
    /// left out of the recomputation, and the record names them, so the day is corrected
    /// again once they are past it. With `all_or_nothing` (a backfill) any such
    /// task refuses the whole day instead.
    pub async fn prepare(
        &self,
        open_from: &OpenFrom,
        now_ms: u64,
        all_or_nothing: bool,
    ) -> Result<Result<Prepared, Refusal>, CorrectionError> {
        let endpoint = &self.settings.endpoint;
        let oldest_day = oldest_whole_day(self.settings.archive_days, now_ms);
        if self.day < oldest_day {
            return Ok(Err(Refusal::Expired { oldest_day }));
        }
        let end = self.day + DAY_S;
        let is_final = |task: &str| open_from.get(task).is_some_and(|open| *open >= end);
        let mut waiting = BTreeSet::new();
        let mut live_keys = endpoint
            .live_keys(self.tenant, self.day)
            .await
            .map_err(store("reading the day's window rows"))?;
        live_keys.retain(|key| {
            let keep = is_final(&key.task);
            if !keep {
                waiting.insert(key.task.clone());
            }
            keep
        });
        let mut recomputation = Recomputation::new(self.settings, Purpose::Correction)?;
        let range = (datetime(self.day), datetime(end));
        let mut after = None;
        loop {
            let page = endpoint
                .archive_of_tenant(self.tenant, range, after, PAGE)
                .await
                .map_err(store("reading the day from the archive"))?;
            let Some(last) = page.last() else { break };
            after = Some(last.event_id);
            for event in &page {
                let task = task_name(&event.topic, event.partition);
                if is_final(&task) {
                    recomputation.feed(event);
                } else {
                    waiting.insert(task);
                }
            }
        }
        let mut letters = self.legacy_late_letters().await?;
        letters.retain(|letter| {
            let task = task_name(&letter.topic, letter.partition);
            let keep = is_final(&task);
            if !keep {
                waiting.insert(task);
            }
            keep
        });
        for letter in &letters {
            recomputation.feed_late(letter);
        }
        let nothing_final = live_keys.is_empty() && recomputation.events == 0;
        if let Some(task) = waiting.first()
            && (all_or_nothing || nothing_final)
        {
            return Ok(Err(Refusal::NotFinal {
                task: task.clone(),
                open_from: open_from.get(task).copied(),
            }));
        }
        let rows = rows_to_write(
            recomputation.flush(now_ms as i64),
            &live_keys,
            self.tenant,
            self.day,
        );
        let events = volume_total(&rows);
        // What the day holds before the rows are written, read now (tasks go on writing while
        // a pass runs): the corrected tasks' copies (counted live, or archived late), and the
        // waiting tasks' live rows and late arrivals, which stand beside the corrected ones.
        let final_tasks: BTreeSet<String> = live_keys
            .iter()
            .map(|key| key.task.clone())
            .chain(
                recomputation
                    .partitions()
                    .map(|(topic, partition)| task_name(topic, *partition)),
            )
            .collect();
        let (final_live, final_late) = self.totals_of(&final_tasks).await?;
        let (waiting_live, _) = self.totals_of(&waiting).await?;
        // Every copy the corrected tasks took in since the last correction, less the events
        // they hold now: copies of one event beyond the first.
        let copies = final_live + (final_late - self.before.late_arrivals_counted);
        let epoch = correction_epoch(now_ms);
        let before = self.before;
        let record = CorrectionRecord {
            tenant_id: self.tenant.to_string(),
            day: (self.day / DAY_S).clamp(0, i64::from(u16::MAX)) as u16,
            checked_at_ms: now_ms,
            epoch,
            trigger: self.trigger.as_str().to_string(),
            live_before: before.live,
            events: events + waiting_live,
            late_events: recomputation.late as i64,
            duplicates_removed: before.duplicates_removed + (copies - events).max(0),
            late_arrivals_seen: before.late_arrivals,
            late_arrivals_counted: final_late,
            rows_written: rows.len() as u64,
            waiting_tasks: waiting.into_iter().collect(),
        };
        let letters = letters
            .into_iter()
            .map(|l| (l.topic, l.partition, l.offset))
            .collect();
        Ok(Ok(Prepared {
            rows,
            record,
            letters,
        }))
    }

    /// What `tasks` hold of the day: (events counted, late arrivals recorded).
    async fn totals_of(&self, tasks: &BTreeSet<String>) -> Result<(i64, i64), CorrectionError> {
        if tasks.is_empty() {
            return Ok((0, 0));
        }
        self.settings
            .endpoint
            .totals_of_tasks(self.tenant, self.day, tasks)
            .await
            .map_err(store("reading the tasks' totals of the day"))
    }

    /// The tenant's events of the day dead-lettered as `late` before late events were archived
    /// (not discarded): they count too.
    async fn legacy_late_letters(&self) -> Result<Vec<LateLetter>, CorrectionError> {
        // A late event arrives after its window, but its producer's clock may run ahead of the
        // broker's by up to the allowed skew: look that much earlier.
        let skew_s = self.settings.task.max_future_skew_ms / 1000;
        let since = datetime(self.day - skew_s);
        let letters = self
            .settings
            .endpoint
            .late_letters(&[self.tenant.to_string()], since)
            .await
            .map_err(store("reading late dead letters"))?;
        let end = self.day + DAY_S;
        Ok(letters
            .into_iter()
            .filter(|letter| {
                event_minute(&letter.raw).is_some_and(|m| (self.day..end).contains(&m))
            })
            .collect())
    }
}

/// Corrections and checks made durable together, so a pass over thousands of tenant-days
/// makes few inserts (ClickHouse wants thousands of rows an insert, not one): rows first, in
/// inserts of whole tenant-days under [`MAX_STATE_ROWS`], then the late letters they counted,
/// then the records. A crash in between leaves days without their record, which the next pass
/// corrects again (the same rows at a later epoch).
#[derive(Debug, Default)]
pub struct Corrections {
    rows: Vec<(String, StateRow)>,
    records: Vec<CorrectionRecord>,
    letters: Vec<(String, i32, i64)>,
}

impl Corrections {
    /// Adds a correction, writing what is held first when its rows would not fit beside them.
    pub async fn add(
        &mut self,
        settings: &CorrectorSettings,
        prepared: Prepared,
    ) -> Result<(), CorrectionError> {
        if self.rows.len() + prepared.rows.len() > MAX_STATE_ROWS {
            self.write(settings).await?;
        }
        self.rows.extend(prepared.rows);
        self.records.push(prepared.record);
        self.letters.extend(prepared.letters);
        Ok(())
    }

    /// Adds the record of a check that found its day right, writing what is held once a
    /// thousand records wait.
    pub async fn checked(
        &mut self,
        settings: &CorrectorSettings,
        record: CorrectionRecord,
    ) -> Result<(), CorrectionError> {
        self.records.push(record);
        if self.records.len() >= 1_000 {
            self.write(settings).await?;
        }
        Ok(())
    }

    /// Writes everything held; returns the records written.
    pub async fn write(
        &mut self,
        settings: &CorrectorSettings,
    ) -> Result<Vec<CorrectionRecord>, CorrectionError> {
        let endpoint = &settings.endpoint;
        let rows = std::mem::take(&mut self.rows);
        // Every correction of a pass has the pass's epoch.
        if let Some(epoch) = self.records.iter().map(|r| r.epoch).find(|e| *e != 0) {
            write_corrections(endpoint, &rows, epoch)
                .await
                .map_err(store("writing the corrected window rows"))?;
        }
        let letters = std::mem::take(&mut self.letters);
        let records = std::mem::take(&mut self.records);
        if !letters.is_empty() {
            let addresses: Vec<(&str, i32, i64)> = letters
                .iter()
                .map(|(topic, partition, offset)| (topic.as_str(), *partition, *offset))
                .collect();
            let at = records.first().map_or(0, |r| r.checked_at_ms);
            endpoint
                .dlq_mark(&addresses, "backfilled", "counted by a correction", at)
                .await
                .map_err(store("marking the late dead letters counted"))?;
        }
        endpoint
            .record_checks(&records)
            .await
            .map_err(store("recording the checks"))?;
        Ok(records)
    }
}

/// The oldest day start (Unix s) the archive holds in full at `now_ms`: retention drops nothing
/// younger than `retention.archive_days`, and a day is whole when its start is that young.
pub fn oldest_whole_day(archive_days: u32, now_ms: u64) -> i64 {
    let now_s = (now_ms / 1000) as i64;
    let horizon = now_s - i64::from(archive_days) * DAY_S;
    // The first day starting at or after the horizon.
    (horizon + DAY_S - 1).div_euclid(DAY_S) * DAY_S
}

/// The rows a correction writes: every row the recomputation produced, and an empty row for
/// every live key of the day it did not (a key whose events all belong to another task, such
/// as the second copy of an event counted in two partitions), so no live value outlives it.
fn rows_to_write(
    flushes: Vec<salestalk_operators::flush::Flush>,
    live_keys: &[LiveKey],
    tenant: &str,
    day: i64,
) -> Vec<(String, StateRow)> {
    let mut rows: Vec<(String, StateRow)> = Vec::new();
    let mut written = BTreeSet::new();
    for flush in flushes {
        let task = task_name(&flush.topic, flush.partition);
        // Recomputed windows are the day's (the archive was read by window).
        let minutes: Vec<StateRow> = flush
            .rows
            .into_iter()
            .filter(|row| (day..day + DAY_S).contains(&row.window_start))
            .collect();
        let rollups = rollups_of(&minutes);
        for row in minutes.into_iter().chain(rollups) {
            written.insert(key_of(&task, &row));
            rows.push((task.clone(), row));
        }
    }
    for key in live_keys {
        let Some((family, span)) = parse_family_name(&key.family) else {
            continue;
        };
        let row = StateRow {
            family,
            span,
            window_start: i64::from(key.window_start),
            tenant_id: tenant.to_string(),
            dims: [key.d1.clone(), key.d2.clone(), key.d3.clone()],
            value: WindowValue::empty(family),
        };
        if written.contains(&key_of(&key.task, &row)) {
            continue;
        }
        rows.push((key.task.clone(), row));
    }
    rows
}

/// The hour and day rows of one task's minute rows, each the sum of its minutes: what sealing
/// writes once they are final (ADR 0023). A correction rewrites every span of the day, and
/// the task recomputing it holds minutes only.
fn rollups_of(minutes: &[StateRow]) -> Vec<StateRow> {
    let mut sums: BTreeMap<(Family, Span, i64, &str, &[String; 3]), WindowValue> = BTreeMap::new();
    for row in minutes.iter().filter(|row| row.span == Span::Minute) {
        for span in Span::ROLLUPS {
            let key = (
                row.family,
                span,
                span.start(row.window_start),
                row.tenant_id.as_str(),
                &row.dims,
            );
            sums.entry(key)
                .or_insert_with(|| WindowValue::empty(row.family))
                .add(&row.value);
        }
    }
    sums.into_iter()
        .map(
            |((family, span, window_start, tenant, dims), value)| StateRow {
                family,
                span,
                window_start,
                tenant_id: tenant.to_string(),
                dims: dims.clone(),
                value,
            },
        )
        .collect()
}

/// A written row's identity: the task and the key within it.
fn key_of(task: &str, row: &StateRow) -> (String, Family, Span, i64, [String; 3]) {
    (
        task.to_string(),
        row.family,
        row.span,
        row.window_start,
        row.dims.clone(),
    )
}

/// The events the rows count: the volume family's minute rows.
fn volume_total(rows: &[(String, StateRow)]) -> i64 {
    rows.iter()
        .filter(|(_, row)| row.family == Family::Volume && row.span == Span::Minute)
        .map(|(_, row)| row.value.ints.first().copied().unwrap_or(0))
        .sum()
}

/// The minute (Unix s) of an event's `timestamp`, if it has a readable one.
pub fn event_minute(raw: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Stamped<'a> {
        #[serde(borrow)]
        timestamp: &'a str,
    }
    let stamped: Stamped<'_> = serde_json::from_slice(raw).ok()?;
    let at = DateTime::parse_from_rfc3339(stamped.timestamp).ok()?;
    Some(salestalk_operators::time::minute_start(
        at.timestamp_millis(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use salestalk_operators::flush::{Checkpoint, Flush};

    fn row(family: Family, span: Span, window_start: i64, events: i64) -> StateRow {
        let mut value = WindowValue::empty(family);
        value.ints[0] = events;
        StateRow {
            family,
            span,
            window_start,
            tenant_id: "t".into(),
            dims: ["a.b.v1".into(), "svc".into(), String::new()],
            value,
        }
    }

    fn flush(partition: i32, rows: Vec<StateRow>) -> Flush {
        Flush {
            topic: "salestalk.tenant".into(),
            partition,
            checkpoint: Checkpoint::default(),
            rows,
            archive: Vec::new(),
            dead_letters: Vec::new(),
            messages: 0,
            duplicates: 0,
            seal: None,
        }
    }

    fn live(task: &str, family: &str, window_start: u32) -> LiveKey {
        LiveKey {
            family: family.into(),
            task: task.into(),
            window_start,
            d1: "a.b.v1".into(),
            d2: "svc".into(),
            d3: String::new(),
        }
    }

    #[test]
    fn a_live_key_the_recomputation_left_empty_is_written_empty() {
        let day = 20_000 * DAY_S;
        // Partition 1 counted an event partition 0 holds too: recomputed, it is 0's alone.
        // The recomputing task holds minutes; their hour and day are summed here.
        let recomputed = vec![flush(
            0,
            vec![row(Family::Volume, Span::Minute, day + 60, 2)],
        )];
        let live_keys = [
            live("salestalk.tenant/0", "volume", (day + 60) as u32),
            live("salestalk.tenant/0", "volume/day", day as u32),
            live("salestalk.tenant/1", "volume", (day + 60) as u32),
            live("salestalk.tenant/1", "volume/day", day as u32),
        ];
        let rows = rows_to_write(recomputed, &live_keys, "t", day);
        assert!(rows.iter().all(|(_, row)| row.tenant_id == "t"));
        let summary: Vec<(&str, Span, i64)> = rows
            .iter()
            .map(|(task, row)| (task.as_str(), row.span, row.value.ints[0]))
            .collect();
        assert_eq!(
            summary,
            [
                ("salestalk.tenant/0", Span::Minute, 2),
                ("salestalk.tenant/0", Span::Hour, 2),
                ("salestalk.tenant/0", Span::Day, 2),
                ("salestalk.tenant/1", Span::Minute, 0),
                ("salestalk.tenant/1", Span::Day, 0),
            ]
        );
        assert_eq!(volume_total(&rows), 2);
    }

    #[test]
    fn refusals_say_what_and_when() {
        let text = Refusal::NotFinal {
            task: "t/0".into(),
            open_from: Some(86_400),
        }
        .to_string();
        assert_eq!(
            text,
            "t/0 may still change windows from 1970-01-02T00:00:00+00:00 on"
        );
        assert!(
            Refusal::Expired { oldest_day: 0 }
                .to_string()
                .contains("from 1970-01-01T00:00:00+00:00 on")
        );
    }

    #[test]
    fn the_archive_holds_whole_days_from_the_first_after_its_horizon() {
        let now_ms = (20_000 * DAY_S + 3_600) as u64 * 1000;
        // 90 days before 01:00 is 01:00 of day 19,910: that day is partly gone.
        assert_eq!(oldest_whole_day(90, now_ms), 19_911 * DAY_S);
        let midnight = (20_000 * DAY_S) as u64 * 1000;
        assert_eq!(oldest_whole_day(90, midnight), 19_910 * DAY_S);
    }

    #[test]
    fn event_minutes_are_read_from_the_timestamp() {
        let raw = br#"{"eventId":"x","timestamp":"2025-11-09T00:01:59.999Z"}"#;
        assert_eq!(event_minute(raw), Some(1_762_646_460));
        assert_eq!(event_minute(b"not json"), None);
    }
}
