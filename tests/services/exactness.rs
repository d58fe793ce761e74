//! The streaming core's promise, end to end: generated traffic with duplicates, invalid,
//! out-of-order, late and clock-skewed events goes through the real broker and `salestalk run`
//! into the real ClickHouse, and every public view equals a batch recomputation from the same
//! input: the messages read back from the topics, in partition order. Once with a run that is
//! left alone, once with a pipeline killed with SIGKILL at random moments and restarted, and once
//! killed while a flush is in flight with partitions spread over several workers.
//!
//! The recomputation implements the metric definitions of `docs/metrics.md` directly, as a
//! fold over each partition's messages; it shares only the contract validator with the
//! pipeline.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::process::{Child, Command};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clickhouse::Row;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use salestalk_contracts::{EventData, check, parse, validate};
use salestalk_operators::aggregate::Family;
use salestalk_operators::histogram::RELATIVE_ERROR;
use salestalk_operators::windows::Span;
use salestalk_store::schema::family_view_name;
use serde::Deserialize;

use crate::support::eventually::eventually;
use crate::support::{
    Isolated, RUN_LIMIT, finish, free_port, salestalk, salestalk_command, scrape, stdout_of,
    unique, value,
};

/// The allowed lateness of these tests' runs.
pub const LATENESS_MS: i64 = 300_000;
/// The largest clock skew these tests' runs trust.
pub const SKEW_MS: i64 = 600_000;
/// Partitions per topic.
pub const PARTITIONS: i32 = 3;
/// How far before its broker time a late event may be stamped and still be corrected (the
/// default `corrections.horizon_ms`).
pub const HORIZON_MS: i64 = 7 * 86_400_000;

/// Each partition's messages in offset order: (offset, broker ms, bytes).
pub type Input = BTreeMap<(String, i32), Vec<(i64, i64, Vec<u8>)>>;
/// (window or day, tenant, event type, source or model).
pub type TenantKey = (i64, String, String, String);
/// (window, tenant, intent, subject, measure).
pub type IntentKey = (i64, String, String, String, String);
/// (cost nanos, prompt, completion, total tokens, messages).
pub type CostValue = (i64, u64, u64, u64, u64);

