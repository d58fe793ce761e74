//! The SRE page (the contract's targets and thresholds drawn where they apply): event volume
//! and versions, contract warnings by producer, latency per consumer and its P95 over time,
//! error rate per consumer, publish success by path, the DLQ (depth, reasons, inflow, healed
//! targets), lag of the pipeline's instances, consumer groups and Kinesis shards, and the
//! alerts that fired.

use salestalk_alerting::objectives;

use super::*;

/// The SRE dashboard.
pub(super) fn sre() -> Dashboard {
    Dashboard {
        id: "sre",
        title: "SalesTalk SRE",
        panels: vec![
            panel(
                "volume",
                "Event volume by type",
                Chart::Timeseries,
                Unit::Count,
                summed_series(Family::Volume, "event_type", "events"),
            ),
            panel(
                "volume_by_type",
                "Events in range by type",
                Chart::Bar,
                Unit::Count,
                format!(
                    "SELECT event_type AS label, toFloat64(sum(events)) AS value FROM {} \
                     GROUP BY label ORDER BY value DESC, label",
                    rows(Family::Volume, "event_type, events", Bucketed::No)
                ),
            ),
            table(
                "versions",
                "Event versions in range, with their lifecycle (when does v1 traffic end?)",
                &[
                    ("event", Unit::Text),
                    ("version", Unit::Text),
                    ("events", Unit::Count),
                    ("last_seen", Unit::Text),
                    ("lifecycle", Unit::Text),
                    ("support_ends", Unit::Text),
                    ("notice", Unit::Text),
                ],
                // The registry is what the tasks enforce ([[contracts.versions]], written at
                // start-up); a version within three months of its end says so.
                format!(
                    "SELECT arrayStringConcat(arraySlice(splitByChar('.', event_type), 1, 2), '.') AS event, \
                     splitByChar('.', event_type)[3] AS version, events_n AS events, \
                     last_seen_at AS last_seen, if(status = '', 'current', status) AS lifecycle, \
                     if(status = 'deprecated', toString(ends), '') AS support_ends, \
                     multiIf(status != 'deprecated', '', today() >= ends, \
                     concat('ended: dead-lettered; publish ', successor), \
                     today() >= ends - {notice}, concat('move to ', successor, ' before ', toString(ends)), \
                     '') AS notice \
                     FROM (SELECT event_type, toUInt64(sum(events)) AS events_n, \
                     max(window_start) AS last_seen_at FROM {} GROUP BY event_type) AS seen \
                     ANY LEFT JOIN ({registry}) AS registry USING event_type \
                     ORDER BY event, version",
                    rows(Family::Volume, "event_type, events", Bucketed::No),
                    notice = salestalk_operators::versions::NOTICE_DAYS,
                    registry = salestalk_store::tables::event_versions::CURRENT_SQL,
                ),
            ),
            table(
                "new_enum_values",
                "Enum values newer than this build",
                &[
                    ("event_type", Unit::Text),
                    ("field", Unit::Text),
                    ("value", Unit::Text),
                    ("events", Unit::Count),
                    ("tenants", Unit::Count),
                    ("first_seen", Unit::Text),
                    ("last_seen", Unit::Text),
                ],
                format!(
                    "SELECT event_type, field, value, toUInt64(sum(events)) AS events, \
                     toUInt64(uniqExact(tenant_id)) AS tenants, min(window_start) AS first_seen, \
                     max(window_start) AS last_seen \
                     FROM {} GROUP BY event_type, field, value \
                     ORDER BY events DESC, event_type, field, value LIMIT 50",
                    rows(
                        Family::NewEnumValues,
                        "event_type, field, value, events",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "contract_warnings",
                "Contract warnings by producer (accepted events departing from the tables)",
                &[
                    ("source", Unit::Text),
                    ("field", Unit::Text),
                    ("kind", Unit::Text),
                    ("events", Unit::Count),
                    ("tenants", Unit::Count),
                    ("last_seen", Unit::Text),
                ],
                format!(
                    "SELECT source, field, kind, toUInt64(sum(events)) AS events, \
                     toUInt64(uniqExact(tenant_id)) AS tenants, max(window_start) AS last_seen \
                     FROM {} GROUP BY source, field, kind \
                     ORDER BY events DESC, source, field, kind LIMIT 50",
                    rows(
                        Family::ContractWarnings,
                        "source, field, kind, events",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "latency",
                "Processing latency per consumer (ms)",
                &[
                    ("consumer", Unit::Text),
                    ("events", Unit::Count),
                    ("p50_ms", Unit::Milliseconds),
                    ("p95_ms", Unit::Milliseconds),
                    ("p99_ms", Unit::Milliseconds),
                ],
                // The pipeline's own consumers (from the rollups, as every family panel) and
                // the routing targets (delivery latency).
                format!(
                    "SELECT consumer, toUInt64(sum(events)) AS events, {} AS p50_ms, {} AS p95_ms, \
                     {} AS p99_ms FROM ({}) GROUP BY consumer ORDER BY consumer",
                    merged_quantile(0.5),
                    merged_quantile(0.95),
                    merged_quantile(0.99),
                    latency_sources_sql(
                        &rows(
                            Family::Latency,
                            "event_type, consumer, events, latency_ms_histogram",
                            Bucketed::No
                        ),
                        "delivery_latency",
                        &minutes_in_range(),
                    ),
                ),
            )
            .marked("p95_ms", objectives::P95_LATENCY_MS),
            panel(
                "latency_p95_over_time",
                "P95 processing latency over time per consumer (ms)",
                Chart::Timeseries,
                Unit::Milliseconds,
                format!(
                    "SELECT {} AS time, consumer AS series, {} AS value FROM ({}) \
                     GROUP BY time, series ORDER BY time, series",
                    bucket("window_start"),
                    merged_quantile(0.95),
                    latency_sources_sql(
                        &rows(
                            Family::Latency,
                            "event_type, consumer, events, latency_ms_histogram",
                            Bucketed::Yes
                        ),
                        "delivery_latency",
                        &minutes_in_range(),
                    ),
                ),
            )
            .marked("value", objectives::P95_LATENCY_MS),
            table(
                "consumer_errors",
                "Consumer error rate (failures over attempts: sinks, targets, consumer groups)",
                &[
                    ("consumer", Unit::Text),
                    ("attempted", Unit::Count),
                    ("failed", Unit::Count),
                    ("error_rate", Unit::Share),
                    ("failed_attempts", Unit::Count),
                ],
                format!(
                    "SELECT consumer, attempted_n AS attempted, failed_n AS failed, \
                     if(attempted_n = 0, 0, failed_n / attempted_n) AS error_rate, \
                     retried_n AS failed_attempts FROM (SELECT consumer, \
                     toUInt64(sum(attempted)) AS attempted_n, toUInt64(sum(failed)) AS failed_n, \
                     toUInt64(sum(failed_attempts)) AS retried_n \
                     FROM consumer_outcomes WHERE $__timeFilter(window_start) \
                     AND (tenant_id = '' OR {TENANT}) GROUP BY consumer) ORDER BY consumer"
                ),
            )
            .marked("error_rate", objectives::CONSUMER_ERROR_RATE),
            panel(
                "publish_success",
                "Publish success rate (accepted / submitted, throttled apart)",
                Chart::Stat,
                Unit::Share,
                format!(
                    "SELECT if(submitted_n = 0, 1, accepted_n / submitted_n) AS value, \
                     submitted_n AS submitted_total, submitted_n - accepted_n AS failed_total, \
                     throttled_n AS throttled_total \
                     FROM (SELECT toUInt64(sum(n_submitted) - sum(n_throttled)) AS submitted_n, \
                     toUInt64(sum(n_accepted)) AS accepted_n, \
                     toUInt64(sum(n_throttled)) AS throttled_n FROM ({}))",
                    publish_sources()
                ),
            )
            .marked("value", objectives::PUBLISH_SUCCESS),
            table(
                "conflicting_duplicates",
                "Conflicting duplicates by producer (an eventId resent with other content)",
                &[
                    ("source", Unit::Text),
                    ("topic", Unit::Text),
                    ("resends", Unit::Count),
                    ("conflicting", Unit::Count),
                    ("last_seen", Unit::Text),
                ],
                format!(
                    "SELECT source, topic, toUInt64(sum(duplicates)) AS resends, \
                     toUInt64(sum(conflicting_duplicates)) AS conflicting, \
                     max(window_start) AS last_seen FROM {} GROUP BY source, topic \
                     HAVING conflicting > 0 ORDER BY conflicting DESC, source, topic LIMIT 50",
                    rows(
                        Family::Publish,
                        "source, topic, duplicates, conflicting_duplicates",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "publish_by_path",
                "Publishes by path: through the gateway, or straight to the topics",
                &[
                    ("path", Unit::Text),
                    ("submitted", Unit::Count),
                    ("accepted", Unit::Count),
                    ("rejected", Unit::Count),
                    ("throttled", Unit::Count),
                    ("broker_failed", Unit::Count),
                ],
                format!(
                    "SELECT publish_path AS path, toUInt64(sum(n_submitted)) AS submitted, \
                     toUInt64(sum(n_accepted)) AS accepted, toUInt64(sum(n_rejected)) AS rejected, \
                     toUInt64(sum(n_throttled)) AS throttled, \
                     toUInt64(sum(n_broker_failed)) AS broker_failed \
                     FROM ({}) GROUP BY path ORDER BY path",
                    publish_sources()
                ),
            ),
            panel(
                "dlq_depth",
                "DLQ depth (pending now)",
                Chart::Stat,
                Unit::Count,
                format!("SELECT toFloat64(sum(entries)) AS value FROM dlq_depth WHERE {TENANT}"),
            )
            .marked("value", objectives::DLQ_DEPTH),
            table(
                "dlq_by_reason",
                "Dead letters by reason and consumer (pending now)",
                &[
                    ("reason", Unit::Text),
                    ("consumer", Unit::Text),
                    ("entries", Unit::Count),
                    ("oldest", Unit::Text),
                ],
                format!(
                    "SELECT reason, consumer, toUInt64(sum(entries)) AS entries, \
                     toString(min(oldest)) AS oldest FROM dlq_depth WHERE {TENANT} \
                     GROUP BY reason, consumer ORDER BY entries DESC, reason, consumer"
                ),
            ),
            table(
                "targets_healed",
                "Routing targets healed: undelivered events redriven by themselves",
                &[
                    ("target_topic", Unit::Text),
                    ("redriven", Unit::Count),
                    ("pending", Unit::Count),
                    ("last_redriven", Unit::Text),
                ],
                format!(
                    "SELECT topic AS target_topic, \
                     toUInt64(countIf(status = 'redriven' AND resolution_note LIKE 'healed%' \
                     AND $__timeFilter(resolved_at))) AS redriven, \
                     toUInt64(countIf(status = 'pending')) AS pending, \
                     toString(maxIf(resolved_at, status = 'redriven' AND resolution_note LIKE 'healed%')) \
                     AS last_redriven \
                     FROM dead_letter_queue WHERE reason = 'delivery_failed' AND {TENANT} \
                     GROUP BY topic ORDER BY topic"
                ),
            ),
            panel(
                "dlq_inflow",
                "DLQ inflow by reason",
                Chart::Timeseries,
                Unit::Count,
                summed_series(Family::DeadLetters, "reason", "messages"),
            ),
            table(
                "consumer_lag",
                "Pipeline instances, consumer groups and Kinesis shards: lag (newest sample)",
                &[
                    ("consumer_group", Unit::Text),
                    ("instance", Unit::Text),
                    ("topic", Unit::Text),
                    ("partitions", Unit::Count),
                    ("lag_messages", Unit::Count),
                    ("lag_seconds", Unit::Seconds),
                    ("throttled_reads", Unit::Count),
                ],
                // Each reader's newest sample of the last two minutes of the range, not the
                // newest minute's rows only: readers are sampled at different moments, so at
                // every minute's start the first one sampled would hide the others until their
                // next sample (up to `consumer_watch_interval_ms`), and a reader stopped for
                // more than a minute still drops off.
                "SELECT consumer_group, instance, topic, \
                 argMax(partitions, window_start) AS partitions, \
                 argMax(lag_messages, window_start) AS lag_messages, \
                 argMax(lag_seconds, window_start) AS lag_seconds, \
                 argMax(throttled_reads, window_start) AS throttled_reads \
                 FROM consumer_lag WHERE $__timeFilter(window_start) \
                 AND window_start >= (SELECT max(window_start) FROM consumer_lag \
                 WHERE $__timeFilter(window_start)) - 60 \
                 GROUP BY consumer_group, instance, topic ORDER BY consumer_group, instance, topic"
                    .to_string(),
            ),
            Panel {
                marks: Vec::new(),
                id: "lag",
                title: "Consumer lag (messages not yet durable)",
                chart: Chart::Bar,
                unit: Unit::Count,
                columns: Vec::new(),
                source: Source::Lag {
                    promql: "sum by (topic) (salestalk_partition_lag)",
                },
            },
            Panel {
                marks: Vec::new(),
                id: "alerts",
                title: "Active alerts",
                chart: Chart::Table,
                unit: Unit::Count,
                columns: vec![
                    ("rule", Unit::Text),
                    ("severity", Unit::Text),
                    ("summary", Unit::Text),
                    ("starts_at", Unit::Text),
                ],
                source: Source::ActiveAlerts(
                    "SELECT rule, severity, summary, starts_at FROM \
                     (SELECT * FROM alerts ORDER BY notified_at_ms DESC LIMIT 1 BY fingerprint) \
                     WHERE status = 'firing' ORDER BY starts_at"
                        .to_string(),
                ),
            },
        ],
    }
}
