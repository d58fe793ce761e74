//! The corrector: past days' numbers that stay right without a person (ADR 0016).
//!
//! The streaming tasks count an event in its window while the window is open; an event that
//! comes later is archived (marked late) instead, and copies of one event read from two
//! partitions (or from Kafka and Kinesis) are each counted by their own task. Both leave a
//! tenant's day wrong. Every `corrections.interval_ms`, the instance that leads corrections
//! (the owner of the first topic's partition 0, or Kinesis instance 0) checks the past days:
//!
//! - a day never checked: its live total against the archive's
//!   distinct events ([`salestalk_store::corrections`]); equal and without late arrivals, it
//!   is recorded as checked; otherwise corrected;
//! - a day checked before: corrected again when late arrivals or its live total changed since,
//!   or when a partition it had to leave out (one that may still write the day: a quiet
//!   partition holds its watermark back) is past the day now.
//!
//! A correction ([`day::DayCorrection`]) recomputes the tenant's day from the archive (each
//! event once, whichever partition it came from) with the pipeline's own operators and writes
//! every row of it at a correction epoch, which outranks every live row for good. The same
//! code serves `salestalk replay run --backfill`.

pub mod day;
mod error;
pub mod recompute;
mod settings;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::store;
use salestalk_operators::time::DAY_S;
use salestalk_store::tables::corrections::CorrectionRecord;

use self::day::{Before, Corrections, DayCorrection, OpenFrom, Refusal, Trigger};
pub use self::error::CorrectionError;
pub use self::settings::{CorrectionSettings, CorrectorSettings};

/// What one pass over the past days did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Tenant-days corrected, with what each correction recorded (the last of them written
    /// when the pass ends; a pass stopped short leaves days for the next).
    pub corrected: Vec<CorrectionRecord>,
    /// Tenant-days checked and found right.
    pub unchanged: usize,
    /// Tenant-days that need a correction but are not final for every task yet.
    pub waiting: usize,
}

/// A tenant's day (Unix s of its start).
type TenantDay = (String, i64);

/// Checks every past day that may need it and corrects those that do, as of `now_ms`.
pub async fn pass(settings: &CorrectorSettings, now_ms: u64) -> Result<Pass, CorrectionError> {
    let endpoint = &settings.endpoint;
    let today = ((now_ms / 1000) as i64).div_euclid(DAY_S) * DAY_S;
    // Late arrivals and changed days are looked for as far back as the archive holds whole
    // days; days are checked the first time within the horizon (and a day more: the horizon
    // counts from broker time, not from midnight).
    let oldest = day::oldest_whole_day(settings.archive_days, now_ms);
    let first_checks_from = today - (settings.corrections.horizon_ms / 1000 / DAY_S + 2) * DAY_S;
    let live = totals(endpoint.live_day_volumes(oldest, today).await?);
    let arrivals = totals(endpoint.late_arrivals(oldest, today).await?);
    let checks: BTreeMap<TenantDay, CorrectionRecord> = endpoint
        .latest_checks(oldest, today)
        .await?
        .into_iter()
        .map(|check| {
            (
                (check.tenant_id.clone(), i64::from(check.day) * DAY_S),
                check,
            )
        })
        .collect();
    let candidates: BTreeSet<TenantDay> = live.keys().chain(arrivals.keys()).cloned().collect();
    let open_from = open_from(settings).await?;
    let mut archived: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    let mut done = Pass::default();
    let mut held = Corrections::default();
    for (tenant, day) in candidates {
        let key = (tenant.clone(), day);
        let before = Before::new(
            live.get(&key).copied().unwrap_or(0),
            arrivals.get(&key).copied().unwrap_or(0),
            checks.get(&key),
        );
        let end = day + DAY_S;
        let trigger = match checks.get(&key) {
            Some(check) if before.late_arrivals != check.late_arrivals_seen => Trigger::LateEvents,
            Some(check) if before.live != check.events => Trigger::LiveChanged,
            Some(check)
                if check
                    .waiting_tasks
                    .iter()
                    .any(|task| open_from.get(task).is_some_and(|open| *open >= end)) =>
            {
                Trigger::NowFinal
            }
            Some(_) => continue,
            None if day < first_checks_from => continue,
            None => Trigger::FirstCheck,
        };
        let new_late = before.late_arrivals > before.late_arrivals_seen;
        if matches!(trigger, Trigger::FirstCheck | Trigger::LiveChanged) && !new_late {
            // Without late events to count, only copies counted twice (or a write after the
            // last correction) can make the day wrong, and the archive holds each event once:
            // a day whose live total equals it is right, and is checked again if it moves.
            if let std::collections::btree_map::Entry::Vacant(entry) = archived.entry(day) {
                entry.insert(
                    endpoint
                        .archived_per_tenant(day)
                        .await?
                        .into_iter()
                        .collect(),
                );
            }
            let in_archive = archived
                .get(&day)
                .and_then(|per_tenant| per_tenant.get(&tenant))
                .copied()
                .unwrap_or(0);
            if in_archive == before.live {
                held.checked(settings, unchanged(&tenant, day, trigger, before, now_ms))
                    .await?;
                done.unchanged += 1;
                continue;
            }
        }
        let correction = DayCorrection {
            settings,
            tenant: &tenant,
            day,
            trigger,
            before,
        };
        match correction.prepare(&open_from, now_ms, false).await? {
            Ok(prepared) => {
                let record = &prepared.record;
                tracing::info!(
                    tenant = %record.tenant_id,
                    day = %date(day),
                    trigger = %record.trigger,
                    before = record.live_before,
                    events = record.events,
                    late_events = record.late_events,
                    duplicates_removed = record.duplicates_removed,
                    rows = record.rows_written,
                    waiting = ?record.waiting_tasks,
                    "corrected a past day"
                );
                if !record.waiting_tasks.is_empty() {
                    done.waiting += 1;
                }
                held.add(settings, prepared).await?;
            }
            Err(Refusal::NotFinal { .. }) => done.waiting += 1,
            Err(refusal @ Refusal::Expired { .. }) => {
                tracing::warn!(%tenant, day = %date(day), %refusal, "a day can no longer be corrected");
            }
        }
    }
    done.corrected = held
        .write(settings)
        .await?
        .into_iter()
        .filter(|record| record.epoch != 0)
        .collect();
    Ok(done)
}

