//! Sealing a task's final hours and days from what is durable (ADR 0023): an hour's
//! rows are the sums of the hour's latest admitted minute rows, a day's the sums of its hours,
//! computed and written by the server (`INSERT … SELECT`) so the pipeline holds none of them.
//! The open day's sealed hours are also summed into one day-so-far row per key, so the daily
//! views read today as one row per key plus the minutes after the seal.
//! Read through the same fenced `latest` SQL as the views, so a seal counts exactly what the
//! views count.
//!
//! The runtime seals a task's windows once the flush that made them final has landed
//! (`pipeline::run::durable`), and the task's next checkpoint records it; the rollup views
//! read sealed rows up to each task's seal (`schema::views::sealed_union`). The task itself
//! holds minutes only.

use salestalk_operators::aggregate::Family;
use salestalk_operators::flush::Seal;
use salestalk_operators::windows::Span;

use crate::endpoint::{ClickHouseError, Endpoint};
use crate::schema::views::{latest_where, window_of};
use crate::tables::window_state::{day_so_far_name, family_name};

/// The span a seal of `span` sums (minutes for an hour, hours for a day); `None` for minutes,
/// which the task itself writes.
pub const fn sealed_from(span: Span) -> Option<Span> {
    match span {
        Span::Minute => None,
        Span::Hour => Some(Span::Minute),
        Span::Day => Some(Span::Hour),
    }
}

/// The rows a seal of `family`'s `span` windows would write, one per task, window and key,
/// among the rows of the finer span passing `filter` (a condition on `window_state`'s columns;
/// empty for all). Columns: `family`, `task`, `start`, `tenant_id`, `d1`, `d2`, `d3`,
/// `ints_sum`, `floats_sum`, `buckets`, `counts`. `None` for minutes.
///
/// Counters and sums add element by element (`sumForEach`: a row stored before a family gained
/// a counter is shorter, and counts as zero there), histograms bucket by bucket (`sumMap`, the
/// same merge the views do, ADR 0010).
pub fn sealed_rows_sql(database: &str, family: Family, span: Span, filter: &str) -> Option<String> {
    let source = sealed_from(span)?;
    Some(summed_rows_sql(
        family_name(family, span),
        &window_of(span, "window_start"),
        &latest_where(database, family, source, "window_start", filter),
    ))
}

/// The day-so-far rows a seal of hours up to `to` (Unix s) writes for `family` (ADR 0023):
/// per task and key, the sum of the sealed hour rows of `to`'s day before `to` passing
/// `filter`, stored at `window_start` = `to`. Columns as [`sealed_rows_sql`].
pub fn day_so_far_rows_sql(database: &str, family: Family, to: i64, filter: &str) -> String {
    let hours = format!(
        "window_start >= toDateTime({}, 'UTC') AND window_start < toDateTime({to}, 'UTC')",
        Span::Day.start(to)
    );
    let filter = if filter.is_empty() {
        hours
    } else {
        format!("{hours} AND ({filter})")
    };
    summed_rows_sql(
        &day_so_far_name(family),
        &format!("toDateTime({to}, 'UTC')"),
        &latest_where(database, family, Span::Hour, "window_start", &filter),
    )
}

/// The rows of `latest` summed per task, key and window `start` (an expression), under
/// family name `name`.
fn summed_rows_sql(name: &str, start: &str, latest: &str) -> String {
    format!(
        "SELECT '{name}' AS family, task, {start} AS start, tenant_id, d1, d2, d3,\n\
         sumForEach(ints) AS ints_sum, sumForEach(floats) AS floats_sum,\n\
         sumMap(hist_buckets, hist_counts) AS merged, merged.1 AS buckets, merged.2 AS counts\n\
         FROM ({latest})\n\
         GROUP BY task, start, tenant_id, d1, d2, d3"
    )
}

/// The condition on `window_state` that picks one task's rows from `from` to `to` (Unix s,
/// half-open). Binds nothing: the task name is quoted here.
fn task_between(task: &str, from: i64, to: i64) -> String {
    format!(
        "task = {} AND window_start >= toDateTime({from}, 'UTC') \
         AND window_start < toDateTime({to}, 'UTC')",
        quoted(task)
    )
}

/// `INSERT` of `rows` (columns as [`sealed_rows_sql`]) into `window_state` under `epoch`.
fn insert_sql(database: &str, rows: &str, epoch: u64) -> String {
    format!(
        "INSERT INTO {database}.window_state \
         (family, task, epoch, window_start, tenant_id, d1, d2, d3, ints, floats, hist_buckets, hist_counts)\n\
         SELECT family, task, toUInt64({epoch}), start, tenant_id, d1, d2, d3, ints_sum, floats_sum, \
         buckets, counts\nFROM ({rows})"
    )
}

