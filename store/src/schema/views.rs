//! The public views: one per metric family and span, generated from the family's layout and
//! fenced against stalled former owners (ADR 0014), and the views over several tables
//! (publish success, processing latency, consumer outcomes and lag) that the dashboards,
//! alerts and billing read. Views hold no data: `migrate` drops and creates them all each run.

use salestalk_operators::aggregate::Family;
use salestalk_operators::time::epoch::generation_sql;
use salestalk_operators::windows::Span;

use super::histogram_sql::quantile_sql;
use crate::tables::ingest_outcomes::IngestOutcome;
use crate::tables::task_lineage;
use crate::tables::window_state::{CHECKPOINT_FAMILY, family_name};

/// The latest revision (highest epoch) of every row of `family` at `span`: what every view
/// reads. This is `argMax ... GROUP BY` rather than `FINAL` although `FINAL` reads about ten
/// times faster, because ClickHouse 18.16 pushes a query's filters into a grouped subquery but
/// never into a `FINAL` one: behind a view, `FINAL` reads every row of the family whatever
/// the range asked for (measured: a one-hour panel read the whole month). The time column is
/// named `time` where the table is read, not in the view around it: ClickHouse 18.16 pushes a
/// filter on `hour` down only as far as the level that names it, and it must reach the table.
///
/// Rows a fenced-off owner wrote (ADR 0014) are left out: only rows of the lineage of the
/// task's newest confirmed claim count (`tables::task_lineage`), as a restore of that claim
/// counted them. Highest-epoch-wins alone hides a stalled owner's row only where the
/// successor writes the same key, and processing-time windows (latency) are keys a successor
/// replaying the same events never writes again. The rows meet their fence in an equi-join on
/// (task, generation), `generation` a column of the joined subquery (newer servers resolve
/// `USING` only there): ClickHouse 18.16 fails to analyse a lambda over a row's column once
/// it has pushed a view's filter down ("Unknown identifier"), and constant arrays looked up
/// with `transform` cost a dashboard more (two scalar subqueries per read).
fn latest(database: &str, family: Family, span: Span, time: &str) -> String {
    latest_where(database, family, span, time, "")
}

/// [`latest`] of the rows that also pass `filter` (a condition on `window_state`'s columns,
/// applied where the table is read; empty for none): a seal reads one task's window this way.
pub fn latest_where(
    database: &str,
    family: Family,
    span: Span,
    time: &str,
    filter: &str,
) -> String {
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!(" AND ({filter})")
    };
    let time_column = if time == "window_start" {
        time.to_string()
    } else {
        format!("window_start AS {time}")
    };
    format!(
        "SELECT {time}, tenant_id, d1, d2, d3, task,\n\
         argMax(ints, epoch) AS ints, argMax(floats, epoch) AS floats,\n\
         argMax(hist_buckets, epoch) AS hist_buckets, argMax(hist_counts, epoch) AS hist_counts\n\
         FROM (SELECT {time_column}, tenant_id, d1, d2, d3, task, epoch, ints, floats,\n\
         hist_buckets, hist_counts, {generation} AS generation\n\
         FROM {database}.window_state WHERE family = '{}'{filter}) AS state\n\
         ANY LEFT JOIN ({fences}) AS fence USING (task, generation)\n\
         WHERE fenced = 0 OR epoch <= admitted_to\n\
         GROUP BY {time}, tenant_id, d1, d2, d3, task",
        family_name(family, span),
        generation = generation_sql("epoch"),
        fences = fences(database),
    )
}