/// The record of a check that found the day right.
fn unchanged(
    tenant: &str,
    day: i64,
    trigger: Trigger,
    before: Before,
    now_ms: u64,
) -> CorrectionRecord {
    CorrectionRecord {
        tenant_id: tenant.to_string(),
        day: (day / DAY_S).clamp(0, i64::from(u16::MAX)) as u16,
        checked_at_ms: now_ms,
        epoch: 0,
        trigger: trigger.as_str().to_string(),
        live_before: before.live,
        events: before.live,
        late_events: 0,
        duplicates_removed: before.duplicates_removed,
        late_arrivals_seen: before.late_arrivals,
        late_arrivals_counted: before.late_arrivals,
        rows_written: 0,
        waiting_tasks: Vec::new(),
    }
}

/// Each task's first window it may still write a row of (Unix s), from its newest
/// checkpoint: its open minutes, or a day whose seal has not landed yet.
pub async fn open_from(settings: &CorrectorSettings) -> Result<OpenFrom, CorrectionError> {
    let lateness = settings.task.allowed_lateness_ms;
    Ok(settings
        .endpoint
        .checkpoints()
        .await
        .map_err(store("reading the tasks' checkpoints"))?
        .into_iter()
        .map(|(task, checkpoint, _)| (task, checkpoint.first_unsettled_window(lateness)))
        .collect())
}

fn totals(rows: Vec<(String, i64, i64)>) -> BTreeMap<TenantDay, i64> {
    rows.into_iter()
        .map(|(tenant, day, total)| ((tenant, day), total))
        .collect()
}

fn date(day: i64) -> String {
    chrono::DateTime::from_timestamp(day, 0)
        .map_or_else(|| day.to_string(), |t| t.date_naive().to_string())
}

/// Who leads corrections: set by the runtime as partitions come and go.
#[derive(Debug, Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    /// Whether this instance corrects now.
    pub fn leads(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets whether it does.
    pub fn set(&self, leads: bool) {
        let was = self.0.swap(leads, Ordering::Relaxed);
        if was != leads {
            tracing::info!(leads, "corrections of past days");
        }
    }
}

/// Hears how each scheduled pass ended (the binary counts them on `/metrics`).
pub trait CorrectionObserver: Send + Sync + 'static {
    /// A pass ended with `pass`.
    fn passed(&self, pass: &Pass);
    /// A pass failed; the next one tries again.
    fn failed(&self);
}

/// Runs a [`pass`] every `corrections.interval_ms` while this instance leads (never when the
/// interval is 0), telling `observer` how each ended. A pass cut short by a crash or a stop is
/// made again by the next: a correction writes its rows before its record, and the same day
/// recomputed again gives the same rows.
pub fn schedule(
    settings: CorrectorSettings,
    leadership: Leadership,
    observer: Arc<dyn CorrectionObserver>,
) {
    if !settings.corrections.scheduled() {
        return;
    }
    let interval = Duration::from_millis(settings.corrections.interval_ms);
    tokio::spawn(async move {
        // The first pass once the partitions are assigned (leadership known).
        tokio::time::sleep(interval.min(Duration::from_secs(5))).await;
        loop {
            if leadership.leads() {
                let now_ms = salestalk_operators::time::now_ms();
                match pass(&settings, now_ms).await {
                    Ok(done) => observer.passed(&done),
                    Err(error) => {
                        // The next pass tries again: nothing is half-recorded.
                        tracing::warn!(error = format!("{error:#}"), "correcting past days");
                        observer.failed();
                    }
                }
            }
            tokio::time::sleep(interval).await;
        }
    });
}
