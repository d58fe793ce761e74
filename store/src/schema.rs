//! The ClickHouse schema: versioned migrations and the public views built on them.
//!
//! One schema story for both servers: the statements are the same except where the probe
//! says a feature exists (`LowCardinality`, `TTL`). The views are generated from the metric
//! families' layouts (`salestalk_operators::aggregate::Family`), so a view column cannot drift
//! from what the pipeline writes.

use salestalk_operators::aggregate::Family;
use salestalk_operators::histogram::GAMMA;
use salestalk_operators::windows::Span;

use crate::codec::{CHECKPOINT_FAMILY, family_name, span_suffix};
use crate::ingest_outcome::IngestOutcome;
use crate::lineage::generation_sql;
use crate::profile::ServerProfile;
use crate::tables::{Ddl, dead_letter_actions, dead_letters};

/// One schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Increasing version number.
    pub version: u32,
    /// What it does.
    pub name: &'static str,
    /// The statements, in order; each is idempotent.
    pub statements: Vec<String>,
}

impl Migration {
    /// Migration `version`, named `name`, of `statements`.
    fn new<const N: usize>(version: u32, name: &'static str, statements: [String; N]) -> Self {
        Self {
            version,
            name,
            statements: statements.into(),
        }
    }
}

/// Every migration, in order, for `database` on a server with `profile`.
pub fn migrations(profile: &ServerProfile, database: &str) -> Vec<Migration> {
    let ddl = Ddl::new(profile, database);
    let low = ddl.low;
    let ttl = |column: &str, days: u32| ddl.ttl(column, days);
    vec![
        // `window_state` is read in short time slices per tenant (a dashboard's edge minutes, an
        // alert's lookback): granules of 1,024 rows instead of 8,192 cut what such a read
        // drags in, which made the SRE dashboard's panels about 40 % faster (docs/performance.md).
        // Databases created before keep 8,192 (the DDL is `IF NOT EXISTS`).
        Migration {
            version: 1,
            name: "window state, raw archive, dead letters",
            statements: vec![
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
                     hist_counts Array(UInt64)\n\
                     ) ENGINE = ReplacingMergeTree(epoch)\n\
                     ORDER BY (family, tenant_id, window_start, d1, d2, d3, task)\n\
                     SETTINGS index_granularity = 1024"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {database}.events_raw (\n\
                     tenant_id String,\n\
                     event_id String,\n\
                     event_type {low},\n\
                     event_version String,\n\
                     source {low},\n\
                     timestamp DateTime('UTC'),\n\
                     timestamp_ms Int64,\n\
                     window_start DateTime('UTC'),\n\
                     clock_skewed UInt8,\n\
                     user_id String,\n\
                     session_id String,\n\
                     correlation_id String,\n\
                     causation_id String,\n\
                     topic {low},\n\
                     partition Int32,\n\
                     offset Int64,\n\
                     broker_time DateTime('UTC'),\n\
                     durable_at_ms UInt64,\n\
                     raw String\n\
                     ) ENGINE = ReplacingMergeTree(durable_at_ms)\n\
                     PARTITION BY toYYYYMM(timestamp)\n\
                     ORDER BY (tenant_id, event_id){}",
                    ttl("timestamp", 90)
                ),
                dead_letters::create(&ddl),
            ],
        },
        // The views are recreated after every migration run (see `views`), so they must not be
        // created here, where later migrations' columns do not exist yet.
        Migration {
            version: 2,
            name: "public views (created after the migrations)",
            statements: Vec::new(),
        },
        Migration {
            version: 3,
            name: "dead-letter queue: readable event id, redrive and discard actions",
            statements: vec![
                dead_letters::add_event_id(&ddl),
                dead_letter_actions::create(&ddl),
            ],
        },
        Migration {
            version: 4,
            name: "alert history",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {database}.alerts (\n\
                 notified_at DateTime('UTC'),\n\
                 notified_at_ms UInt64,\n\
                 fingerprint String,\n\
                 rule {low},\n\
                 status {low},\n\
                 severity {low},\n\
                 signal {low},\n\
                 labels String,\n\
                 value Float64,\n\
                 threshold Float64,\n\
                 starts_at DateTime('UTC'),\n\
                 ends_at DateTime('UTC'),\n\
                 summary String,\n\
                 delivered UInt8\n\
                 ) ENGINE = MergeTree\n\
                 ORDER BY (rule, fingerprint, notified_at_ms){}",
                ttl("notified_at", 90)
            )],
        },
        Migration {
            version: 5,
            name: "hour and day rows for the windows written before the pipeline wrote them",
            statements: Span::ROLLUPS
                .into_iter()
                .map(|span| rollup_rows_from_minutes(database, span))
                .collect(),
        },
        // Operational counts, summed: the consumer error rate of every sink. Not part of the
        // exact state (written after a flush landed; a crash in between loses that flush's
        // counts, a replayed task's events are attempted again), see docs/metrics.md.
        Migration {
            version: 6,
            name: "delivery outcomes per consumer: attempts, failures, failed write attempts",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {database}.sink_outcomes (\n\
                 minute DateTime('UTC'),\n\
                 consumer {low},\n\
                 tenant_id String,\n\
                 attempted UInt64,\n\
                 failed UInt64,\n\
                 failed_attempts UInt64\n\
                 ) ENGINE = SummingMergeTree\n\
                 PARTITION BY toYYYYMM(minute)\n\
                 ORDER BY (consumer, tenant_id, minute){}",
                ttl("minute", 90)
            )],
        },
        // API keys, hashed; a revocation is a newer version of the key's row.
        Migration {
            version: 7,
            name: "API keys (hashed) with their role and tenants",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {database}.api_keys (\n\
                 key_id String,\n\
                 key_hash String,\n\
                 role {low},\n\
                 tenants Array(String),\n\
                 created_at DateTime('UTC'),\n\
                 revoked_at DateTime('UTC'),\n\
                 changed_at_ms UInt64\n\
                 ) ENGINE = ReplacingMergeTree(changed_at_ms)\n\
                 ORDER BY key_id"
            )],
        },
        // The gateway's half of the publish success rate: what it was given and what became
        // of it, per minute (when it was submitted), tenant, source and outcome.
        Migration {
            version: 8,
            name: "ingest gateway outcomes per minute, tenant, source and outcome",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {database}.ingest_outcomes (\n\
                 minute DateTime('UTC'),\n\
                 tenant_id String,\n\
                 source String,\n\
                 outcome {low},\n\
                 entries UInt64\n\
                 ) ENGINE = SummingMergeTree\n\
                 PARTITION BY toYYYYMM(minute)\n\
                 ORDER BY (tenant_id, source, outcome, minute){}",
                ttl("minute", 90)
            )],
        },
        // Every replay from the archive: who, what, where to, when, how many.
        Migration {
            version: 9,
            name: "replays from the raw archive",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {database}.replays (\n\
                 replay_id String,\n\
                 who String,\n\
                 selection String,\n\
                 target String,\n\
                 dry_run UInt8,\n\
                 selected UInt64,\n\
                 sent UInt64,\n\
                 started_at DateTime('UTC'),\n\
                 finished_at DateTime('UTC')\n\
                 ) ENGINE = ReplacingMergeTree(finished_at)\n\
                 ORDER BY replay_id"
            )],
        },
        // Delivery latency of the routing targets (event time to acknowledged by the target's
        // broker), per minute of delivery: the same mergeable histogram as `window_state`'s
        // latency, but operational like `sink_outcomes` (written after a flush landed; a
        // replayed flush delivers, and is measured, again).
        Migration {
            version: 10,
            name: "delivery latency per routing target",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {database}.delivery_latency (\n\
                 minute DateTime('UTC'),\n\
                 consumer {low},\n\
                 tenant_id String,\n\
                 event_type {low},\n\
                 delivered UInt64,\n\
                 latency_buckets Array(Int16),\n\
                 latency_counts Array(UInt64)\n\
                 ) ENGINE = MergeTree\n\
                 PARTITION BY toYYYYMM(minute)\n\
                 ORDER BY (consumer, tenant_id, minute){}",
                ttl("minute", 90)
            )],
        },
        // The downstream consumer groups (`routing.targets.*.consumer_groups`): their lag,
        // sampled from the brokers' committed offsets (the newest sample of a minute wins),
        // and the failures they report on the dead-letter topic, one row per report record
        // (a report read twice replaces itself).
        Migration {
            version: 11,
            name: "downstream consumer groups: lag samples and reported failures",
            statements: vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {database}.consumer_group_lag (\n\
                     minute DateTime('UTC'),\n\
                     consumer_group String,\n\
                     topic String,\n\
                     partition Int32,\n\
                     lag_messages UInt64,\n\
                     lag_ms UInt64,\n\
                     measured_at_ms UInt64\n\
                     ) ENGINE = ReplacingMergeTree(measured_at_ms)\n\
                     PARTITION BY toYYYYMM(minute)\n\
                     ORDER BY (consumer_group, topic, partition, minute){}",
                    ttl("minute", 90)
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {database}.consumer_failures (\n\
                     minute DateTime('UTC'),\n\
                     consumer_group String,\n\
                     tenant_id String,\n\
                     event_id String,\n\
                     event_type String,\n\
                     error String,\n\
                     partition Int32,\n\
                     offset Int64\n\
                     ) ENGINE = ReplacingMergeTree\n\
                     PARTITION BY toYYYYMM(minute)\n\
                     ORDER BY (consumer_group, tenant_id, partition, offset){}",
                    ttl("minute", 90)
                ),
            ],
        },
        // A Kinesis dead letter's address: the task's offset is the source's count, so the
        // record's own sequence number is kept beside it (empty for Kafka). Kinesis shards are
        // sampled into the lag table too (group `source.kinesis`), with the minute's
        // throttled reads.
        Migration {
            version: 12,
            name: "Kinesis: dead letters' sequence numbers, shards' throttled reads",
            statements: vec![
                dead_letters::add_sequence(&ddl),
                format!("ALTER TABLE {database}.consumer_group_lag ADD COLUMN throttled UInt64"),
            ],
        },
        // Fenced writers (ADR 0014): each restore of a task claims a generation, with the
        // epoch it resumed from; a claim no other owner made at the same moment is confirmed
        // by a second row. A few rows per restart, kept for good: they are the lineage that
        // tells a task's rows from a stalled former owner's.
        Migration {
            version: 13,
            name: "task generation claims",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {database}.task_claims (\n\
                 task String,\n\
                 generation UInt64,\n\
                 base_epoch UInt64,\n\
                 owner String,\n\
                 nonce UInt64,\n\
                 confirmed UInt8,\n\
                 claimed_at_ms Int64\n\
                 ) ENGINE = MergeTree\n\
                 ORDER BY (task, generation)"
            )],
        },
        // The pipeline's own partitions are sampled into consumer_group_lag too (group
        // `source.kafka`, like `source.kinesis`), naming the instance that owns each: the SRE
        // page's lag table then shows each instance's partitions and lag.
        Migration::new(
            14,
            "lag samples name the pipeline instance",
            [format!(
                "ALTER TABLE {database}.consumer_group_lag ADD COLUMN instance String"
            )],
        ),
        // Late events and corrections (ADR 0016): an event that arrives after its window is
        // final is archived with `late = 1` (not counted live), and the corrector recomputes its
        // tenant's day from the archive. Every check of a tenant's day is recorded, with what
        // its correction changed; a handful of rows per tenant and day, kept like the claims.
        Migration {
            version: 15,
            name: "late events in the archive, corrections of past days",
            statements: vec![
                format!("ALTER TABLE {database}.events_raw ADD COLUMN late UInt8"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {database}.corrections (\n\
                     tenant_id String,\n\
                     day Date,\n\
                     checked_at_ms UInt64,\n\
                     epoch UInt64,\n\
                     trigger {low},\n\
                     live_before Int64,\n\
                     events Int64,\n\
                     late_events Int64,\n\
                     duplicates_removed Int64,\n\
                     late_arrivals_seen Int64,\n\
                     late_arrivals_counted Int64,\n\
                     rows_written UInt64,\n\
                     waiting_tasks Array(String)\n\
                     ) ENGINE = MergeTree\n\
                     ORDER BY (tenant_id, day, checked_at_ms)"
                ),
            ],
        },
        // Keys that expire, and publisher keys scoped to event types (platform types only
        // by an explicit grant). Keys made before read as never expiring, every type but
        // platform ones.
        Migration {
            version: 16,
            name: "API keys with an expiry and event-type scopes",
            statements: vec![
                format!("ALTER TABLE {database}.api_keys ADD COLUMN event_types Array(String)"),
                format!("ALTER TABLE {database}.api_keys ADD COLUMN expires_at DateTime('UTC')"),
            ],
        },
        // Alert notifications a webhook has not taken yet, retried until delivered or
        // expired, across restarts (store::alert_outbox). A few rows per notification.
        Migration {
            version: 17,
            name: "the alert notifications' outbox",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {database}.alert_outbox (\n\
                 notification String,\n\
                 target String,\n\
                 rule {low},\n\
                 body String,\n\
                 created_ms UInt64,\n\
                 attempts UInt32,\n\
                 next_attempt_ms UInt64,\n\
                 state {low},\n\
                 last_error String,\n\
                 version UInt64\n\
                 ) ENGINE = ReplacingMergeTree(version)\n\
                 ORDER BY (notification, target)"
            )],
        },
        Migration::new(
            18,
            "dead letter correlation ids",
            [dead_letters::add_correlation_id(&ddl)],
        ),
    ]
}

