//! Delivery to the routing targets on the real broker and ClickHouse: rules with tenant and
//! event-type patterns fan each event out to exactly its targets' topics (keyed by tenant,
//! with the eventId in a header); a target whose topic does not exist is retried, its events
//! become dead letters naming it while the other targets and the metrics get everything; once
//! the topic exists the target receives new events, and a redrive delivers the dead letters to
//! it. Per-target outcomes and latency land where the SRE page reads them.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, TopicPartitionList};
use serde_json::Value;

use crate::support::eventually::becomes_ready;
use crate::support::fixtures::Examples;
use crate::support::{Isolated, create_topics_at, produce_events, salestalk, stdout_of};

/// One delivered record: key, the eventId header, the eventId in the payload, and the
/// correlation and trace headers (empty when absent).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Delivered {
    key: String,
    header_id: String,
    payload_id: String,
    correlation: String,
    trace: String,
}

/// Every record of `topic` (one partition).
fn read_topic(brokers: &str, topic: &str) -> Vec<Delivered> {
    crate::support::read_topic(brokers, topic)
        .into_iter()
        .map(|m| Delivered {
            header_id: m.header("salestalk.event_id").to_string(),
            correlation: m.header("salestalk.correlation_id").to_string(),
            trace: m.header("salestalk.trace_id").to_string(),
            key: m.key,
            payload_id: m.event_id,
        })
        .collect()
}

/// The ids of `events`, as delivered records would carry them (key, header, payload).
fn expected(events: &[&Value]) -> Vec<Delivered> {
    let mut out: Vec<Delivered> = events
        .iter()
        .map(|e| {
            let id = e["eventId"].as_str().expect("id").to_string();
            let metadata = |name: &str| e["metadata"][name].as_str().unwrap_or("").to_string();
            Delivered {
                key: e["tenantId"].as_str().expect("tenant").to_string(),
                header_id: id.clone(),
                payload_id: id,
                correlation: metadata("correlationId"),
                trace: metadata("traceId"),
            }
        })
        .collect();
    out.sort();
    out
}