/// [`latest`] of `family`'s rows at `span`, each also placed in the coarser window `time`
/// (named where the table is read, from `window_start` by `bucket`, so a view's filter on
/// `time` reaches the table and prunes by its key), among the rows passing `filter`.
/// Columns: `time`, `window_start`, `tenant_id`, `d1`-`d3`, `task`, then the values.
fn latest_in(
    database: &str,
    family: Family,
    span: Span,
    (time, bucket): (&str, &str),
    filter: &str,
) -> String {
    format!(
        "SELECT {time}, window_start, tenant_id, d1, d2, d3, task,\n\
         argMax(ints, epoch) AS ints, argMax(floats, epoch) AS floats,\n\
         argMax(hist_buckets, epoch) AS hist_buckets, argMax(hist_counts, epoch) AS hist_counts\n\
         FROM (SELECT {bucket} AS {time}, window_start, tenant_id, d1, d2, d3, task, epoch, ints,\n\
         floats, hist_buckets, hist_counts, {generation} AS generation\n\
         FROM {database}.window_state WHERE family = '{}' AND ({filter})) AS state\n\
         ANY LEFT JOIN ({fences}) AS fence USING (task, generation)\n\
         WHERE fenced = 0 OR epoch <= admitted_to\n\
         GROUP BY {time}, window_start, tenant_id, d1, d2, d3, task",
        family_name(family, span),
        generation = generation_sql("epoch"),
        fences = fences(database),
    )
}

/// How far each task's hours and days are sealed (ADR 0023): `sealed_hours` and
/// `sealed_days` (Unix s) from its newest admitted checkpoint. A checkpoint stored before
/// sealing existed counts as sealed throughout: its task wrote every rollup row itself.
fn seal_marks(database: &str) -> String {
    let mark = |at: usize| {
        format!(
            "if(length(ints) >= {at} AND ints[{at}] != {}, ints[{at}], toInt64({}))",
            i64::MIN,
            i64::MAX
        )
    };
    format!(
        "SELECT task, argMax(hours, epoch) AS sealed_hours, argMax(days, epoch) AS sealed_days\n\
         FROM (SELECT task, epoch, {hours} AS hours, {days} AS days, {generation} AS generation\n\
         FROM {database}.window_state WHERE family = '{CHECKPOINT_FAMILY}') AS state\n\
         ANY LEFT JOIN ({fences}) AS fence USING (task, generation)\n\
         WHERE fenced = 0 OR epoch <= admitted_to GROUP BY task",
        hours = mark(5),
        days = mark(6),
        generation = generation_sql("epoch"),
        fences = fences(database),
    )
}

/// The start of the `span` window holding `column` (a `DateTime('UTC')`), as ClickHouse
/// computes it.
pub(crate) fn window_of(span: Span, column: &str) -> String {
    match span {
        Span::Minute => column.to_string(),
        Span::Hour => format!("toStartOfHour({column})"),
        Span::Day => format!("toStartOfDay({column})"),
    }
}

/// The rows of a rollup view (`span` an hour or a day), one per window, key and task, in
/// [`latest`]'s columns (ADR 0023): where a task has sealed, its sealed rows; after that, the
/// finer rows not sealed yet, summed into the window. Each branch is bounded below by the
/// smallest seal of any task (a constant by the time the table is read), so a long range
/// does not read its minutes.
pub fn sealed_union(database: &str, family: Family, span: Span) -> String {
    let time = family_view_name(family, span).1;
    let marks = seal_marks(database);
    let at = |column: &str| format!("toInt64(toUInt32({column}))");
    let since = |mark: &str| {
        format!(
            "window_start >= toDateTime(least(greatest((SELECT min({mark}) FROM ({marks})), 0), 4294967295))"
        )
    };
    let summed = |source: Span, condition: String, floor: &str| {
        format!(
            "SELECT {time}, tenant_id, d1, d2, d3, task, sumForEach(ints) AS ints_sum,\n\
             sumForEach(floats) AS floats_sum,\n\
             (sumMap(hist_buckets, hist_counts) AS merged).1 AS buckets, merged.2 AS counts\n\
             FROM ({}) AS window_rows ANY LEFT JOIN ({marks}) AS marks USING task\n\
             WHERE {condition}\n\
             GROUP BY {time}, tenant_id, d1, d2, d3, task",
            latest_in(
                database,
                family,
                source,
                (time, &window_of(span, "window_start")),
                &since(floor)
            ),
        )
    };
    let sealed = format!(
        "SELECT {time}, tenant_id, d1, d2, d3, task, ints, floats, hist_buckets, hist_counts\n\
         FROM ({}) AS window_rows ANY LEFT JOIN ({marks}) AS marks USING task\n\
         WHERE {} < sealed_{}",
        latest(database, family, span, time),
        at(time),
        if span == Span::Day { "days" } else { "hours" },
    );
    // The minutes of the hours not sealed yet (and so of days not sealed either).
    let minutes = summed(
        Span::Minute,
        format!("{} >= sealed_hours", at("window_start")),
        "sealed_hours",
    );
    let mut branches = vec![sealed];
    if span == Span::Day {
        // The sealed hours of the days not sealed yet.
        branches.push(summed(
            Span::Hour,
            format!(
                "{} < sealed_hours AND {} >= sealed_days",
                at("window_start"),
                at(time)
            ),
            "sealed_days",
        ));
    }
    branches.push(minutes);
    branches.join("\nUNION ALL\n")
}