/// An insert writing, for every task, the `span` rows its minute rows add up to, each with
/// the highest epoch among its minutes. Pipelines from before rollup rows existed wrote
/// minutes only; after this, a restarted task restores its open hours and days like any other
/// row and keeps adding to them, so every rollup stays the exact sum of its minutes. Running
/// it again writes the same rows at the same epochs, which changes nothing; a live task's
/// later flushes carry higher epochs and win.
pub fn rollup_rows_from_minutes(database: &str, span: Span) -> String {
    let seconds = span.seconds();
    format!(
        "INSERT INTO {database}.window_state \
         (family, task, epoch, window_start, tenant_id, d1, d2, d3, ints, floats, hist_buckets, hist_counts)\n\
         SELECT concat(f, '{}'), t, e, toDateTime(w), tn, x1, x2, x3, i, fl, hist.1, hist.2 FROM (\n\
         SELECT family AS f, task AS t, max(epoch) AS e,\n\
         intDiv(toUInt32(window_start), {seconds}) * {seconds} AS w,\n\
         tenant_id AS tn, d1 AS x1, d2 AS x2, d3 AS x3, sumForEach(ints) AS i,\n\
         sumForEach(floats) AS fl, sumMap(hist_buckets, hist_counts) AS hist\n\
         FROM {database}.window_state FINAL\n\
         WHERE family != '{CHECKPOINT_FAMILY}' AND position(family, '/') = 0\n\
         GROUP BY f, t, w, tn, x1, x2, x3)",
        span_suffix(span)
    )
}