fn sorted(mut records: Vec<Delivered>) -> Vec<Delivered> {
    records.sort();
    records
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Letter {
    topic: String,
    partition: i32,
    reason: String,
    error: String,
    tenant_id: String,
    event_id: String,
    attempts: u32,
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_fan_out_by_tenant_and_a_missing_target_is_dead_lettered_then_recovers() {
    let isolated = Isolated::create("it-routing", 1).await;
    let prefix = &isolated.prefix;
    let topic = |name: &str| format!("{prefix}.target.{name}");
    create_topics_at(
        &isolated.brokers,
        &[topic("vip"), topic("standard"), topic("rest")],
        1,
    )
    .await;
    // `missing` has no topic yet: the target is unavailable.
    let config = std::env::temp_dir().join(format!("{prefix}-routing.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[routing]
unmatched = ["metrics", "rest"]
delivery_timeout_ms = 1500
unavailable_pause_ms = 1000
# The redrive by hand is what this test checks; healing has a test of its own.
heal_interval_ms = 0
[routing.targets.vip]
topic = "{vip}"
[routing.targets.missing]
topic = "{missing}"
[routing.targets.standard]
topic = "{standard}"
[routing.targets.rest]
topic = "{rest}"
[[routing.rules]]
name = "vip"
tenants = ["tenant-vip*"]
targets = ["metrics", "vip", "missing"]
[[routing.rules]]
name = "classifications"
event_types = ["classification.performed.*"]
targets = ["metrics", "standard"]
"#,
            vip = topic("vip"),
            missing = topic("missing"),
            standard = topic("standard"),
            rest = topic("rest"),
        ),
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let env = &isolated.env;

    let routes = stdout_of(&salestalk(
        &[
            "--config",
            &config,
            "routes",
            "--event-type",
            "classification.performed.v1",
            "--tenant",
            "tenant-vip-2",
        ],
        env,
    ));
    assert!(routes.contains("rule: vip"), "{routes}");

    let examples = Examples::new(0x2b7e);
    let types = examples.types();
    let tenants = ["tenant-vip-1", "tenant-vip-2", "tenant-a", "tenant-b"];
    let mut events = Vec::new();
    let mut n = 0;
    for tenant in tenants {
        for event_type in &types {
            for _ in 0..3 {
                n += 1;
                let mut event = examples.event(event_type, tenant, n);
                // A trace id of its own on odd events, none on even ones.
                let metadata = event["metadata"]
                    .as_object_mut()
                    .expect("the examples carry metadata");
                if n % 2 == 1 {
                    metadata.insert("traceId".into(), format!("1-{n:08x}-trace").into());
                } else {
                    metadata.remove("traceId");
                }
                events.push(event);
            }
        }
    }
    produce_events(&isolated, &events).await;
    stdout_of(&salestalk(
        &["--config", &config, "run", "--idle-exit", "6s"],
        env,
    ));

    let is_vip = |e: &&Value| {
        e["tenantId"]
            .as_str()
            .is_some_and(|t| t.starts_with("tenant-vip"))
    };
    let is_classification = |e: &&Value| e["eventType"] == "classification.performed.v1";
    let vip: Vec<&Value> = events.iter().filter(is_vip).collect();
    let standard: Vec<&Value> = events
        .iter()
        .filter(|e| !is_vip(e) && is_classification(e))
        .collect();
    let rest: Vec<&Value> = events
        .iter()
        .filter(|e| !is_vip(e) && !is_classification(e))
        .collect();
    assert_eq!(vip.len() + standard.len() + rest.len(), events.len());
    // Each target got exactly its events, once each, keyed by tenant, the ids in headers (the
    // trace id only where the event has one).
    assert_eq!(
        sorted(read_topic(&isolated.brokers, &topic("vip"))),
        expected(&vip)
    );
    assert_eq!(
        sorted(read_topic(&isolated.brokers, &topic("standard"))),
        expected(&standard)
    );
    assert_eq!(
        sorted(read_topic(&isolated.brokers, &topic("rest"))),
        expected(&rest)
    );
    // The default targets (from the built-in table) are not in these rules: nothing there.
    let default_target = format!("{prefix}.consumer.insights-queue");
    assert!(read_topic(&isolated.brokers, &default_target).is_empty());

    // The archive keeps each event's trace id.
    let client = isolated.endpoint().client();
    let mut archived: Vec<(String, String)> = client
        .query("SELECT DISTINCT event_id, trace_id FROM events_raw")
        .fetch_all()
        .await
        .expect("archived trace ids");
    archived.sort();
    let mut traced: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["eventId"].as_str().expect("id").to_lowercase(),
                e["metadata"]["traceId"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    traced.sort();
    assert_eq!(archived, traced);

    // The missing target's events are dead letters naming it, addressed to its topic.
    let letters: Vec<Letter> = client
        .query(
            "SELECT topic, partition, reason, error, tenant_id, event_id, attempts \
             FROM dead_letters FINAL ORDER BY event_id",
        )
        .fetch_all()
        .await
        .expect("dead letters");
    let vip_ids: BTreeSet<String> = vip
        .iter()
        .map(|e| e["eventId"].as_str().expect("id").to_string())
        .collect();
    let letter_ids: BTreeSet<String> = letters.iter().map(|l| l.event_id.clone()).collect();
    assert_eq!(letter_ids, vip_ids, "one dead letter per undelivered event");
    assert_eq!(letters.len(), vip.len());
    for letter in &letters {
        assert_eq!(
            (
                letter.topic.as_str(),
                letter.partition,
                letter.reason.as_str()
            ),
            (topic("missing").as_str(), -1, "delivery_failed"),
        );
        assert!(letter.error.contains("target missing"), "{}", letter.error);
        assert!(letter.tenant_id.starts_with("tenant-vip"));
        // Tried per [retry] (3 attempts), or not tried while the target was paused.
        assert!([0, 3].contains(&letter.attempts), "{letter:?}");
    }
    assert!(
        letters.iter().any(|l| l.attempts == 3),
        "the target was retried"
    );

    // The metrics counted every event: a failing target holds nothing else.
    let counted: u64 = client
        .query("SELECT sum(events) FROM event_volume")
        .fetch_one()
        .await
        .expect("volume");
    assert_eq!(counted, events.len() as u64);

    // Per-target outcomes and latency, as the SRE page reads them.
    let outcomes: Vec<(String, u64, u64)> = client
        .query(
            "SELECT consumer, sum(attempted), sum(failed) FROM consumer_outcomes \
             WHERE consumer LIKE 'target.%' GROUP BY consumer ORDER BY consumer",
        )
        .fetch_all()
        .await
        .expect("outcomes");
    let n = |v: &Vec<&Value>| v.len() as u64;
    assert_eq!(
        outcomes,
        [
            ("target.missing".to_string(), n(&vip), n(&vip)),
            ("target.rest".to_string(), n(&rest), 0),
            ("target.standard".to_string(), n(&standard), 0),
            ("target.vip".to_string(), n(&vip), 0),
        ]
    );
    let latency: Vec<(String, u64)> = client
        .query(
            "SELECT consumer, sum(events) FROM processing_latency \
             WHERE consumer LIKE 'target.%' GROUP BY consumer ORDER BY consumer",
        )
        .fetch_all()
        .await
        .expect("latency");
    assert_eq!(
        latency,
        [
            ("target.rest".to_string(), n(&rest)),
            ("target.standard".to_string(), n(&standard)),
            ("target.vip".to_string(), n(&vip)),
        ]
    );

    // Once its topic exists the target takes new events, and a redrive delivers its letters.
    create_topics_at(&isolated.brokers, &[topic("missing")], 1).await;
    let later: Vec<Value> = (0..4)
        .map(|i| examples.event("tenant.provisioned.v1", "tenant-vip-3", 1_000 + i))
        .collect();
    produce_events(&isolated, &later).await;
    stdout_of(&salestalk(
        &["--config", &config, "run", "--idle-exit", "6s"],
        env,
    ));
    let later_refs: Vec<&Value> = later.iter().collect();
    assert_eq!(
        sorted(read_topic(&isolated.brokers, &topic("missing"))),
        expected(&later_refs),
        "the recovered target gets the new events"
    );
    let redriven = stdout_of(&salestalk(
        &[
            "--config",
            &config,
            "dlq",
            "redrive",
            "--reason",
            "delivery_failed",
        ],
        env,
    ));
    assert!(
        redriven.contains(&format!("redrove {} entr", vip.len())),
        "{redriven}"
    );
    let mut all_vip = vip.clone();
    all_vip.extend(later_refs);
    let delivered = read_topic(&isolated.brokers, &topic("missing"));
    let ids: BTreeSet<&str> = delivered.iter().map(|d| d.payload_id.as_str()).collect();
    let wanted: BTreeSet<&str> = all_vip
        .iter()
        .map(|e| e["eventId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, wanted, "after the redrive the target has every event");
    assert_eq!(delivered.len(), all_vip.len(), "each once");
    assert!(
        delivered
            .iter()
            .all(|d| d.key.starts_with("tenant-vip") && d.header_id == d.payload_id),
        "redriven records keep the tenant key and the eventId header: {delivered:?}"
    );
    isolated.remove().await;
}

/// A target stopped for two minutes (its topic is not there) while events keep coming for
/// it: its events become dead letters, and once it answers again they are redriven to it by
/// themselves, a bounded number a round, each once: a consumer that deduplicates by `eventId`
/// has every event routed to it exactly once, the DLQ depth is back to 0 and the SRE page's
/// table shows the target healed. No command is run.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_back_after_two_minutes_gets_every_event_with_no_command() {
    let isolated = Isolated::create("it-heal", 1).await;
    let flaky = format!("{}.target.flaky", isolated.prefix);
    let config = std::env::temp_dir().join(format!("{}-heal.toml", isolated.prefix));
    std::fs::write(
        &config,
        format!(
            r#"
[routing]
unmatched = ["metrics", "flaky"]
delivery_timeout_ms = 1500
unavailable_pause_ms = 1000
heal_interval_ms = 2000
heal_batch = 40
[routing.targets.flaky]
topic = "{flaky}"
[[routing.rules]]
name = "everything"
event_types = ["*"]
targets = ["metrics", "flaky"]
"#
        ),
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let mut run = crate::support::salestalk_command(&["--config", &config, "run"], &isolated.env)
        .spawn()
        .expect("salestalk run starts");
    let examples = Examples::new(0x2b7e);
    let types = examples.types();
    let mut events = Vec::new();
    let started = std::time::Instant::now();
    let mut n = 0;
    // Two minutes of traffic while the target is away.
    while started.elapsed() < Duration::from_secs(120) {
        let wave: Vec<Value> = types
            .iter()
            .map(|event_type| {
                n += 1;
                examples.event(event_type, &format!("tenant-{}", n % 3), n)
            })
            .collect();
        produce_events(&isolated, &wave).await;
        events.extend(wave);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    create_topics_at(&isolated.brokers, std::slice::from_ref(&flaky), 1).await;
    let last: Vec<Value> = types
        .iter()
        .map(|event_type| {
            n += 1;
            examples.event(event_type, "tenant-0", n)
        })
        .collect();
    produce_events(&isolated, &last).await;
    events.extend(last);
    let wanted: BTreeSet<String> = events
        .iter()
        .map(|e| e["eventId"].as_str().expect("id").to_string())
        .collect();
    let client = isolated.endpoint().client();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let (delivered, pending) = loop {
        let delivered = read_topic(&isolated.brokers, &flaky);
        let pending: u64 = client
            .query("SELECT toUInt64(sum(entries)) FROM dlq_depth")
            .fetch_one()
            .await
            .unwrap_or(u64::MAX);
        let ids: BTreeSet<String> = delivered.iter().map(|d| d.payload_id.clone()).collect();
        if (ids == wanted && pending == 0) || std::time::Instant::now() > deadline {
            break (delivered, pending);
        }
        if let Some(status) = run.try_wait().expect("the run's status") {
            panic!("salestalk run stopped ({status})");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    run.kill().expect("SIGKILL");
    run.wait().expect("reaped");
    let ids: BTreeSet<String> = delivered.iter().map(|d| d.payload_id.clone()).collect();
    assert_eq!(
        ids, wanted,
        "every event routed to the target, once deduplicated"
    );
    assert_eq!(pending, 0, "the DLQ depth is back to 0 by itself");
    assert!(
        delivered
            .iter()
            .all(|d| d.header_id == d.payload_id && d.key.starts_with("tenant-")),
        "redriven records are deliveries: tenant key, eventId header"
    );
    // The outage made dead letters, all redriven by the healing, each once.
    let (letters, healed): (u64, u64) = client
        .query(
            "SELECT toUInt64(count()), toUInt64(countIf(status = 'redriven'              AND resolution_note LIKE 'healed%')) FROM dead_letter_queue              WHERE reason = 'delivery_failed'",
        )
        .fetch_one()
        .await
        .expect("letters");
    assert!(letters > 40, "the outage left {letters} dead letters");
    assert_eq!(healed, letters, "each redriven by the healing");
    let per_event = delivered.len() as u64;
    assert!(
        per_event <= wanted.len() as u64 + letters,
        "no event delivered more than once besides its redrive"
    );
    // The SRE page's table, as the page runs it.
    let panel = salestalk_dashboards::dashboards()
        .into_iter()
        .flat_map(|d| d.panels)
        .find(|p| p.id == "targets_healed")
        .expect("the panel");
    let salestalk_dashboards::panels::Source::Sql(sql) = &panel.source else {
        panic!("an SQL panel");
    };
    let sql = sql
        .replace("$__timeFilter(resolved_at)", "1")
        .replace(salestalk_dashboards::TENANT_FILTER, "1");
    let rows: Vec<(String, u64, u64, String)> = client
        .query(&sql)
        .fetch_all()
        .await
        .expect("the panel's rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1, rows[0].2),
        (flaky.as_str(), letters, 0)
    );
    isolated.remove().await;
}

/// A number of a `JSONCompact` cell (64-bit integers come quoted).
fn number(cell: &Value) -> f64 {
    cell.as_f64()
        .or_else(|| cell.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_groups_lag_and_its_reported_failures_show_on_the_sre_page() {
    use rdkafka::message::{Header, OwnedHeaders};

    use crate::alerts::serve_with;
    use crate::support::{api_key, http_get_as};

    let isolated = Isolated::create("it-consumers", 1).await;
    let prefix = &isolated.prefix;
    let target = crate::support::WatchedTarget::create(&isolated, "worker").await;
    let (work, group) = (target.topic.as_str(), target.group.as_str());
    let path = std::env::temp_dir().join(format!("{prefix}-routing.toml"));
    std::fs::write(&path, &target.routing).expect("config");
    let path = path.to_string_lossy().into_owned();
    let mut env = isolated.env.clone();

    let examples = Examples::new(0x2b7e);
    let events: Vec<Value> = (0..30)
        .map(|n| examples.event("classification.performed.v1", "tenant-w", n))
        .collect();
    produce_events(&isolated, &events).await;
    stdout_of(&salestalk(
        &["--config", &path, "run", "--idle-exit", "6s"],
        &env,
    ));
    assert_eq!(read_topic(&isolated.brokers, work).len(), events.len());

    // The worker reads ten events, commits past them, and reports two it failed on, as
    // docs/routing.md says: to the dead-letter topic, with its group in `salestalk.consumer`.
    let worker: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &isolated.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("worker");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(work, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    worker.assign(&assignment).expect("assign");
    let mut failed = Vec::new();
    for i in 0..10 {
        let message = worker
            .poll(Duration::from_secs(10))
            .expect("a message")
            .expect("no error");
        if i < 2 {
            failed.push((
                message.payload().unwrap_or_default().to_vec(),
                message.headers().map(|h| h.detach()),
            ));
        }
    }
    target.commit(&isolated.brokers, 10);
    let reporter: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &isolated.brokers)
        .create()
        .expect("producer");
    for (payload, headers) in &failed {
        let headers = headers
            .clone()
            .unwrap_or_else(OwnedHeaders::new)
            .insert(Header {
                key: "salestalk.consumer",
                value: Some(group),
            })
            .insert(Header {
                key: "salestalk.error",
                value: Some("insights model timed out"),
            });
        reporter
            .send(
                FutureRecord::to(&isolated.dlq_topic())
                    .key("tenant-w")
                    .payload(payload)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .expect("reported");
    }
    // A run samples the lag and reads the reports.
    stdout_of(&salestalk(
        &["--config", &path, "run", "--idle-exit", "15s"],
        &env,
    ));

    let admin = api_key(&env, "admin", &[]);
    let (_serve, _dir, port) = serve_with(&mut env, &target.routing);
    assert!(
        becomes_ready(port).await,
        "never became ready on port {port}"
    );
    let (status, body) =
        http_get_as(port, "/api/dashboards/sre?range=1h", Some(&admin)).expect("serve answers");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    let rows = |id: &str| -> Vec<Value> {
        answer["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["result"]["data"].as_array().cloned())
            .unwrap_or_else(|| panic!("panel {id} has no rows: {answer}"))
    };
    // The built-in targets' groups (from the default table) are listed too, with nothing behind.
    let lag = rows("consumer_lag");
    let worker_lag = lag
        .iter()
        .find(|r| r[0].as_str() == Some(group))
        .unwrap_or_else(|| panic!("{group} missing from {lag:?}"));
    // Columns: group, instance (none for a consumer group), topic, partitions, messages and
    // time behind, throttled reads.
    assert_eq!(worker_lag[1].as_str(), Some(""));
    assert_eq!(worker_lag[2].as_str(), Some(work));
    assert_eq!(number(&worker_lag[4]), 20.0, "messages behind: {lag:?}");
    assert!(number(&worker_lag[5]) > 0.0, "time behind: {lag:?}");

    let errors = rows("consumer_errors");
    let of = |consumer: &str| {
        errors
            .iter()
            .find(|r| r[0].as_str() == Some(consumer))
            .unwrap_or_else(|| panic!("{consumer} missing from {errors:?}"))
            .clone()
    };
    let worker_row = of(&format!("group.{group}"));
    assert_eq!(
        (number(&worker_row[1]), number(&worker_row[2])),
        (30.0, 2.0),
        "attempted: what its target took; failed: what it reported"
    );
    assert!((number(&worker_row[3]) - 2.0 / 30.0).abs() < 1e-9);
    let target_row = of("target.work");
    assert_eq!(
        (number(&target_row[1]), number(&target_row[2])),
        (30.0, 0.0)
    );
    let latency = rows("latency");
    assert!(
        latency
            .iter()
            .any(|r| r[0] == "target.work" && number(&r[1]) == 30.0),
        "{latency:?}"
    );
    isolated.remove().await;
}

/// The broker time of every message of `topic`'s partition 0, by offset.
fn broker_times(brokers: &str, topic: &str) -> Vec<i64> {
    crate::support::read_topic(brokers, topic)
        .into_iter()
        .map(|m| m.broker_ms.expect("a timestamp"))
        .collect()
}

/// One probe, made once as `salestalk run` makes it, follows the group sample after sample:
/// its commits, a caught-up group, and messages written after that (the reader it keeps is
/// assigned afresh each time and reads the partition's message at the group's offset).
#[tokio::test(flavor = "multi_thread")]
async fn the_lag_probe_follows_a_groups_commits_sample_after_sample() {
    let isolated = Isolated::create("it-lag-probe", 1).await;
    let target = crate::support::WatchedTarget::create(&isolated, "probed").await;
    let brokers = isolated.brokers.as_str();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let produce = |from: i64, to: i64| {
        let producer = producer.clone();
        let topic = target.topic.clone();
        async move {
            for n in from..to {
                producer
                    .send(
                        FutureRecord::to(&topic)
                            .key("k")
                            .payload(&format!(r#"{{"eventId":"m{n}"}}"#))
                            .timestamp(hour_ago + n * 1_000),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("produced");
            }
        }
    };
    produce(0, 10).await;
    let mut kafka = crate::support::settings().kafka;
    kafka.brokers = brokers.to_string();
    // The group's offsets client, shared with the commit-latency watcher as `run` shares it:
    // what it reads between samples must not move the probe.
    let offsets = std::sync::Arc::new(
        salestalk_kafka::admin::GroupOffsets::new(&kafka, &target.group).expect("offsets"),
    );
    let probe = salestalk_kafka::admin::LagProbe::new(
        &kafka,
        std::sync::Arc::clone(&offsets),
        &target.topic,
    )
    .expect("probe");
    // Each sample also asks the shared client for the group's commit, as the commit-latency
    // watcher does between samples.
    let sample = |expected_messages: i64, expected_commit: Option<i64>| {
        let lags = probe.sample().expect("sampled");
        assert_eq!(lags.len(), 1, "one partition: {lags:?}");
        assert_eq!(lags[0].messages, expected_messages, "{lags:?}");
        let committed = offsets.committed(&target.topic, &[0]).expect("committed");
        let expected: Vec<(i32, i64)> = expected_commit.into_iter().map(|o| (0, o)).collect();
        assert_eq!(
            committed, expected,
            "the group's commit through the shared client"
        );
        lags[0].oldest_unread_ms
    };

    let times = broker_times(brokers, &target.topic);
    assert_eq!(
        sample(10, None),
        Some(times[0]),
        "never committed: from the first"
    );
    target.commit(brokers, 4);
    assert_eq!(sample(6, Some(4)), Some(times[4]));
    target.commit(brokers, 10);
    assert_eq!(sample(0, Some(10)), None, "caught up: nothing unread");
    produce(10, 12).await;
    let times = broker_times(brokers, &target.topic);
    assert_eq!(
        sample(2, Some(10)),
        Some(times[10]),
        "written after the group caught up"
    );
    assert_eq!(sample(2, Some(10)), Some(times[10]), "the same again");
    assert!(times[4] > times[0] && times[10] > times[4], "{times:?}");
    isolated.remove().await;
}
