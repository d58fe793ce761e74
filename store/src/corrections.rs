//! Corrections of past days (ADR 0016): what the corrector reads to find the tenant-days whose
//! live numbers may be wrong. The record of every check and correction is the `corrections`
//! table (`tables::corrections`).
//!
//! A correction rewrites every window row of one tenant's UTC day, for every task that wrote
//! one, at an epoch of its own range (at and above `time::epoch::CORRECTION_EPOCH`). Live epochs count
//! restores in their high 32 bits, one per restore, so they never come near 2^63: a correction
//! outranks every live row of its keys in the views' `argMax`, whatever restores come after,
//! and no claim (ADR 0014) ever names its generation, so the views' fence never hides it.
//! Restores read only rows of their checkpoint's lineage, which never holds a correction.
//!
//! The evidence that a day needs a (new) correction, all cheap to read:
//! - live totals per tenant and day ([`Endpoint::live_day_volumes`], the volume view's day
//!   rows), which change only when a task writes the day;
//! - late arrivals per tenant and the day they belong to ([`Endpoint::late_arrivals`], the
//!   `late_arrivals` family, written in the same atomic insert as their checkpoint);
//! - once per day, the archive's distinct events per tenant (`Endpoint::archived_per_tenant`, in `tables::events_raw`),
//!   which differ from the live totals when copies of one event were counted in two partitions.

use clickhouse::Row;
use serde::Deserialize;

use crate::endpoint::{ClickHouseError, Endpoint};
use crate::tables::window_state::family_name;
use salestalk_operators::aggregate::Family;
use salestalk_operators::time::DAY_S;
use salestalk_operators::windows::Span;

/// The `window_state` family names a correction rewrites: every span of every family that
/// sums counted events (`Family::counts_events`).
pub fn corrected_families() -> Vec<String> {
    Family::ALL
        .into_iter()
        .filter(|family| family.counts_events())
        .flat_map(|family| Span::ALL.map(|span| family_name(family, span).to_string()))
        .collect()
}

/// A live window row's identity: which rows of a tenant's day a correction must cover.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Row, Deserialize)]
pub struct LiveKey {
    /// `window_state.family` (with its span suffix).
    pub family: String,
    /// The task that wrote it.
    pub task: String,
    /// Window start, Unix s.
    pub window_start: u32,
    /// First dimension.
    pub d1: String,
    /// Second dimension.
    pub d2: String,
    /// Third dimension.
    pub d3: String,
}

#[derive(Debug, Row, Deserialize)]
struct TenantDay {
    tenant_id: String,
    day_start: u32,
    total: i64,
}

/// A tenant's total for a day (Unix s of its start).
pub type DayTotals = Vec<(String, i64, i64)>;

impl Endpoint {
    /// Each tenant's live event total per day whose start is in `[since, until)` (Unix s):
    /// the volume view's day rows, fenced and with corrections applied.
    pub async fn live_day_volumes(
        &self,
        since: i64,
        until: i64,
    ) -> Result<DayTotals, ClickHouseError> {
        self.day_totals(
            "SELECT tenant_id, toUInt32(day_start) AS day_start, toInt64(sum(events)) AS total \
             FROM metrics_volume_daily WHERE day_start >= toDateTime(?) AND day_start < toDateTime(?) \
             GROUP BY tenant_id, day_start",
            since,
            until,
        )
        .await
    }

    /// Each tenant's late arrivals (the `late_arrivals` family) per day they belong to, for
    /// days starting in `[since, until)` (Unix s), whenever they arrived.
    pub async fn late_arrivals(
        &self,
        since: i64,
        until: i64,
    ) -> Result<DayTotals, ClickHouseError> {
        // They arrive after their day began, so rows of earlier arrival days hold none.
        self.day_totals(
            "SELECT tenant_id, day_of_event AS day_start, toInt64(sum(events)) AS total FROM \
             (SELECT tenant_id, toUInt32(intDiv(toUInt32(toDateTime(event_window, 'UTC')), 86400) * 86400) \
             AS day_of_event, events FROM metrics_late_arrivals_daily WHERE day_start >= toDateTime(?)) \
             WHERE day_of_event < ? GROUP BY tenant_id, day_of_event",
            since,
            until,
        )
        .await
        .map(|totals| {
            totals
                .into_iter()
                .filter(|(_, day, _)| *day >= since)
                .collect()
        })
    }