/// SQL for the value a histogram bucket reports (see `salestalk_operators::histogram`).
pub fn bucket_value_sql(bucket: &str) -> String {
    format!(
        "if({bucket} <= 0, 0, 2 * pow({GAMMA}, {bucket}) / {})",
        GAMMA + 1.0
    )
}

/// SQL for the `q`-quantile of a merged histogram given as `(buckets, counts)` arrays.
pub fn quantile_sql(buckets: &str, counts: &str, q: f64) -> String {
    let index =
        format!("arrayFirstIndex(c -> c >= ceil({q} * arraySum({counts})), arrayCumSum({counts}))");
    format!(
        "if(arraySum({counts}) = 0, nan, {})",
        bucket_value_sql(&format!("arrayElement({buckets}, {index})"))
    )
}

/// The latest revision (highest epoch) of every row of `family` at `span`: what every view
/// reads. This is `argMax ... GROUP BY` rather than `FINAL` although `FINAL` reads about ten
/// times faster, because ClickHouse 18.16 pushes a query's filters into a grouped subquery but
/// never into a `FINAL` one: behind a view, `FINAL` reads every row of the family whatever
/// the range asked for (measured: a one-hour panel read the whole month). The time column is
/// named `time` where the table is read, not in the view around it: ClickHouse 18.16 pushes a
/// filter on `hour` down only as far as the level that names it, and it must reach the table.
///
/// Rows a fenced-off owner wrote (ADR 0014) are left out: a row of generation `g` at epoch
/// `e` does not count when a later generation of its task was claimed from an epoch below
/// `e`, since that successor never saw it. Highest-epoch-wins alone hides such a row only
/// where the successor writes the same key, and processing-time windows (latency) are keys a
/// successor replaying the same events never writes again. The rows meet their fence in an
/// equi-join on (task, generation), `generation` a column of the joined subquery (newer
/// servers resolve `USING` only there): ClickHouse 18.16 fails to analyse a lambda over a
/// row's column once it has pushed a view's filter down ("Unknown identifier"), and constant
/// arrays looked up with `transform` cost a dashboard more (two scalar subqueries per read).
fn latest(database: &str, family: Family, span: Span, time: &str) -> String {
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
         FROM {database}.window_state WHERE family = '{}') AS state\n\
         ANY LEFT JOIN ({fences}) AS fence USING (task, generation)\n\
         WHERE fenced_from = 0 OR epoch < fenced_from\n\
         GROUP BY {time}, tenant_id, d1, d2, d3, task",
        family_name(family, span),
        generation = generation_sql("epoch"),
        fences = fences(database),
    )
}

