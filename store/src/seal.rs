//! Sealing a task's final hours and days from what is durable (ADR 0023, proposed): an hour's
//! rows are the sums of the hour's latest admitted minute rows, a day's the sums of its hours,
//! computed and written by the server (`INSERT … SELECT`) so the pipeline holds none of them.
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
use crate::tables::window_state::family_name;

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
    Some(format!(
        "SELECT '{name}' AS family, task, {window} AS start, tenant_id, d1, d2, d3,\n\
         sumForEach(ints) AS ints_sum, sumForEach(floats) AS floats_sum,\n\
         sumMap(hist_buckets, hist_counts) AS merged, merged.1 AS buckets, merged.2 AS counts\n\
         FROM ({latest})\n\
         GROUP BY task, start, tenant_id, d1, d2, d3",
        name = family_name(family, span),
        window = window_of(span, "window_start"),
        latest = latest_where(database, family, source, "window_start", filter),
    ))
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
    Some(format!(
        "INSERT INTO {database}.window_state \
         (family, task, epoch, window_start, tenant_id, d1, d2, d3, ints, floats, hist_buckets, hist_counts)\n\
         SELECT family, task, toUInt64({epoch}), start, tenant_id, d1, d2, d3, ints_sum, floats_sum, \
         buckets, counts\nFROM ({rows})"
    ))
}

impl Endpoint {
    /// Seals what `seal` names of `task`'s windows, every family, hours before days (a day is
    /// summed from its sealed hours), on this endpoint: the task's home writer. Idempotent:
    /// final minutes never change, so sealing again writes the same values, and the task
    /// records the seal only once this returned `Ok`.
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
    fn a_task_name_cannot_leave_its_literal() {
        assert_eq!(quoted("a'b\\c"), "'a\\'b\\\\c'");
        let sql = task_between("x' OR 1 = 1 --", 0, 3_600);
        assert!(sql.starts_with("task = 'x\\' OR 1 = 1 --' AND"), "{sql}");
    }
}