/// The right side of [`latest`]'s join (`tables::task_lineage`), built at every read.
fn fences(database: &str) -> String {
    task_lineage::fences_sql(database, &generation_sql("b"))
}

/// The view of a family's rows of `span` and its time column: `metrics_<family>`
/// (`window_start`), `metrics_<family>_hourly` (`hour`) or `metrics_<family>_daily`
/// (`day_start`, with the UTC date beside it as `day`).
pub fn family_view_name(family: Family, span: Span) -> (String, &'static str) {
    let name = family.layout().name;
    match span {
        Span::Minute => (format!("metrics_{name}"), "window_start"),
        Span::Hour => (format!("metrics_{name}_hourly"), "hour"),
        Span::Day => (format!("metrics_{name}_daily"), "day_start"),
    }
}

/// The view of `family` at `span` (see [`family_view_name`]): one row per window, tenant and
/// dimensions, summed over tasks, with a named column per counter, sum and histogram.
fn family_view(database: &str, family: Family, span: Span) -> String {
    let layout = family.layout();
    let (name, time) = family_view_name(family, span);
    let mut columns = vec![time.to_string()];
    let mut group = vec![time.to_string()];
    if span == Span::Day {
        columns.push(format!("toDate({time}) AS day"));
        group.push("day".to_string());
    }
    columns.push("tenant_id".to_string());
    group.push("tenant_id".to_string());
    for (i, dim) in layout
        .dims
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.is_empty())
    {
        columns.push(format!("d{} AS {dim}", i + 1));
        group.push(dim.to_string());
    }
    for (i, name) in layout.ints.iter().enumerate() {
        columns.push(format!("sum(ints[{}]) AS {name}", i + 1));
    }
    for (i, name) in layout.floats.iter().enumerate() {
        columns.push(format!("sum(floats[{}]) AS {name}", i + 1));
    }
    if let Some(name) = layout.histogram {
        columns.push(format!(
            "sumMap(hist_buckets, hist_counts) AS {name}_histogram"
        ));
    }
    format!(
        "CREATE VIEW {database}.{name} AS\nSELECT {}\nFROM ({})\nGROUP BY {}",
        columns.join(", "),
        match span {
            Span::Minute => latest(database, family, span, time),
            Span::Hour | Span::Day => sealed_union(database, family, span),
        },
        group.join(", ")
    )
}

/// Suffixes of the rollup views every family has besides its minute view.
pub const ROLLUP_SUFFIXES: [&str; 2] = ["hourly", "daily"];

