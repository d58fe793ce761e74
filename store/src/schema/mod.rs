//! The ClickHouse schema: versioned migrations and the public views built on them.
//!
//! One schema story for both servers: the statements are the same except where the probe
//! says a feature exists (`LowCardinality`, `TTL`). Each table's steps are its module's
//! (`crate::tables`); this module orders them. The views ([`views`]) are generated from the
//! metric families' layouts (`salestalk_operators::aggregate::Family`), so a view column cannot
//! drift from what the pipeline writes; [`histogram_sql`] is how they read a latency histogram.

pub mod histogram_sql;
pub mod views;

use salestalk_operators::windows::Span;

use crate::profile::ServerProfile;
use crate::tables::window_state::{CHECKPOINT_FAMILY, span_suffix};
use crate::tables::{
    Ddl, alert_outbox, alerts, api_keys, consumer_failures, consumer_group_lag, corrections,
    dead_letter_actions, dead_letters, delivery_latency, event_versions, events_raw,
    ingest_outcomes, replays, sink_outcomes, task_claims, task_lineage, window_state,
};

pub use self::histogram_sql::{bucket_value_sql, quantile_sql};
pub use self::views::{
    ROLLUP_SUFFIXES, family_view_name, latency_percentiles_query, latency_sources_sql,
    merged_quantile, publish_sources_sql, views,
};

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
    vec![
        Migration {
            version: 1,
            name: "window state, raw archive, dead letters",
            statements: vec![
                window_state::create(&ddl),
                events_raw::create(&ddl),
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
            statements: vec![alerts::create(&ddl)],
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
            statements: vec![sink_outcomes::create(&ddl)],
        },
        // API keys, hashed; a revocation is a newer version of the key's row.
        Migration {
            version: 7,
            name: "API keys (hashed) with their role and tenants",
            statements: vec![api_keys::create(&ddl)],
        },
        // The gateway's half of the publish success rate: what it was given and what became
        // of it, per minute (when it was submitted), tenant, source and outcome.
        Migration {
            version: 8,
            name: "ingest gateway outcomes per minute, tenant, source and outcome",
            statements: vec![ingest_outcomes::create(&ddl)],
        },
        // Every replay from the archive: who, what, where to, when, how many.
        Migration {
            version: 9,
            name: "replays from the raw archive",
            statements: vec![replays::create(&ddl)],
        },
        // Delivery latency of the routing targets (event time to acknowledged by the target's
        // broker), per minute of delivery: the same mergeable histogram as `window_state`'s
        // latency, but operational like `sink_outcomes` (written after a flush landed; a
        // replayed flush delivers, and is measured, again).
        Migration {
            version: 10,
            name: "delivery latency per routing target",
            statements: vec![delivery_latency::create(&ddl)],
        },
        // The downstream consumer groups (`routing.targets.*.consumer_groups`): their lag,
        // sampled from the brokers' committed offsets (the newest sample of a minute wins),
        // and the failures they report on the dead-letter topic, one row per report record
        // (a report read twice replaces itself).
        Migration {
            version: 11,
            name: "downstream consumer groups: lag samples and reported failures",
            statements: vec![
                consumer_group_lag::create(&ddl),
                consumer_failures::create(&ddl),
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
                consumer_group_lag::add_throttled(&ddl),
            ],
        },
        // Fenced writers (ADR 0014): each restore of a task claims a generation, with the
        // epoch it resumed from; a claim no other owner made at the same moment is confirmed
        // by a second row. A few rows per restart, kept for good: they are the lineage that
        // tells a task's rows from a stalled former owner's.
        Migration {
            version: 13,
            name: "task generation claims",
            statements: vec![task_claims::create(&ddl)],
        },
        // The pipeline's own partitions are sampled into consumer_group_lag too (group
        // `source.kafka`, like `source.kinesis`), naming the instance that owns each: the SRE
        // page's lag table then shows each instance's partitions and lag.
        Migration::new(
            14,
            "lag samples name the pipeline instance",
            [consumer_group_lag::add_instance(&ddl)],
        ),
        // Late events and corrections (ADR 0016): an event that arrives after its window is
        // final is archived with `late = 1` (not counted live), and the corrector recomputes its
        // tenant's day from the archive. Every check of a tenant's day is recorded, with what
        // its correction changed; a handful of rows per tenant and day, kept like the claims.
        Migration {
            version: 15,
            name: "late events in the archive, corrections of past days",
            statements: vec![events_raw::add_late(&ddl), corrections::create(&ddl)],
        },
        // Keys that expire, and publisher keys scoped to event types (platform types only
        // by an explicit grant). Keys made before read as never expiring, every type but
        // platform ones.
        Migration {
            version: 16,
            name: "API keys with an expiry and event-type scopes",
            statements: vec![
                api_keys::add_event_types(&ddl),
                api_keys::add_expires_at(&ddl),
            ],
        },
        // Alert notifications a webhook has not taken yet, retried until delivered or
        // expired, across restarts (tables::alert_outbox). A few rows per notification.
        Migration {
            version: 17,
            name: "the alert notifications' outbox",
            statements: vec![alert_outbox::create(&ddl)],
        },
        Migration::new(
            18,
            "dead letter correlation ids",
            [dead_letters::add_correlation_id(&ddl)],
        ),
        // The lineage each confirmed claim resumes, which the views follow (tables::task_lineage):
        // claims that branch (a partition read by two instances at once) fence the rows the
        // winning chain counts, not the rows a rule over the claims alone would pick. One row
        // per task once merged.
        Migration::new(
            19,
            "the lineage of each task's newest claim",
            [task_lineage::create(&ddl)],
        ),
        // The archive keeps `metadata.traceId` (and deliveries pass it on as a header), so an
        // event can be followed into the tracing system from a dead letter or a replay.
        Migration::new(
            20,
            "the archive keeps the trace id",
            [events_raw::add_trace_id(&ddl)],
        ),
        // Each event version's lifecycle from the configuration, which the SRE page and the
        // deprecated-version alert read (tables::event_versions).
        Migration::new(
            21,
            "event versions' lifecycle",
            [event_versions::create(&ddl)],
        ),
        // A repeated (tenant, eventId) with other bytes is a conflicting duplicate; a restored
        // task compares with the first copy's fingerprint kept here.
        Migration::new(
            22,
            "the archive keeps each event's content fingerprint",
            [events_raw::add_content_fingerprint(&ddl)],
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
    fn versions_increase() {
        let all = migrations(
            &ServerProfile::for_version(Version::parse("18.16.1").expect("v")),
            "db",
        );
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
    }
}