/// An isolated topic set, with the pipeline settings these tests use.
pub struct Setup {
    /// Topics, group and database.
    pub isolated: Isolated,
    /// The pipeline's environment.
    pub env: Vec<(&'static str, String)>,
}

async fn setup(name: &str, events: u64, rate: u64) -> Setup {
    seeded_setup(name, 77, events, rate).await
}

/// Fresh topics and database named after `name`, with `events` of the tests' traffic from
/// `seed` produced into them.
pub async fn seeded_setup(name: &str, seed: u64, events: u64, rate: u64) -> Setup {
    produced_on(Isolated::create(name, PARTITIONS).await, seed, events, rate)
}

/// The pipeline settings of these tests, for `isolated`'s topics.
pub fn pipeline_env(isolated: &Isolated) -> Vec<(&'static str, String)> {
    let mut env = isolated.env.clone();
    env.extend([
        (
            "SALESTALK__PIPELINE__ALLOWED_LATENESS_MS",
            LATENESS_MS.to_string(),
        ),
        (
            "SALESTALK__PIPELINE__MAX_FUTURE_SKEW_MS",
            SKEW_MS.to_string(),
        ),
        ("SALESTALK__PIPELINE__FLUSH_INTERVAL_MS", "300".to_string()),
        ("SALESTALK__PIPELINE__BATCH_SIZE", "2000".to_string()),
        // These tests check the live numbers against a recomputation with the allowed
        // lateness; traffic that spans midnight would otherwise have its first day corrected
        // (its late events counted) while they run. tests/services/corrections.rs turns it on.
        ("SALESTALK__CORRECTIONS__INTERVAL_MS", "0".to_string()),
        // The suite's broker (tansu 0.6.0) answers a joining group leader before the other
        // members rejoined, so the cooperative assignor can give a partition to two instances
        // for a while; runs of several instances use the eager assignor here, and
        // tests/services/rebalance.rs tests the cooperative one (the default) on purpose.
        ("SALESTALK__KAFKA__ASSIGNMENT_STRATEGY", "range".to_string()),
    ]);
    env
}

/// The tests' traffic: 25 tenants with every fault and evolution the generator has.
pub const TRAFFIC: [&str; 18] = [
    "--tenants",
    "25",
    "--duplicates",
    "0.03",
    "--invalid",
    "0.02",
    "--out-of-order",
    "0.04",
    "--late",
    "0.02",
    "--future-skew",
    "0.005",
    "--shared-ids",
    "0.01",
    "--v2",
    "0.3",
    "--new-enum-values",
    "0.01",
];

/// Produces `events` of the tests' traffic (duplicates, invalid, out-of-order, late and
/// clock-skewed events) at `rate` per second of event time, ending two minutes ago.
pub fn produce(env: &[(&'static str, String)], seed: u64, events: u64, rate: u64) {
    produce_to("--kafka", env, seed, events, rate, 120);
}

/// [`produce`] to `target` (`--kafka` or `--kinesis`), the span ending `ago_s` seconds ago.
pub fn produce_to(
    target: &str,
    env: &[(&'static str, String)],
    seed: u64,
    events: u64,
    rate: u64,
    ago_s: i64,
) {
    produce_over(target, env, seed, events, (events / rate) as i64, ago_s);
}

/// `events` of the tests' traffic into `target` (`--kafka` or `--kinesis`), spread evenly over
/// `span` seconds of event time ending `ago_s` seconds ago.
pub fn produce_over(
    target: &str,
    env: &[(&'static str, String)],
    seed: u64,
    events: u64,
    span: i64,
    ago_s: i64,
) {
    // Event time is recent, as a live producer's would be, so lateness and clock skew are
    // judged against broker times that make sense; spans long enough for events to be late.
    // The whole span ends two minutes ago, so no honest event is ahead of its broker time.
    let rate = events as f64 / span.max(1) as f64;
    let start =
        DateTime::from_timestamp(Utc::now().timestamp() - span - ago_s, 0).expect("valid time");
    let (seed, events, start, rate) = (
        seed.to_string(),
        events.to_string(),
        start.to_rfc3339(),
        rate.to_string(),
    );
    let mut args = vec![
        "generate", target, "--seed", &seed, "--count", &events, "--start", &start, "--rate", &rate,
    ];
    args.extend(TRAFFIC);
    stdout_of(&salestalk(&args, env));
}

/// Produces the tests' traffic into `isolated`'s topics.
pub fn setup_on(isolated: Isolated, events: u64, rate: u64) -> Setup {
    produced_on(isolated, 77, events, rate)
}

/// `isolated` with `events` of the tests' traffic from `seed` produced into it.
fn produced_on(isolated: Isolated, seed: u64, events: u64, rate: u64) -> Setup {
    let env = pipeline_env(&isolated);
    produce(&env, seed, events, rate);
    Setup { isolated, env }
}

/// Every message of the topics, per partition in offset order: (broker ms, bytes).
pub fn read_back(isolated: &Isolated) -> Input {
    let topics = &isolated.topics;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &isolated.brokers)
        .set("group.id", unique("readback"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    for topic in topics {
        for partition in 0..isolated.partitions {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("watermarks");
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("assign");
            if high > 0 {
                remaining.insert((topic.clone(), partition), high);
            }
        }
    }
    consumer.assign(&assignment).expect("assign");
    let mut out: Input = BTreeMap::new();
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(600);
    while !remaining.is_empty() && std::time::Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let key = (message.topic().to_string(), message.partition());
        out.entry(key.clone()).or_default().push((
            message.offset(),
            message.timestamp().to_millis().expect("broker timestamp"),
            message.payload().unwrap_or_default().to_vec(),
        ));
        if remaining
            .get(&key)
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            remaining.remove(&key);
        }
    }
    assert!(remaining.is_empty(), "could not read back {remaining:?}");
    eprintln!(
        "read back {} messages of {} partitions in {:.1?}",
        out.values().map(Vec::len).sum::<usize>(),
        out.len(),
        started.elapsed()
    );
    out
}

/// The oracle keeps its own minute arithmetic, so a bug in `operators::time` cannot hide here.
fn minute(ms: i64) -> i64 {
    ms.div_euclid(60_000) * 60
}

/// What the metric definitions give for an input.
#[derive(Debug, Default, PartialEq)]
pub struct Expected {
    /// Distinct valid events per (minute, tenant, event type, source).
    pub volume: BTreeMap<TenantKey, u64>,
    /// Cost and tokens per (day, tenant, event type, model).
    pub cost: BTreeMap<TenantKey, CostValue>,
    /// Classifications per (minute, tenant, intent, subject, measure).
    pub intents: BTreeMap<IntentKey, (u64, f64, u64)>,
    /// Every dead letter: (topic, partition, offset, reason).
    pub dead_letters: BTreeSet<(String, i32, i64, String)>,
    /// Events counted.
    pub accepted: u64,
    /// Events that came after their window was final: archived (marked late) for the
    /// correction of their day, not counted live.
    pub late_archived: u64,
    /// Events counted although another tenant's counted event in the same partition has
    /// their `eventId` (an id is unique per tenant only).
    pub shared_ids: u64,
    /// Events carrying an enum value this build does not know, per (event type, field, value).
    pub new_enum_values: BTreeMap<(String, String, String), u64>,
    /// Per (UTC day start, tenant): message costs and conversation totals, in nanodollars.
    pub reconciliation: BTreeMap<(i64, String), (i64, i64)>,
    /// Events counted per event type (v1 and v2 apart).
    pub by_event_type: BTreeMap<String, u64>,
}

/// The metric definitions, applied to the whole input at once.
pub fn recompute(input: &Input) -> Expected {
    recompute_with(input, Some(LATENESS_MS))
}

/// [`recompute`] with `lateness_ms` allowed (`None`: nothing is late, as a backfill counts).
pub fn recompute_with(input: &Input, lateness_ms: Option<i64>) -> Expected {
    recompute_lineage(input, &BTreeMap::new(), lateness_ms)
}

/// Where a partition's fold stands: what a later partition of its lineage starts from.
#[derive(Debug, Clone, Default)]
struct Fold {
    watermark: Option<i64>,
    // An eventId is unique within its tenant only.
    seen: HashSet<(String, String)>,
    tenants_of: HashMap<String, String>,
}

/// [`recompute_with`] where a partition listed in `parents` (a Kinesis shard born of a split
/// or merge) continues its parents' folds: their ids and their latest watermark, as if it
/// were one stream with each of them. Parents sort before their children (shard numbers grow).
pub fn recompute_lineage(
    input: &Input,
    parents: &BTreeMap<(String, i32), Vec<(String, i32)>>,
    lateness_ms: Option<i64>,
) -> Expected {
    let mut expected = Expected::default();
    let mut folds: BTreeMap<(String, i32), Fold> = BTreeMap::new();
    for ((topic, partition), messages) in input {
        let mut fold = Fold::default();
        for parent in parents
            .get(&(topic.clone(), *partition))
            .into_iter()
            .flatten()
        {
            let earlier = folds.get(parent).cloned().unwrap_or_default();
            fold.watermark = fold.watermark.max(earlier.watermark);
            fold.seen.extend(earlier.seen);
            fold.tenants_of.extend(earlier.tenants_of);
        }
        let Fold {
            watermark,
            seen,
            tenants_of,
        } = &mut fold;
        for (offset, broker_ms, bytes) in messages {
            let problems = check(bytes, 1 << 20);
            if let Some(first) = problems.first() {
                let reason = salestalk_contracts::reason_for(&problems)
                    .as_str()
                    .to_string();
                let _ = first;
                expected
                    .dead_letters
                    .insert((topic.clone(), *partition, *offset, reason));
                continue;
            }
            let value = parse(bytes).expect("checked");
            let event = validate(&value).expect("checked");
            let id = event.envelope.event_id.to_string();
            let tenant = event.envelope.tenant_id.to_string();
            if seen.contains(&(tenant.clone(), id.clone())) {
                continue;
            }
            let stamped = event.envelope.timestamp.timestamp_millis();
            let skewed = stamped > broker_ms + SKEW_MS;
            let trusted = if skewed { *broker_ms } else { stamped };
            let window = minute(trusted);
            // A window is final once the watermark passes its end plus the allowed lateness.
            let late = lateness_ms.is_some_and(|lateness| {
                watermark.is_some_and(|wm| window * 1000 + 60_000 + lateness <= wm)
            });
            if late {
                // Within the correction horizon (the tests' traffic always is): archived for
                // the correction of its day, remembered as seen, not counted live.
                assert!(trusted >= broker_ms - HORIZON_MS, "too late for the tests");
                seen.insert((tenant, id));
                expected.late_archived += 1;
                continue;
            }
            if tenants_of.get(&id).is_some_and(|other| *other != tenant) {
                expected.shared_ids += 1;
            }
            tenants_of.insert(id.clone(), tenant.clone());
            seen.insert((tenant.clone(), id));
            if !skewed {
                *watermark = Some(watermark.map_or(stamped, |wm| wm.max(stamped)));
            }
            expected.accepted += 1;
            let name = event.envelope.event_type.as_str().to_string();
            *expected.by_event_type.entry(name.clone()).or_default() += 1;
            for (field, value) in event.data.new_enum_values() {
                *expected
                    .new_enum_values
                    .entry((name.clone(), field.to_string(), value.to_string()))
                    .or_default() += 1;
            }
            let event_type = event.envelope.event_type.as_str().to_string();
            *expected
                .volume
                .entry((
                    window,
                    tenant.clone(),
                    event_type.clone(),
                    event.envelope.source.to_string(),
                ))
                .or_default() += 1;
            match &event.data {
                EventData::NarrativeGenerated(n) => {
                    let day = window.div_euclid(86_400) * 86_400;
                    let entry = expected
                        .cost
                        .entry((day, tenant, event_type, n.ai_model.model_id.to_string()))
                        .or_default();
                    entry.0 += (n.cost.amount_usd * 1e9).round() as i64;
                    entry.1 += n.token_usage.prompt.unwrap_or(0);
                    entry.2 += n.token_usage.completion.unwrap_or(0);
                    entry.3 += n.token_usage.total.unwrap_or(0);
                    entry.4 += 1;
                }
                EventData::ConversationCompleted(c) => {
                    let day = window.div_euclid(86_400) * 86_400;
                    let entry = expected
                        .reconciliation
                        .entry((day, tenant.clone()))
                        .or_default();
                    entry.1 += (c.total_cost_usd * 1e9).round() as i64;
                }
                EventData::ClassificationPerformed(c) => {
                    let c = &c.classification;
                    let key = (
                        window,
                        tenant,
                        c.intent.as_wire().to_string(),
                        c.subject.as_wire().to_string(),
                        c.measure.as_wire().to_string(),
                    );
                    let entry = expected.intents.entry(key).or_default();
                    entry.0 += 1;
                    entry.1 += c.confidence;
                    entry.2 += u64::from(c.confidence < 0.5);
                }
                _ => {}
            }
        }
        folds.insert((topic.clone(), *partition), fold);
    }
    expected
}

#[derive(Debug, Row, Deserialize)]
struct VolumeRow {
    window_start: u32,
    tenant_id: String,
    event_type: String,
    source: String,
    events: u64,
}

#[derive(Debug, Row, Deserialize)]
struct ReconciliationRow {
    day: u32,
    tenant_id: String,
    message_cost_nanos: i64,
    conversation_total_nanos: i64,
    difference_nanos: i64,
    difference_usd: String,
}

#[derive(Debug, Row, Deserialize)]
struct NewValueRow {
    event_type: String,
    field: String,
    value: String,
    events: u64,
}

#[derive(Debug, Row, Deserialize)]
struct CostRow {
    day: u16,
    tenant_id: String,
    event_type: String,
    model: String,
    cost_nanos: i64,
    cost_cents: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    messages: u64,
}

#[derive(Debug, Row, Deserialize)]
struct IntentRow {
    window_start: u32,
    tenant_id: String,
    intent: String,
    subject: String,
    measure: String,
    classifications: u64,
    avg_confidence: f64,
    low_confidence: u64,
}

#[derive(Debug, Row, Deserialize)]
struct DeadLetterRow {
    topic: String,
    partition: i32,
    offset: i64,
    reason: String,
}

#[derive(Debug, Row, Deserialize)]
struct LatencyRow {
    consumer: String,
    events: u64,
    p95_ms: f64,
}

/// "12.500000001" as nanodollars, or "12.50" as cents: the digits without the point.
fn decimal_units(text: &str, places: usize) -> i64 {
    let (whole, fraction) = text.split_once('.').expect("a decimal point");
    assert_eq!(fraction.len(), places, "{text} has {places} places");
    format!("{whole}{fraction}").parse().expect("digits")
}

/// `salestalk billing export` for every month of the input equals the recomputation summed
/// per tenant and month: tokens and messages exactly, the cost to the nanodollar, and the
/// billed amount to the cent (half away from zero).
pub fn assert_billing_export_matches(setup: &Setup, cost: &BTreeMap<TenantKey, CostValue>) {
    let mut expected: BTreeMap<String, BTreeMap<String, CostValue>> = BTreeMap::new();
    for ((day, tenant, _, _), value) in cost {
        let month = DateTime::from_timestamp(*day, 0)
            .expect("a day")
            .format("%Y-%m")
            .to_string();
        let entry = expected
            .entry(month)
            .or_default()
            .entry(tenant.clone())
            .or_default();
        entry.0 += value.0;
        entry.1 += value.1;
        entry.2 += value.2;
        entry.3 += value.3;
        entry.4 += value.4;
    }
    assert!(!expected.is_empty(), "the traffic must carry costs");
    for (month, tenants) in expected {
        let csv = stdout_of(&salestalk(
            &["billing", "export", "--month", &month],
            &setup.env,
        ));
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .expect("a header")
            .iter()
            .map(str::to_string)
            .collect();
        assert_eq!(
            header,
            [
                "month",
                "tenant_id",
                "messages",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "cost_usd",
                "billed_usd",
                "may_change",
                "final_from"
            ]
        );
        let mut got = BTreeMap::new();
        for record in reader.records() {
            let record = record.expect("a CSV row");
            assert_eq!(&record[0], month);
            let nanos = decimal_units(&record[6], 9);
            let billed = decimal_units(&record[7], 2);
            assert_eq!(
                billed,
                (nanos + 5_000_000).div_euclid(10_000_000),
                "{month} {}: billed {} for {}",
                &record[1],
                &record[7],
                &record[6]
            );
            // The month is recent: late events of it may still arrive.
            assert_eq!(&record[8], "true", "{month} {}", &record[1]);
            let count = |i: usize| record[i].parse::<u64>().expect("a count");
            got.insert(
                record[1].to_string(),
                (nanos, count(3), count(4), count(5), count(2)),
            );
        }
        assert_eq!(got, tenants, "billing export for {month}");
    }
}

/// Asserts that every family's hourly and daily view equals its minute view summed over the
/// same hours and days: counters and histograms exactly, floating-point sums to 1e-9.
pub async fn assert_rollups_sum_their_minutes(endpoint: &salestalk_store::Endpoint) {
    let client = endpoint.client();
    for family in Family::ALL {
        let layout = family.layout();
        let dims: Vec<&str> = layout
            .dims
            .iter()
            .copied()
            .filter(|d| !d.is_empty())
            .collect();
        let key = ["t", "tenant_id"]
            .into_iter()
            .chain(dims.iter().copied())
            .collect::<Vec<_>>()
            .join(", ");
        for (span, minute_bucket) in [
            (Span::Hour, "toStartOfHour(window_start)"),
            (Span::Day, "toDateTime(toDate(window_start), 'UTC')"),
        ] {
            let (rollup, time) = family_view_name(family, span);
            let minutes = family_view_name(family, Span::Minute).0;
            let mut summed = vec![format!("{minute_bucket} AS t"), "tenant_id".to_string()];
            let mut read = vec![format!("{time} AS t"), "tenant_id".to_string()];
            let mut differs = Vec::new();
            for dim in &dims {
                summed.push(dim.to_string());
                read.push(dim.to_string());
            }
            for name in layout.ints {
                summed.push(format!("sum({name}) AS m_{name}"));
                read.push(format!("{name} AS r_{name}"));
                differs.push(format!("m_{name} != r_{name}"));
            }
            for name in layout.floats {
                summed.push(format!("sum({name}) AS m_{name}"));
                read.push(format!("{name} AS r_{name}"));
                differs.push(format!(
                    "abs(m_{name} - r_{name}) > 1e-9 * greatest(abs(m_{name}), 1)"
                ));
            }
            if let Some(name) = layout.histogram {
                let column = format!("{name}_histogram");
                summed.push(format!("sumMap({column}.1, {column}.2) AS m_h"));
                read.push(format!("{column} AS r_h"));
                differs.push("toString(m_h) != toString(r_h)".to_string());
            }
            let sql = format!(
                "SELECT toUInt64(count()) AS rows, toUInt64(countIf(side = 0 OR side2 = 0)) AS missing, \
                 toUInt64(countIf({})) AS differing FROM \
                 (SELECT {}, 1 AS side FROM {minutes} GROUP BY {key}) \
                 ALL FULL OUTER JOIN (SELECT {}, 1 AS side2 FROM {rollup}) USING ({key}) \
                 WHERE 1",
                differs.join(" OR "),
                summed.join(", "),
                read.join(", "),
            );
            let (rows, missing, differing): (u64, u64, u64) = client
                .query(&sql)
                .fetch_one()
                .await
                .unwrap_or_else(|e| panic!("{rollup}: {e}\n{sql}"));
            // Late arrivals and contract warnings exist only where the traffic had them.
            assert!(
                rows > 0 || matches!(family, Family::LateArrivals | Family::ContractWarnings),
                "{rollup} is empty"
            );
            assert_eq!(
                (missing, differing),
                (0, 0),
                "{rollup} against {minutes}\n{sql}"
            );
        }
    }
}

/// Asserts that every task's sealed rows (ADR 0023), the hours before its checkpoint's hour
/// seal and the days before its day seal, are exactly the sums of its durable minutes (days:
/// of its sealed hours): the same keys, counters and histograms, sums to 1e-9. Read on each
/// shard's writer, where its tasks' rows and fences are. Returns how many sealed rows it
/// compared (none where the traffic closed no hour).
pub async fn assert_sealed_rows_sum_their_minutes(endpoint: &salestalk_store::Endpoint) -> u64 {
    let mut sealed_rows = 0;
    for writer in endpoint.shard_writers() {
        let database = &writer.database;
        let marks = format!(
            "SELECT task, argMax(ints[5], epoch) AS sealed_hours, \
             argMax(ints[6], epoch) AS sealed_days FROM {database}.window_state \
             WHERE family = 'checkpoint' GROUP BY task"
        );
        for family in Family::ALL {
            for span in Span::ROLLUPS {
                let mark = if span == Span::Hour {
                    "sealed_hours"
                } else {
                    "sealed_days"
                };
                let before_mark = |rows: &str| {
                    format!(
                        "SELECT * FROM ({rows}) AS window_rows ANY INNER JOIN ({marks}) AS marks USING task WHERE toInt64(toUInt32(start)) < {mark}"
                    )
                };
                let sealed = salestalk_store::seal::sealed_rows_sql(database, family, span, "")
                    .expect("a rollup span");
                let written = salestalk_store::schema::views::latest_where(
                    database,
                    family,
                    span,
                    "window_start",
                    "",
                );
                let sql = format!(
                    "SELECT toUInt64(count()) AS rows, toUInt64(countIf(side = 0 OR side2 = 0)) AS missing, \
                     toUInt64(countIf(ints_sum != ints OR length(floats_sum) != length(floats) \
                     OR arrayExists((a, b) -> abs(a - b) > 1e-9 * greatest(abs(a), 1), floats_sum, floats) \
                     OR buckets != hist_buckets OR counts != hist_counts)) AS differing FROM \
                     (SELECT task, start, tenant_id, d1, d2, d3, ints_sum, floats_sum, buckets, counts, \
                     1 AS side FROM ({})) \
                     ALL FULL OUTER JOIN (SELECT task, start, tenant_id, d1, d2, d3, \
                     ints, floats, hist_buckets, hist_counts, 1 AS side2 FROM ({})) \
                     USING (task, start, tenant_id, d1, d2, d3)",
                    before_mark(&sealed),
                    before_mark(&format!("SELECT window_start AS start, * FROM ({written})")),
                );
                let (rows, missing, differing): (u64, u64, u64) = writer
                    .client()
                    .query(&sql)
                    .fetch_one()
                    .await
                    .unwrap_or_else(|e| panic!("sealing {family:?} {span:?}: {e}\n{sql}"));
                assert_eq!(
                    (missing, differing),
                    (0, 0),
                    "sealed {family:?} {span:?} rows against their minutes ({rows} keys) on {}\n{sql}",
                    writer.url
                );
                sealed_rows += rows;
            }
        }
    }
    sealed_rows
}

/// Asserts that every public view equals the batch recomputation of the topics' contents,
/// which must include late events.
pub async fn assert_views_match(setup: &Setup) -> Expected {
    assert_views_equal_recomputation(setup, true).await
}

/// Asserts that every public view equals the batch recomputation of the topics' contents;
/// `with_late`: the traffic must exercise lateness.
pub async fn assert_views_equal_recomputation(setup: &Setup, with_late: bool) -> Expected {
    let input = read_back(&setup.isolated);
    assert_views_equal(setup, recompute(&input), with_late).await
}

/// Asserts that every public view of `setup`'s database equals `expected` (a recomputation);
/// `with_late`: the traffic must exercise lateness.
pub async fn assert_views_equal(setup: &Setup, expected: Expected, with_late: bool) -> Expected {
    assert!(expected.accepted > 1_000 && !expected.dead_letters.is_empty());
    assert!(
        !with_late || expected.late_archived > 0,
        "the traffic must exercise lateness"
    );

    let endpoint = setup.isolated.endpoint();
    let client = endpoint.client();

    let rows: Vec<VolumeRow> = client
        .query("SELECT toUInt32(window_start) AS window_start, tenant_id, event_type, source, events FROM event_volume")
        .fetch_all()
        .await
        .expect("event_volume");
    let got: BTreeMap<_, _> = rows
        .into_iter()
        .map(|r| {
            (
                (
                    i64::from(r.window_start),
                    r.tenant_id,
                    r.event_type,
                    r.source,
                ),
                r.events,
            )
        })
        .collect();
    assert_eq!(got, expected.volume, "event_volume");

    let rows: Vec<CostRow> = client
        .query(
            "SELECT toUInt16(day) AS day, tenant_id, event_type, model, cost_nanos, toString(cost_usd) AS cost_cents, \
             prompt_tokens, completion_tokens, total_tokens, messages FROM tenant_cost_daily",
        )
        .fetch_all()
        .await
        .expect("tenant_cost_daily");
    let mut got = BTreeMap::new();
    for r in rows {
        // cost_usd is the exact decimal of the nanodollar sum.
        let cents = format!(
            "{}.{:09}",
            r.cost_nanos.div_euclid(1_000_000_000),
            r.cost_nanos.rem_euclid(1_000_000_000)
        );
        assert_eq!(r.cost_cents, cents);
        got.insert(
            (
                i64::from(r.day) * 86_400,
                r.tenant_id,
                r.event_type,
                r.model,
            ),
            (
                r.cost_nanos,
                r.prompt_tokens,
                r.completion_tokens,
                r.total_tokens,
                r.messages,
            ),
        );
    }
    assert_eq!(got, expected.cost, "tenant_cost_daily");
    assert_billing_export_matches(setup, &expected.cost);

    let mut reconciliation = expected.reconciliation.clone();
    for ((day, tenant, _, _), value) in &expected.cost {
        reconciliation.entry((*day, tenant.clone())).or_default().0 += value.0;
    }
    let rows: Vec<ReconciliationRow> = client
        .query(
            "SELECT toUInt32(toDateTime(day)) AS day, tenant_id, message_cost_nanos, \
             conversation_total_nanos, difference_nanos, toString(difference_usd) AS difference_usd \
             FROM tenant_cost_reconciliation",
        )
        .fetch_all()
        .await
        .expect("tenant_cost_reconciliation");
    let mut got = BTreeMap::new();
    for r in rows {
        assert_eq!(
            r.difference_nanos,
            r.conversation_total_nanos - r.message_cost_nanos
        );
        assert_eq!(
            decimal_units(&r.difference_usd, 9),
            r.difference_nanos,
            "exact dollars"
        );
        got.insert(
            (i64::from(r.day), r.tenant_id),
            (r.message_cost_nanos, r.conversation_total_nanos),
        );
    }
    assert_eq!(got, reconciliation, "tenant_cost_reconciliation");

    let rows: Vec<NewValueRow> = client
        .query("SELECT event_type, field, value, events FROM new_enum_values")
        .fetch_all()
        .await
        .expect("new_enum_values");
    let got: BTreeMap<_, _> = rows
        .into_iter()
        .map(|r| ((r.event_type, r.field, r.value), r.events))
        .collect();
    assert_eq!(got, expected.new_enum_values, "new_enum_values");
    assert_rollups_sum_their_minutes(&endpoint).await;
    assert_sealed_rows_sum_their_minutes(&endpoint).await;

    let rows: Vec<IntentRow> = client
        .query(
            "SELECT toUInt32(window_start) AS window_start, tenant_id, intent, subject, measure, classifications, \
             avg_confidence, low_confidence FROM intents_per_tenant",
        )
        .fetch_all()
        .await
        .expect("intents_per_tenant");
    assert_eq!(
        rows.len(),
        expected.intents.len(),
        "intents_per_tenant rows"
    );
    for r in rows {
        let key = (
            i64::from(r.window_start),
            r.tenant_id,
            r.intent,
            r.subject,
            r.measure,
        );
        let (count, confidence_sum, low) = expected
            .intents
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected {key:?}"));
        assert_eq!(
            (r.classifications, r.low_confidence),
            (*count, *low),
            "{key:?}"
        );
        assert!(
            (r.avg_confidence - confidence_sum / *count as f64).abs() < 1e-9,
            "{key:?}"
        );
    }

    let dead_letters = everywhere(&client, "dead_letters").await;
    let rows: Vec<DeadLetterRow> = client
        // Refusals by a sink are not in the input (tests/services/dead_letters.rs covers
        // them), nor are entries the gateway refused before they reached a topic (ingest.rs).
        .query(&format!("SELECT topic, partition, offset, reason FROM {dead_letters} FINAL WHERE reason NOT IN ('sink_rejected', 'retries_exhausted', 'rejected_at_ingest', 'delivery_failed')"))
        .fetch_all()
        .await
        .expect("dlq");
    let got: BTreeSet<_> = rows
        .into_iter()
        .map(|r| (r.topic, r.partition, r.offset, r.reason))
        .collect();
    assert_eq!(got, expected.dead_letters, "dead_letters");

    // Latency: the documented percentile query against exact percentiles of the archive's
    // durable_at - event time, per consumer.
    let query = salestalk_store::schema::latency_percentiles_query(&endpoint.database, "1");
    let rows: Vec<LatencyRow> = client
        .query(&format!(
            "SELECT consumer, toUInt64(events) AS events, p95_ms FROM ({query})"
        ))
        .fetch_all()
        .await
        .expect("latency");
    // The metrics hold the events counted live; the archive the late ones too.
    let archive = everywhere(&client, "events_raw").await;
    for (consumer, rows_of, events) in [
        ("clickhouse.metrics", "late = 0", expected.accepted),
        (
            "clickhouse.archive",
            "1",
            expected.accepted + expected.late_archived,
        ),
    ] {
        let mut exact: Vec<f64> = client
            .query(&format!(
                "SELECT toFloat64(greatest(toInt64(durable_at_ms) - if(clock_skewed = 1, toInt64(broker_time) * 1000, timestamp_ms), 0)) \
                 FROM {archive} FINAL WHERE {rows_of}"
            ))
            .fetch_all()
            .await
            .expect("archive latencies");
        exact.sort_by(f64::total_cmp);
        let p95 = exact[((0.95 * exact.len() as f64).ceil() as usize).max(1) - 1];
        let row = rows
            .iter()
            .find(|r| r.consumer == consumer)
            .unwrap_or_else(|| panic!("no latency for {consumer}"));
        assert_eq!(row.events, events, "{consumer} latency count");
        // Skewed events' broker time is stored to the second: allow that on top of the bound.
        let error = (row.p95_ms - p95).abs();
        assert!(
            error <= p95 * RELATIVE_ERROR * 1.001 + 1000.0,
            "{consumer}: p95 {} vs exact {p95}",
            row.p95_ms
        );
    }
    expected
}

#[tokio::test(flavor = "multi_thread")]
async fn every_view_equals_the_batch_recomputation() {
    let setup = setup("it-exact", 12_000, 20).await;
    let run = salestalk(&["run", "--idle-exit", "6s"], &setup.env);
    stdout_of(&run);
    let expected = assert_views_match(&setup).await;
    // The traffic mixed both versions of classification.performed and new enum values.
    let versions = |v: &str| expected.by_event_type.get(v).copied().unwrap_or(0);
    assert!(
        versions("classification.performed.v1") > 100
            && versions("classification.performed.v2") > 100,
        "{:?}",
        expected.by_event_type
    );
    assert!(
        expected.new_enum_values.len() >= 3,
        "{:?}",
        expected.new_enum_values
    );
    // So tenants reusing each other's eventIds in one partition were all counted and billed.
    assert!(
        expected.shared_ids > 5,
        "the traffic shares ids across tenants in a partition: {}",
        expected.shared_ids
    );
    setup.isolated.remove().await;
}

/// `salestalk run` with a stable instance id; with `idle_exit` it stops 6 s after the input.
pub fn spawn_run(env: &[(&'static str, String)], idle_exit: bool) -> Child {
    let args: &[&str] = if idle_exit {
        &["run", "--idle-exit", "6s"]
    } else {
        &["run"]
    };
    // A stable instance id lets each restart take the partitions back at once (tansu never
    // expires a member killed with SIGKILL; see kafka.instance_id in config/salestalk.toml).
    salestalk_command(args, env)
        .env("SALESTALK__KAFKA__INSTANCE_ID", "it-kill-instance")
        .spawn()
        .expect("salestalk run starts")
}

/// Messages made durable so far: the sum of the checkpoints, 0 while ClickHouse is away.
pub async fn durable(isolated: &Isolated) -> i64 {
    let client = isolated.endpoint().client();
    // On a cluster the checkpoints of every shard are read through the Distributed twin.
    let table = everywhere(&client, "window_state").await;
    client
        .query(&format!("SELECT toInt64(sum(next)) FROM (SELECT task, argMax(ints[1], epoch) AS next FROM {table} WHERE family = 'checkpoint' GROUP BY task)"))
        .fetch_one::<i64>()
        .await
        .unwrap_or(0)
}

/// Where every task's rows of `table` are read: its Distributed twin on a cluster (the tasks
/// may be on several shards), else the table.
pub async fn everywhere(client: &clickhouse::Client, table: &str) -> String {
    let twin = format!("{table}_all");
    let twins: u64 = client
        .query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(&twin)
        .fetch_one()
        .await
        .unwrap_or(0);
    if twins > 0 { twin } else { table.to_string() }
}

/// Waits until `target` messages are durable (at most five minutes) and returns how many are;
/// fails the test at once if one of `runs` has stopped meanwhile (a run that could not start,
/// say), instead of waiting out the deadline.
pub async fn wait_durable(setup: &Setup, target: i64, runs: &mut [&mut Child]) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let now = durable(&setup.isolated).await;
        if now >= target || std::time::Instant::now() > deadline {
            return now;
        }
        for run in runs.iter_mut() {
            if let Some(status) = run.try_wait().expect("the run's status") {
                panic!("salestalk run stopped ({status}) with {now} of {target} durable");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When a SIGKILL lands, counted from the moment the run has made something durable.
pub enum KillMoment {
    /// A random moment up to `max_delay` later (seeded).
    Random {
        /// Seeds the delays.
        seed: u64,
        /// The longest delay.
        max_delay: Duration,
    },
    /// As soon as the run's `/metrics` on `port` shows a flush in flight (reading goes on
    /// meanwhile, so the kill also lands mid-batch).
    FlushInFlight {
        /// The run's metrics port (the runs get `SALESTALK__TELEMETRY__LISTEN` set to it).
        port: u16,
    },
}

/// Starts `salestalk run` `kills` times and kills it with SIGKILL each time at `moment`; then
/// lets a last run finish. Asserts that at least `mid_stream` kills landed while the run had
/// work left, so a test cannot pass by killing runs that had nothing left to do, and that the
/// `total` messages are each durable once in the end. Returns how many kills were seen to land
/// while a flush was in flight.
pub async fn kill_at(
    setup: &Setup,
    total: i64,
    kills: usize,
    mid_stream: usize,
    moment: KillMoment,
) -> usize {
    let mut env = setup.env.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(match moment {
        KillMoment::Random { seed, .. } => seed,
        KillMoment::FlushInFlight { .. } => 0,
    });
    if let KillMoment::FlushInFlight { port } = moment {
        env.push(("SALESTALK__TELEMETRY__LISTEN", format!("127.0.0.1:{port}")));
    }
    let mut history = vec![0];
    let mut during_flush = 0;
    for _ in 0..kills {
        let before = durable(&setup.isolated).await;
        let mut child = spawn_run(&env, false);
        eventually(
            Duration::from_secs(120),
            || durable(&setup.isolated),
            |n| *n != before,
        )
        .await;
        match &moment {
            KillMoment::Random { max_delay, .. } => {
                let delay = rng.random_range(0..max_delay.as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            KillMoment::FlushInFlight { port } => {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while std::time::Instant::now() < deadline {
                    let body = scrape(*port).unwrap_or_default();
                    if value(&body, "salestalk_flush_in_flight ") == Some(1.0) {
                        during_flush += 1;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        history.push(durable(&setup.isolated).await);
    }
    let landed = history
        .windows(2)
        .filter(|w| w[0] < w[1] && w[1] < total)
        .count();
    assert!(
        landed >= mid_stream,
        "kills must land mid-stream: progress {history:?} of {total}"
    );
    let last = finish(spawn_run(&env, true), RUN_LIMIT, "the last run");
    assert!(last.status.success());
    assert_eq!(durable(&setup.isolated).await, total, "durable once each");
    during_flush
}

/// [`kill_at`] random moments.
pub async fn kill_at_random_moments(
    setup: &Setup,
    total: i64,
    kills: usize,
    mid_stream: usize,
    seed: u64,
    max_delay: Duration,
) {
    let moment = KillMoment::Random { seed, max_delay };
    kill_at(setup, total, kills, mid_stream, moment).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_changes_no_view() {
    let setup = setup("it-kill", 60_000, 60).await;
    let total: i64 = read_back(&setup.isolated)
        .values()
        .map(|m| m.len() as i64)
        .sum();
    kill_at_random_moments(&setup, total, 5, 2, 7, Duration::from_millis(1_500)).await;
    assert_views_match(&setup).await;
    setup.isolated.remove().await;
}

/// The parallel runtime's promise: partitions spread over three workers, reading going on
/// while a flush is written, and the pipeline killed while that flush is in flight.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_a_flush_is_in_flight_on_several_workers_changes_no_view() {
    let isolated = Isolated::create("it-kill-flush", 4).await;
    let mut setup = setup_on(isolated, 40_000, 60);
    setup.env.extend([
        ("SALESTALK__PIPELINE__WORKERS", "3".to_string()),
        ("SALESTALK__PIPELINE__OVERLAP_FLUSH", "true".to_string()),
        // Small batches: reading goes on between the flushes it overlaps.
        ("SALESTALK__PIPELINE__BATCH_SIZE", "500".to_string()),
    ]);
    let total: i64 = read_back(&setup.isolated)
        .values()
        .map(|m| m.len() as i64)
        .sum();
    let moment = KillMoment::FlushInFlight { port: free_port() };
    let during_flush = kill_at(&setup, total, 4, 2, moment).await;
    assert!(
        during_flush >= 3,
        "only {during_flush} of 4 kills were seen to land while a flush was in flight"
    );
    assert_views_match(&setup).await;
    setup.isolated.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_the_restart_counts_exactly() {
    let setup = setup("it-term", 30_000, 40).await;
    let client = setup.isolated.endpoint().client();
    let child = salestalk_command(&["run"], &setup.env)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("salestalk run starts");
    // Stop it once it is under way.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done: u64 = client
            .query("SELECT count() FROM window_state WHERE family = 'checkpoint'")
            .fetch_one()
            .await
            .unwrap_or(0);
        if done > 0 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let output = finish(child, RUN_LIMIT, "the drain after SIGTERM");
    assert!(
        output.status.success(),
        "SIGTERM must drain and exit cleanly, got {}",
        output.status
    );
    // Drained: everything the run read is durable, checkpoints included.
    let tally: salestalk_operators::Tally =
        serde_json::from_slice(&output.stdout).expect("the run prints its tally");
    assert!(
        tally.messages > 0,
        "the run was stopped before it read anything"
    );
    assert_eq!(
        durable(&setup.isolated).await,
        tally.messages as i64,
        "read but not made durable before exit"
    );
    let rest = finish(spawn_run(&setup.env, true), RUN_LIMIT, "the restart");
    assert!(rest.status.success());
    assert_views_match(&setup).await;
    setup.isolated.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_sharing_the_group_produce_the_same_views() {
    let setup = setup("it-pair", 20_000, 40).await;
    let client = setup.isolated.endpoint().client();
    let port = free_port();
    let instance = |id: &str, metrics: Option<u16>| {
        let listen = metrics.map_or(String::new(), |port| format!("127.0.0.1:{port}"));
        salestalk_command(&["run", "--idle-exit", "20s"], &setup.env)
            .env("SALESTALK__KAFKA__INSTANCE_ID", id)
            .env("SALESTALK__TELEMETRY__LISTEN", listen)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("salestalk run starts")
    };
    let first = instance("pair-a", None);
    // The second joins once the first is under way, so partitions move mid-stream (and
    // while the first has a flush in flight, which the revocation waits for).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let checkpoints: u64 = client
            .query("SELECT count() FROM window_state WHERE family = 'checkpoint'")
            .fetch_one()
            .await
            .unwrap_or(0);
        if checkpoints > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = instance("pair-b", Some(port));
    // More traffic once the second owns partitions (its lag series appear): however fast the
    // first read the first part, both instances have work then.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if scrape(port).is_some_and(|body| body.contains("salestalk_partition_lag{")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce(&setup.env, 78, 20_000, 40);
    let mut read = Vec::new();
    for child in [first, second] {
        let output = finish(child, RUN_LIMIT, "an instance of the pair");
        assert!(output.status.success());
        let tally: salestalk_operators::Tally =
            serde_json::from_slice(&output.stdout).expect("tally");
        read.push(tally.messages);
    }
    assert!(
        read.iter().all(|n| *n > 0),
        "both instances must have owned partitions: {read:?}"
    );
    let tasks: Vec<String> = client
        .query("SELECT DISTINCT task FROM window_state WHERE family = 'checkpoint'")
        .fetch_all()
        .await
        .expect("tasks");
    assert_eq!(tasks.len(), 15, "every partition was worked on");
    assert_views_match(&setup).await;
    setup.isolated.remove().await;
}

/// The commit point stays one block, one part (ADR 0004), whatever a flush would hold: with
/// `pipeline.max_flush_rows` at 300, tasks stop at half of it until flushed, restored rows are
/// written again a flush's room at a time, and whole flushes are grouped into inserts under
/// it. Through three SIGKILLs every view equals the recomputation, and no state insert the
/// server logged for this run carried more than 300 rows.
#[tokio::test(flavor = "multi_thread")]
async fn every_state_insert_stays_under_the_flush_cap_and_no_view_changes() {
    // A setting at a value nobody else uses marks this run's queries in the server's log.
    const MARK: &str = "262161";
    let mut setup = setup("it-cap", 12_000, 20).await;
    setup.env.extend([
        ("SALESTALK__PIPELINE__MAX_FLUSH_ROWS", "300".to_string()),
        (
            "SALESTALK__CLICKHOUSE__SETTINGS__LOG_QUERIES",
            "1".to_string(),
        ),
        (
            "SALESTALK__CLICKHOUSE__SETTINGS__MAX_QUERY_SIZE",
            MARK.to_string(),
        ),
    ]);
    let total: i64 = read_back(&setup.isolated)
        .values()
        .map(|m| m.len() as i64)
        .sum();
    kill_at_random_moments(&setup, total, 3, 1, 11, Duration::from_millis(1_500)).await;
    assert_views_match(&setup).await;
    let client = setup.isolated.endpoint().client();
    client
        .query("SYSTEM FLUSH LOGS")
        .execute()
        .await
        .expect("flush logs");
    let (inserts, largest): (u64, u64) = client
        .query(
            "SELECT toUInt64(count()), toUInt64(max(written_rows)) FROM system.query_log \
             WHERE type = 2 AND query LIKE 'INSERT INTO `window_state`%' AND has(Settings.Values, ?)",
        )
        .bind(MARK)
        .fetch_one()
        .await
        .expect("query log");
    assert!(inserts > 50, "{inserts} state inserts");
    assert!(largest <= 300, "a state insert carried {largest} rows");
    assert!(
        largest >= 150,
        "inserts are filled up to the cap: {largest}"
    );
    setup.isolated.remove().await;
}