    async fn day_totals(
        &self,
        sql: &str,
        since: i64,
        until: i64,
    ) -> Result<DayTotals, ClickHouseError> {
        let rows: Vec<TenantDay> = self
            .query(sql)
            .bind(since.max(0))
            .bind(until.max(0))
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.tenant_id, i64::from(r.day_start), r.total))
            .collect())
    }

    /// Every window row key of `tenant`'s day starting at `day` (Unix s) in the families a
    /// correction rewrites, whoever wrote it (live tasks, zombies, earlier corrections).
    pub async fn live_keys(&self, tenant: &str, day: i64) -> Result<Vec<LiveKey>, ClickHouseError> {
        self.query(&format!(
            "SELECT DISTINCT family, task, toUInt32(window_start) AS window_start, d1, d2, d3 \
                 FROM {} WHERE has(CAST(? AS Array(String)), family) AND tenant_id = ? \
                 AND window_start >= toDateTime(?) AND window_start < toDateTime(?)",
            self.everywhere("window_state")
        ))
        .bind(corrected_families())
        .bind(tenant)
        .bind(day.max(0))
        .bind((day + DAY_S).max(0))
        .fetch_all()
        .await
    }

    /// What `tasks` hold of `tenant`'s day starting at `day` (Unix s): the events they counted
    /// (their volume minute rows of the day) and the late arrivals of the day they recorded,
    /// whenever those arrived (their `late_arrivals` minute rows, of events of that day);
    /// newest epoch each row. Minutes, not day rows: a task's day row exists only once the
    /// day is sealed (ADR 0023), and the minutes are always there.
    pub async fn totals_of_tasks(
        &self,
        tenant: &str,
        day: i64,
        tasks: &std::collections::BTreeSet<String>,
    ) -> Result<(i64, i64), ClickHouseError> {
        let tasks: Vec<&String> = tasks.iter().collect();
        self.query(&format!(
                "SELECT toInt64(sumIf(value, family = ?)), toInt64(sumIf(value, family = ?)) \
                 FROM (SELECT family, argMax(ints[1], epoch) AS value FROM {} \
                 WHERE has([?, ?], family) AND tenant_id = ? AND window_start >= toDateTime(?) \
                 AND has(CAST(? AS Array(String)), task) \
                 AND (family = ? AND window_start < toDateTime(?) OR family = ? AND startsWith(d2, ?)) \
                 GROUP BY family, task, window_start, d1, d2, d3)",
                self.everywhere("window_state")
            ))
            .bind(family_name(Family::Volume, Span::Minute))
            .bind(family_name(Family::LateArrivals, Span::Minute))
            .bind(family_name(Family::Volume, Span::Minute))
            .bind(family_name(Family::LateArrivals, Span::Minute))
            .bind(tenant)
            .bind(day.max(0))
            .bind(tasks)
            .bind(family_name(Family::Volume, Span::Minute))
            .bind((day + DAY_S).max(0))
            .bind(family_name(Family::LateArrivals, Span::Minute))
            // The late arrival's event window is written `YYYY-MM-DD hh:mm:ss`: its day first.
            .bind(salestalk_operators::aggregate::window_text(day).get(..10).unwrap_or_default())
            .fetch_one()
            .await
    }

    /// Every task that wrote a minute row of the day starting at `day` (Unix s), for any
    /// tenant.
    pub async fn tasks_of_day(&self, day: i64) -> Result<Vec<String>, ClickHouseError> {
        let minute_families: Vec<&str> = Family::ALL
            .into_iter()
            .filter(|family| family.counts_events())
            .map(|family| family_name(family, Span::Minute))
            .collect();
        self.query(&format!(
            "SELECT DISTINCT task FROM {} WHERE has(CAST(? AS Array(String)), family) \
                 AND window_start >= toDateTime(?) AND window_start < toDateTime(?)",
            self.everywhere("window_state")
        ))
        .bind(minute_families)
        .bind(day.max(0))
        .bind((day + DAY_S).max(0))
        .fetch_all()
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correction_rewrites_the_event_families_at_every_span_and_nothing_else() {
        let families = corrected_families();
        assert!(families.contains(&"cost/day".to_string()));
        assert!(families.contains(&"volume".to_string()));
        for arrival in [
            "latency",
            "publish/hour",
            "dead_letters/day",
            "late_arrivals",
        ] {
            assert!(!families.contains(&arrival.to_string()), "{arrival}");
        }
    }
}