/// `text` as a ClickHouse string literal.
fn quoted(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '\\') {
            literal.push('\\');
        }
        literal.push(c);
    }
    literal.push('\'');
    literal
}

/// The statement that seals `task`'s `span` windows of `family` starting from `from` to `to`
/// (Unix s, half-open, whole windows): their rows written under `epoch`, the epoch of the
/// task's flush that made them final, so the fences treat them as they treat that flush's
/// rows. `None` for minutes.
pub fn seal_sql(
    database: &str,
    family: Family,
    span: Span,
    task: &str,
    (from, to): (i64, i64),
    epoch: u64,
) -> Option<String> {
    let rows = sealed_rows_sql(database, family, span, &task_between(task, from, to))?;
    Some(insert_sql(database, &rows, epoch))
}

/// The statement that writes `task`'s day-so-far rows of `family` at `to` (Unix s, an hour
/// inside a day: at a day's start there is nothing to sum) under `epoch`, from its sealed
/// hours: after the hours up to `to` are sealed.
pub fn day_so_far_sql(database: &str, family: Family, task: &str, to: i64, epoch: u64) -> String {
    let rows = day_so_far_rows_sql(database, family, to, &format!("task = {}", quoted(task)));
    insert_sql(database, &rows, epoch)
}

impl Endpoint {
    /// Seals what `seal` names of `task`'s windows, every family, hours before days (a day is
    /// summed from its sealed hours), then sums the open day's sealed hours into its
    /// day-so-far rows, on this endpoint: the task's home writer. Idempotent: final minutes
    /// never change, so sealing again writes the same values, and the task records the seal
    /// (and the day-so-far rows with it) only once this returned `Ok`.
    pub async fn seal(&self, task: &str, seal: &Seal, epoch: u64) -> Result<(), ClickHouseError> {
        for (span, range) in [(Span::Hour, seal.hours), (Span::Day, seal.days)] {
            if range.0 >= range.1 {
                continue;
            }
            for family in Family::ALL {
                if let Some(sql) = seal_sql(&self.database, family, span, task, range, epoch) {
                    self.query(&sql).execute().await?;
                }
            }
        }
        // Written even when no hour was sealed now: a checkpoint stored before these rows
        // existed may mark hours of the open day that no row sums yet.
        let to = seal.hours.1;
        if Span::Day.start(to) != to {
            for family in Family::ALL {
                let sql = day_so_far_sql(&self.database, family, task, to, epoch);
                self.query(&sql).execute().await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_sealed_from_minutes_and_a_day_from_hours() {
        assert_eq!(sealed_from(Span::Minute), None);
        assert_eq!(sealed_from(Span::Hour), Some(Span::Minute));
        assert_eq!(sealed_from(Span::Day), Some(Span::Hour));
        let sql =
            seal_sql("db", Family::Cost, Span::Day, "t/1", (86_400, 172_800), 7).expect("a day");
        assert!(sql.contains("'cost/day' AS family"), "{sql}");
        assert!(sql.contains("family = 'cost/hour'"), "{sql}");
        assert!(sql.contains("toStartOfDay(window_start) AS start"), "{sql}");
        assert!(
            sql.contains("window_start < toDateTime(172800, 'UTC')"),
            "{sql}"
        );
        assert!(seal_sql("db", Family::Cost, Span::Minute, "t/1", (0, 60), 7).is_none());
    }

    #[test]
    fn a_day_so_far_row_sums_the_day_s_sealed_hours_before_its_start() {
        let to = 86_400 + 5 * 3_600;
        let sql = day_so_far_sql("db", Family::Cost, "t/1", to, 7);
        assert!(sql.contains("'cost/day_so_far' AS family"), "{sql}");
        assert!(sql.contains("family = 'cost/hour'"), "{sql}");
        assert!(
            sql.contains(&format!("toDateTime({to}, 'UTC') AS start")),
            "{sql}"
        );
        assert!(
            sql.contains("window_start >= toDateTime(86400, 'UTC')"),
            "{sql}"
        );
        assert!(
            sql.contains(&format!("window_start < toDateTime({to}, 'UTC')")),
            "{sql}"
        );
        assert!(sql.contains("task = 't/1'"), "{sql}");
    }

    #[test]
    fn a_task_name_cannot_leave_its_literal() {
        assert_eq!(quoted("a'b\\c"), "'a\\'b\\\\c'");
        let sql = task_between("x' OR 1 = 1 --", 0, 3_600);
        assert!(sql.starts_with("task = 'x\\' OR 1 = 1 --' AND"), "{sql}");
    }
}