/// Every view, dropped and created again (views hold no data, so `migrate` recreates them
/// all each time and a changed definition needs no migration).
pub fn views(database: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut create = |name: &str, sql: String| {
        statements.push(format!("DROP TABLE IF EXISTS {database}.{name}"));
        statements.push(sql);
    };
    for family in Family::ALL {
        for span in Span::ALL {
            create(
                &family_view_name(family, span).0,
                family_view(database, family, span),
            );
        }
    }
    let usd = |nanos: &str| {
        format!(
            "toDecimal64(intDiv({nanos}, 1000000000), 9) + toDecimal64({nanos} % 1000000000, 9) / 1000000000"
        )
    };
    create(
        "event_volume",
        format!(
            "CREATE VIEW {database}.event_volume AS\n\
             SELECT window_start, tenant_id, event_type, source, toUInt64(events) AS events\n\
             FROM {database}.metrics_volume"
        ),
    );
    create(
        "tenant_cost_daily",
        format!(
            "CREATE VIEW {database}.tenant_cost_daily AS\n\
             SELECT day, tenant_id, event_type, model, {} AS cost_usd, cost_nanos,\n\
             prompt_tokens, completion_tokens, total_tokens, messages\n\
             FROM (SELECT day, tenant_id, event_type, model,\n\
             sum(cost_nanos) AS cost_nanos, toUInt64(sum(prompt_tokens)) AS prompt_tokens,\n\
             toUInt64(sum(completion_tokens)) AS completion_tokens,\n\
             toUInt64(sum(total_tokens)) AS total_tokens, toUInt64(sum(messages)) AS messages\n\
             FROM {database}.metrics_cost_daily GROUP BY day, tenant_id, event_type, model)",
            usd("cost_nanos")
        ),
    );
    create(
        "tenant_cost_reconciliation",
        format!(
            "CREATE VIEW {database}.tenant_cost_reconciliation AS\n\
             SELECT day, tenant_id, message_cost_nanos, conversation_total_nanos,\n\
             conversation_total_nanos - message_cost_nanos AS difference_nanos,\n\
             {} AS message_cost_usd, {} AS conversation_total_usd, {} AS difference_usd\n\
             FROM (SELECT day, tenant_id, sum(message_nanos) AS message_cost_nanos,\n\
             sum(conversation_nanos) AS conversation_total_nanos FROM (\n\
             SELECT day, tenant_id, toInt64(cost_nanos) AS message_nanos, toInt64(0) AS conversation_nanos\n\
             FROM {database}.metrics_cost_daily\n\
             UNION ALL SELECT day, tenant_id, toInt64(0), toInt64(total_cost_nanos)\n\
             FROM {database}.metrics_engagement_daily)\n\
             GROUP BY day, tenant_id)",
            usd("message_cost_nanos"),
            usd("conversation_total_nanos"),
            usd("(conversation_total_nanos - message_cost_nanos)")
        ),
    );
    create(
        "intents_per_tenant",
        format!(
            "CREATE VIEW {database}.intents_per_tenant AS\n\
             SELECT window_start, tenant_id, intent, subject, measure,\n\
             toUInt64(classifications) AS classifications,\n\
             confidence_sum / classifications AS avg_confidence,\n\
             toUInt64(low_confidence) AS low_confidence\n\
             FROM {database}.metrics_intents"
        ),
    );
    create(
        "processing_latency",
        format!(
            "CREATE VIEW {database}.processing_latency AS\n\
             SELECT window_start, tenant_id, event_type, consumer, events, buckets, counts,\n\
             {} AS p50_ms, {} AS p95_ms, {} AS p99_ms\n\
             FROM ({})",
            // Through the aliases: ClickHouse 18.16 stores `arrayElement(h.1, i)` as `h.1[i]`,
            // which its own parser rejects when the server restarts and reloads the view.
            quantile_sql("buckets", "counts", 0.5),
            quantile_sql("buckets", "counts", 0.95),
            quantile_sql("buckets", "counts", 0.99),
            latency_sources_sql(
                &format!("{database}.metrics_latency"),
                &format!("{database}.delivery_latency"),
                "1"
            ),
        ),
    );
    create(
        "dead_letter_queue",
        format!(
            "CREATE VIEW {database}.dead_letter_queue AS\n\
             SELECT topic, partition, offset, broker_time, reason, error, tenant_id, event_type,\n\
             event_id, correlation_id, attempts, first_failure, last_failure, bytes,\n\
             if(action = '', if(reason = 'rejected_at_ingest', 'answered', 'pending'), action) AS status,\n\
             resolved_at, resolution_note\n\
             FROM (SELECT topic, partition, offset, argMax(broker_time, written_at_ms) AS broker_time,\n\
             argMax(reason, written_at_ms) AS reason, argMax(error, written_at_ms) AS error,\n\
             argMax(tenant_id, written_at_ms) AS tenant_id, argMax(event_type, written_at_ms) AS event_type,\n\
             argMax(event_id, written_at_ms) AS event_id,\n\
             argMax(correlation_id, written_at_ms) AS correlation_id, max(attempts) AS attempts,\n\
             min(first_failure) AS first_failure, max(last_failure) AS last_failure,\n\
             toUInt64(argMax(length(raw), written_at_ms)) AS bytes\n\
             FROM {database}.dead_letters GROUP BY topic, partition, offset) AS letters\n\
             ANY LEFT JOIN (SELECT topic, partition, offset, argMax(action, acted_at_ms) AS action,\n\
             max(acted_at) AS resolved_at, argMax(note, acted_at_ms) AS resolution_note\n\
             FROM {database}.dead_letter_actions GROUP BY topic, partition, offset) AS actions\n\
             USING (topic, partition, offset)"
        ),
    );
    create(
        "dlq_depth",
        format!(
            "CREATE VIEW {database}.dlq_depth AS\n\
             SELECT reason, consumer, tenant_id, event_type, toUInt64(count()) AS entries,\n\
             min(broker_time) AS oldest\n\
             FROM (SELECT reason, multiIf(reason = 'delivery_failed',\n\
             concat('target.', extract(error, '^target ([^ ]+) ')),\n\
             reason IN ('sink_rejected', 'retries_exhausted'), '{archive}', '') AS consumer,\n\
             tenant_id, event_type, broker_time\n\
             FROM {database}.dead_letter_queue WHERE status = 'pending')\n\
             GROUP BY reason, consumer, tenant_id, event_type",
            archive = salestalk_operators::flush::consumers::ARCHIVE,
        ),
    );
    create(
        "new_enum_values",
        format!(
            "CREATE VIEW {database}.new_enum_values AS\n\
             SELECT event_type, field, value, toUInt64(sum(events)) AS events,\n\
             toUInt64(uniqExact(tenant_id)) AS tenants,\n\
             min(window_start) AS first_seen, max(window_start) AS last_seen\n\
             FROM {database}.metrics_new_enum_values\n\
             GROUP BY event_type, field, value"
        ),
    );
    create(
        "contract_warnings",
        format!(
            "CREATE VIEW {database}.contract_warnings AS\n\
             SELECT source, field, kind, toUInt64(sum(events)) AS events,\n\
             toUInt64(uniqExact(tenant_id)) AS tenants,\n\
             min(window_start) AS first_seen, max(window_start) AS last_seen\n\
             FROM {database}.metrics_contract_warnings\n\
             GROUP BY source, field, kind"
        ),
    );
    create(
        "consumer_outcomes",
        format!(
            "CREATE VIEW {database}.consumer_outcomes AS\n\
             SELECT window_start, consumer_name AS consumer, tenant_id,\n\
             toUInt64(sum(n_attempted)) AS attempted, toUInt64(sum(n_failed)) AS failed,\n\
             toUInt64(sum(n_failed_attempts)) AS failed_attempts\n\
             FROM (\n\
             SELECT minute AS window_start, toString(consumer) AS consumer_name, tenant_id,\n\
             toUInt64(attempted) AS n_attempted, toUInt64(failed) AS n_failed,\n\
             toUInt64(failed_attempts) AS n_failed_attempts\n\
             FROM {database}.sink_outcomes\n\
             UNION ALL\n\
             SELECT minute AS window_start, concat('group.', consumer_group) AS consumer_name,\n\
             tenant_id, toUInt64(0) AS n_attempted, toUInt64(1) AS n_failed,\n\
             toUInt64(0) AS n_failed_attempts\n\
             FROM {database}.consumer_failures FINAL)\n\
             GROUP BY window_start, consumer_name, tenant_id"
        ),
    );
    create(
        "publish_outcomes",
        format!(
            "CREATE VIEW {database}.publish_outcomes AS\n\
             SELECT window_start, tenant_id, source, publish_path AS path,\n\
             toUInt64(sum(n_submitted)) AS submitted, toUInt64(sum(n_accepted)) AS accepted,\n\
             toUInt64(sum(n_rejected)) AS rejected,\n\
             toUInt64(sum(n_validation)) AS validation_errors,\n\
             toUInt64(sum(n_not_allowed)) AS tenant_not_allowed,\n\
             toUInt64(sum(n_too_large)) AS too_large, toUInt64(sum(n_throttled)) AS throttled,\n\
             toUInt64(sum(n_broker_failed)) AS broker_failed\n\
             FROM ({})\n\
             GROUP BY window_start, tenant_id, source, publish_path",
            publish_sources_sql(
                &format!("{database}.metrics_publish"),
                &format!("{database}.ingest_outcomes"),
                "1"
            ),
        ),
    );
    // The newest lag sample of each minute and partition, added up per group and topic.
    create(
        "consumer_lag",
        format!(
            "CREATE VIEW {database}.consumer_lag AS\n\
             SELECT minute AS window_start, consumer_group, newest_instance AS instance, topic,\n\
             count() AS partitions,\n\
             toUInt64(sum(newest_messages)) AS lag_messages,\n\
             max(newest_ms) / 1000 AS lag_seconds,\n\
             toUInt64(sum(newest_throttled)) AS throttled_reads\n\
             FROM (SELECT minute, consumer_group, topic, partition,\n\
             argMax(instance, measured_at_ms) AS newest_instance,\n\
             argMax(lag_messages, measured_at_ms) AS newest_messages,\n\
             argMax(lag_ms, measured_at_ms) AS newest_ms,\n\
             argMax(throttled, measured_at_ms) AS newest_throttled\n\
             FROM {database}.consumer_group_lag GROUP BY minute, consumer_group, topic, partition)\n\
             GROUP BY window_start, consumer_group, instance, topic"
        ),
    );
    // Per tenant and day: the newest check, when a correction last changed the day's windows,
    // and what it found (ADR 0016).
    create(
        "window_corrections",
        format!(
            "CREATE VIEW {database}.window_corrections AS\n\
             SELECT tenant_id, day, toDateTime(intDiv(max(checked_at_ms), 1000), 'UTC') AS checked_at,\n\
             toDateTime(intDiv(maxIf(checked_at_ms, epoch != 0), 1000), 'UTC') AS last_changed_at,\n\
             toUInt64(countIf(epoch != 0)) AS corrections,\n\
             argMax(events, checked_at_ms) AS events,\n\
             argMax(late_events, checked_at_ms) AS late_events,\n\
             argMax(duplicates_removed, checked_at_ms) AS cross_partition_duplicates,\n\
             argMax(waiting_tasks, checked_at_ms) AS waiting_partitions\n\
             FROM {database}.corrections GROUP BY tenant_id, day"
        ),
    );
    // Events counted in more than one partition (or source) before their day's correction
    // took the extra copies out: what each correction found, per tenant and day.
    create(
        "cross_partition_duplicates",
        format!(
            "CREATE VIEW {database}.cross_partition_duplicates AS\n\
             SELECT tenant_id, day, duplicates AS events_counted_twice, found_at\n\
             FROM (SELECT tenant_id, day, argMax(duplicates_removed, checked_at_ms) AS duplicates,\n\
             toDateTime(intDiv(max(checked_at_ms), 1000), 'UTC') AS found_at\n\
             FROM {database}.corrections WHERE epoch != 0 GROUP BY tenant_id, day)\n\
             WHERE duplicates > 0"
        ),
    );
    // Late events waiting for the correction of their day: arrived (the late_arrivals family)
    // less what the day's newest check had seen.
    create(
        "late_events_pending",
        format!(
            "CREATE VIEW {database}.late_events_pending AS\n\
             SELECT tenant_id, day, toUInt64(arrived) AS arrived,\n\
             toUInt64(greatest(arrived - seen, 0)) AS pending\n\
             FROM (SELECT tenant_id, toDate(toDateTime(event_window, 'UTC')) AS day,\n\
             toInt64(sum(events)) AS arrived\n\
             FROM {database}.metrics_late_arrivals_daily GROUP BY tenant_id, day) AS arrivals\n\
             ANY LEFT JOIN (SELECT tenant_id, day, argMax(late_arrivals_seen, checked_at_ms) AS seen\n\
             FROM {database}.corrections GROUP BY tenant_id, day) AS checks\n\
             USING (tenant_id, day)"
        ),
    );
    create(
        "dlq_inflow",
        format!(
            "CREATE VIEW {database}.dlq_inflow AS\n\
             SELECT window_start, tenant_id, reason, event_type, topic, toUInt64(messages) AS messages\n\
             FROM {database}.metrics_dead_letters"
        ),
    );
    statements
}