/// For every task and generation its confirmed claims name, `fenced_from`: one more than the
/// lowest epoch a later generation resumed from (the generation's rows from there on were
/// written after a successor took over), or 0 when no later generation exists. The right
/// side of [`latest`]'s join, built from `task_claims` (two rows per restore) at every read.
fn fences(database: &str) -> String {
    format!(
        "SELECT task, generation, if(empty(later), 0, arrayReduce('min', later) + 1) AS fenced_from \
         FROM (SELECT task, generation, arrayFilter((b, g) -> g > generation, bases, gens) AS later \
         FROM (SELECT task, groupArray(generation) AS gens, groupArray(base_epoch) AS bases \
         FROM {database}.task_claims WHERE confirmed = 1 GROUP BY task) \
         ARRAY JOIN arrayDistinct(arrayConcat(gens, arrayMap(b -> {}, bases))) \
         AS generation)",
        generation_sql("b")
    )
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
        latest(database, family, span, time),
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
             event_id, attempts, first_failure, last_failure, bytes,\n\
             if(action = '', if(reason = 'rejected_at_ingest', 'answered', 'pending'), action) AS status,\n\
             resolved_at, resolution_note\n\
             FROM (SELECT topic, partition, offset, argMax(broker_time, written_at_ms) AS broker_time,\n\
             argMax(reason, written_at_ms) AS reason, argMax(error, written_at_ms) AS error,\n\
             argMax(tenant_id, written_at_ms) AS tenant_id, argMax(event_type, written_at_ms) AS event_type,\n\
             argMax(event_id, written_at_ms) AS event_id, max(attempts) AS attempts,\n\
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
    use crate::Version;

    #[test]
    fn modern_servers_get_ttl_and_low_cardinality_old_ones_do_not() {
        let old = migrations(
            &ServerProfile::for_version(Version::parse("18.16.1").expect("v")),
            "db",
        );
        let new = migrations(
            &ServerProfile::for_version(Version::parse("26.9.1").expect("v")),
            "db",
        );
        let text = |m: &[Migration]| {
            m.iter()
                .flat_map(|m| m.statements.clone())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(!text(&old).contains("TTL") && !text(&old).contains("LowCardinality"));
        assert!(text(&new).contains("TTL timestamp + INTERVAL 90 DAY"));
        assert!(text(&new).contains("TTL broker_time + INTERVAL 14 DAY"));
        assert!(text(&new).contains("LowCardinality(String)"));
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
        let docs = include_str!("../../docs/metrics.md");
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
    fn versions_increase() {
        let all = migrations(
            &ServerProfile::for_version(Version::parse("18.16.1").expect("v")),
            "db",
        );
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
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