/// Latency observations from both places they are measured, as a `UNION ALL` with
/// `window_start, tenant_id, event_type, consumer, events, buckets, counts`: the pipeline's
/// own consumers from `pipeline_rows` (rows of the latency family: `metrics_latency`, or a
/// dashboard's mix of its rollups) and the routing targets' deliveries from
/// `delivery_latency` rows meeting `delivery_filter` (a condition on `minute`, `tenant_id`).
/// The view `processing_latency` and the SRE page read it, each with its own filters.
pub fn latency_sources_sql(
    pipeline_rows: &str,
    delivery_latency: &str,
    delivery_filter: &str,
) -> String {
    format!(
        "SELECT window_start, tenant_id, event_type, consumer, toUInt64(events) AS events,\n\
         latency_ms_histogram.1 AS buckets, latency_ms_histogram.2 AS counts\n\
         FROM {pipeline_rows}\n\
         UNION ALL\n\
         SELECT minute AS window_start, tenant_id, toString(event_type) AS event_type,\n\
         toString(consumer) AS consumer, toUInt64(n) AS events, h.1 AS buckets, h.2 AS counts\n\
         FROM (SELECT minute, tenant_id, event_type, consumer, sum(delivered) AS n,\n\
         sumMap(latency_buckets, latency_counts) AS h\n\
         FROM {delivery_latency} WHERE {delivery_filter}\n\
         GROUP BY minute, tenant_id, event_type, consumer)"
    )
}

/// Publish success's inputs (DESIGN.md), as a `UNION ALL` with `window_start, tenant_id,
/// source, publish_path` and the counts `n_submitted, n_accepted, n_rejected, n_validation,
/// n_not_allowed, n_too_large, n_throttled, n_broker_failed`: the gateway's entries from
/// `ingest_outcomes` rows meeting `gateway_filter` (a condition on `minute`, `tenant_id`), and
/// the messages that reached the topics some other way from `pipeline_rows` (rows of the
/// publish family: `metrics_publish`, or a dashboard's mix of its rollups; the gateway marks
/// its own, so nothing counts twice). A late event or a sink's refusal is not a failed
/// publish. Every branch casts its columns: older servers want a UNION's types identical.
pub fn publish_sources_sql(
    pipeline_rows: &str,
    ingest_outcomes: &str,
    gateway_filter: &str,
) -> String {
    format!(
        "SELECT minute AS window_start, tenant_id, source, toString('gateway') AS publish_path,\n\
         toUInt64(entries) AS n_submitted,\n\
         toUInt64(if(outcome = '{accepted}', entries, 0)) AS n_accepted,\n\
         toUInt64(if(outcome IN ({rejected}), entries, 0)) AS n_rejected,\n\
         toUInt64(if(outcome = '{validation}', entries, 0)) AS n_validation,\n\
         toUInt64(if(outcome = '{not_allowed}', entries, 0)) AS n_not_allowed,\n\
         toUInt64(if(outcome = '{too_large}', entries, 0)) AS n_too_large,\n\
         toUInt64(if(outcome = '{throttled}', entries, 0)) AS n_throttled,\n\
         toUInt64(if(outcome = '{broker}', entries, 0)) AS n_broker_failed\n\
         FROM {ingest_outcomes} WHERE {gateway_filter}\n\
         UNION ALL\n\
         SELECT window_start, tenant_id, source, toString('direct') AS publish_path,\n\
         toUInt64(submitted) AS n_submitted, toUInt64(submitted - rejected) AS n_accepted,\n\
         toUInt64(rejected) AS n_rejected, toUInt64(0) AS n_validation,\n\
         toUInt64(0) AS n_not_allowed, toUInt64(0) AS n_too_large,\n\
         toUInt64(0) AS n_throttled, toUInt64(0) AS n_broker_failed\n\
         FROM {pipeline_rows} WHERE path != 'gateway'",
        accepted = IngestOutcome::Accepted.as_str(),
        rejected = IngestOutcome::REJECTED
            .iter()
            .map(|o| format!("'{}'", o.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        validation = IngestOutcome::ValidationError.as_str(),
        not_allowed = IngestOutcome::TenantNotAllowed.as_str(),
        too_large = IngestOutcome::TooLarge.as_str(),
        throttled = IngestOutcome::Throttled.as_str(),
        broker = IngestOutcome::PublishFailed.as_str(),
    )
}

/// The documented query for P50/P95/P99 latency per consumer over any range and tenant set:
/// histograms are merged first, percentiles read last. `{filter}` is a SQL condition.
pub fn latency_percentiles_query(database: &str, filter: &str) -> String {
    format!(
        "SELECT consumer, sum(events) AS events, {}, {}, {}\n\
         FROM (SELECT consumer, events, buckets, counts FROM {database}.processing_latency WHERE {filter})\n\
         GROUP BY consumer ORDER BY consumer",
        format_args!("{} AS p50_ms", merged_quantile(0.5)),
        format_args!("{} AS p95_ms", merged_quantile(0.95)),
        format_args!("{} AS p99_ms", merged_quantile(0.99)),
    )
}

/// SQL for the `q`-quantile of the latency histograms (`buckets`, `counts`) merged by the
/// surrounding `GROUP BY`.
pub fn merged_quantile(q: f64) -> String {
    quantile_sql("sumMap(buckets, counts).1", "sumMap(buckets, counts).2", q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollup_view_reads_sealed_rows_then_the_finer_rows_not_sealed_yet() {
        let branches = |span| {
            sealed_union("db", Family::Cost, span)
                .split("\nUNION ALL\n")
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let hour = branches(Span::Hour);
        assert_eq!(hour.len(), 2);
        assert!(hour[0].contains("family = 'cost/hour'") && hour[0].contains("< sealed_hours"));
        assert!(hour[1].contains("family = 'cost'") && hour[1].contains(">= sealed_hours"));
        let day = branches(Span::Day);
        assert_eq!(day.len(), 3);
        assert!(day[0].contains("family = 'cost/day'") && day[0].contains("< sealed_days"));
        assert!(day[1].contains("family = 'cost/hour'") && day[1].contains(">= sealed_days"));
        assert!(day[2].contains("family = 'cost'") && day[2].contains(">= sealed_hours"));
        // Each branch names its window where the table is read, so a filter reaches it.
        for branch in &day[1..] {
            assert!(
                branch.contains("toStartOfDay(window_start) AS day_start"),
                "{branch}"
            );
        }
        let minutes = family_view("db", Family::Cost, Span::Minute);
        assert!(!minutes.contains("sealed_hours"));
    }

    #[test]
    fn every_view_is_dropped_before_it_is_created() {
        let statements = views("db");
        for pair in statements.chunks(2) {
            assert!(
                pair[0].starts_with("DROP TABLE IF EXISTS db."),
                "{}",
                pair[0]
            );
            assert!(pair[1].starts_with("CREATE VIEW db."), "{}", pair[1]);
        }
    }

    #[test]
    fn docs_metrics_md_names_every_view_and_column() {
        let docs = include_str!("../../../docs/metrics.md");
        for statement in views("db") {
            if let Some(rest) = statement.strip_prefix("CREATE VIEW db.") {
                let name = rest.split_whitespace().next().unwrap_or_default();
                let family_rollup = ROLLUP_SUFFIXES
                    .iter()
                    .any(|suffix| name.ends_with(&format!("_{suffix}")));
                assert!(
                    family_rollup || docs.contains(&format!("`{name}`")),
                    "docs/metrics.md lacks view {name}"
                );
            }
        }
        for family in Family::ALL {
            let layout = family.layout();
            let columns = layout
                .dims
                .iter()
                .filter(|d| !d.is_empty())
                .chain(layout.ints)
                .chain(layout.floats);
            for column in columns {
                assert!(
                    docs.contains(&format!("`{column}`")),
                    "docs/metrics.md lacks column {column}"
                );
            }
            if let Some(histogram) = layout.histogram {
                assert!(
                    docs.contains(&format!("`{histogram}_histogram`")),
                    "docs/metrics.md lacks {histogram}_histogram"
                );
            }
        }
    }

    #[test]
    fn every_family_gets_a_view_with_every_column() {
        let sql = views("db").join("\n");
        for family in Family::ALL {
            let layout = family.layout();
            assert!(sql.contains(&format!("metrics_{}", layout.name)));
            for column in layout.ints.iter().chain(layout.floats) {
                assert!(sql.contains(&format!(" AS {column}")), "{column}");
            }
        }
    }
}
