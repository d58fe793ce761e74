//! The ingest gateway against the real broker and ClickHouse: a mixed batch gets exactly one
//! result per entry, in order, with the contract's pointers; only the accepted entries reach
//! the topics, and the pipeline counts exactly those; without a valid publisher key, with a
//! revoked one, or with a body that is not an entries document, nothing is published.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::alerts::serve_with;
use crate::exactness::pipeline_env;
use crate::support::eventually::becomes_ready;
use crate::support::eventually::eventually;
use crate::support::fixtures::Examples;
use crate::support::{
    EVERY_EVENT_TYPE, Isolated, KillOnDrop, PrivateServices, WebhookReceiver, api_key,
    api_key_for_types, free_port, key_id, salestalk, salestalk_command, stdout_of,
};

/// `POST path` with `body` and an optional bearer key: the status, headers and body.
pub(crate) fn post(port: u16, path: &str, key: Option<&str>, body: &[u8]) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("head");
    stream.write_all(body).expect("body");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, head.to_string(), body.to_string())
}

/// A valid classification (the spec's example) numbered `n`, of `tenant`, stamped now.
fn event(n: u32, tenant: &str) -> Value {
    example_of("classification.performed.v1", n, tenant)
}

/// `salestalk ingest` on `env`'s listen address, once it answers.
pub(crate) async fn gateway(env: &[(&'static str, String)], port: u16) -> KillOnDrop {
    let gateway = KillOnDrop(salestalk_command(&["ingest"], env).spawn().expect("ingest"));
    assert!(
        becomes_ready(port).await,
        "never became ready on port {port}"
    );
    gateway
}

/// The pipeline's environment for `isolated`, with the gateway on a free port (returned) and
/// `settings` (`[ingest]` key, value) on top; the schema migrated.
pub(crate) fn gateway_env(
    isolated: &Isolated,
    settings: &[(&'static str, &str)],
) -> (Vec<(&'static str, String)>, u16) {
    let mut env = pipeline_env(isolated);
    let port = free_port();
    env.push(("SALESTALK__INGEST__LISTEN", format!("127.0.0.1:{port}")));
    env.extend(settings.iter().map(|(k, v)| (*k, v.to_string())));
    stdout_of(&salestalk(&["migrate"], &env));
    (env, port)
}

/// `count` valid entries for `tenant`, numbered from `from`, as one request body.
pub(crate) fn entries(from: u32, count: u32, tenant: &str) -> Vec<u8> {
    let entries: Vec<Value> = (from..from + count).map(|n| event(n, tenant)).collect();
    serde_json::to_vec(&json!({ "entries": entries })).expect("json")
}

/// The broker stops: the gateway answers 503 with `Retry-After` and `PublishFailed` for each
/// entry, counts them while the broker is down, and the publish success alert fires; once the
/// broker is back and publishes succeed again, it resolves.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_answers_publish_failed_is_counted_and_the_alert_fires_and_resolves() {
    let services = PrivateServices::start("it-ingest-outage");
    let isolated = Isolated::create_at(
        "it-ingest-outage",
        1,
        &services.brokers,
        &services.clickhouse_url,
    )
    .await;
    let (mut env, port) = gateway_env(
        &isolated,
        &[("SALESTALK__INGEST__PUBLISH_TIMEOUT_MS", "3000")],
    );
    let publisher = api_key(&env, "publisher", &["tenant-a"]);
    let _gateway = gateway(&env, port).await;
    let receiver = WebhookReceiver::start();
    let rules = format!(
        "[alerts]\nevaluate_every_ms = 1000\nwebhooks = [\"{0}/plain\"]\n\
         [[alerts.rules]]\nname = \"PublishSuccessRateLow\"\nsignal = \"publish_success_rate\"\n\
         comparison = \"below\"\nthreshold = 0.99\nfor_ms = 1000\nkeep_firing_ms = 2000\n\
         severity = \"critical\"\nscope = \"tenant\"\nlookback_ms = 600000\nmin_events = 1\n",
        receiver.url
    );
    let (_serve, _config, _) = serve_with(&mut env, &rules);
    let statuses = || -> Vec<String> {
        receiver
            .bodies("/plain")
            .iter()
            .filter(|b| b["rule"] == "PublishSuccessRateLow")
            .map(|b| {
                format!(
                    "{} {}",
                    b["status"].as_str().unwrap_or_default(),
                    b["labels"]["tenant_id"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };

    // Healthy: 50 entries on the bus.
    let (status, _, answer) = post(
        port,
        "/v1/events",
        Some(&publisher),
        &entries(0, 50, "tenant-a"),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"failedEntryCount\":0"), "{answer}");

    // The broker stops: every entry fails, the answer says so and when to retry.
    services.stop("broker");
    let (status, head, answer) = post(
        port,
        "/v1/events",
        Some(&publisher),
        &entries(50, 2, "tenant-a"),
    );
    assert_eq!(status, 503, "{answer}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    let answer: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(answer["failedEntryCount"], 2);
    for entry in answer["entries"].as_array().expect("entries") {
        assert_eq!(entry["errorCode"], "PublishFailed", "{entry}");
    }
    // Counted while the broker is still down, and the alert fires: 50 of 52 is under 99 %.
    let client = isolated.endpoint().client();
    let failed_at_broker = || async {
        client
            .query("SELECT toUInt64(sum(broker_failed)) FROM publish_outcomes WHERE tenant_id = 'tenant-a'")
            .fetch_one::<u64>()
            .await
            .expect("publish outcomes")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (failed_at_broker().await < 2 || statuses().is_empty()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(failed_at_broker().await, 2);
    assert_eq!(statuses(), ["firing tenant-a"]);

    // Back: publishes succeed again (the first may meet the producer the broker forgot, and
    // the gateway renews it), and once 99 % of the lookback's entries are accepted, the alert
    // resolves.
    services.restart("broker");
    let (mut accepted, mut next) = (0, 100);
    let deadline = Instant::now() + Duration::from_secs(180);
    while statuses().len() < 2 && Instant::now() < deadline {
        let (status, _, answer) = post(
            port,
            "/v1/events",
            Some(&publisher),
            &entries(next, 100, "tenant-a"),
        );
        next += 100;
        if status == 200 {
            let answer: Value = serde_json::from_str(&answer).expect("json");
            accepted += 100 - answer["failedEntryCount"].as_u64().unwrap_or(100);
        }
    }
    assert!(accepted > 0, "publishes succeed once the broker is back");
    assert_eq!(statuses(), ["firing tenant-a", "resolved tenant-a"]);
    isolated.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_batch_gets_one_result_per_entry_and_only_the_accepted_are_counted() {
    let isolated = Isolated::create("it-ingest", 2).await;
    let (env, port) = gateway_env(
        &isolated,
        &[
            ("SALESTALK__INGEST__MAX_ENTRY_BYTES", "4096"),
            ("SALESTALK__INGEST__MAX_REQUEST_BYTES", "65536"),
            ("SALESTALK__INGEST__KEY_CACHE_MS", "0"),
            // Idempotent, as on Kafka: safe on the local broker for topics it has not
            // restarted under.
            ("SALESTALK__INGEST__IDEMPOTENT_PRODUCER", "true"),
        ],
    );
    let key = api_key(&env, "publisher", &["tenant-a"]);
    let reader = api_key(&env, "reader", &["tenant-a"]);
    let _gateway = gateway(&env, port).await;

    let mut invalid = event(2, "tenant-a");
    invalid["data"]["classification"]["confidence"] = json!(1.7);
    let mut large = event(4, "tenant-a");
    large["data"]["originalText"] = json!("x".repeat(5_000));
    let batch = json!({"entries": [
        event(1, "tenant-a"),
        invalid,
        event(3, "tenant-b"),
        large,
        event(5, "tenant-a"),
    ]});
    let body = serde_json::to_vec(&batch).expect("json");

    // Nothing without a publisher key.
    assert_eq!(post(port, "/v1/events", None, &body).0, 401);
    assert_eq!(post(port, "/v1/events", Some(&reader), &body).0, 401);
    assert_eq!(post(port, "/v1/events", Some("stk_nonsense"), &body).0, 401);
    // A body that is not an entries document, and one over the limit.
    assert_eq!(post(port, "/v1/events", Some(&key), b"[1, 2]").0, 400);
    assert_eq!(
        post(port, "/v1/events", Some(&key), b"{\"entries\": []}").0,
        400
    );
    let huge = vec![b' '; 70_000];
    assert_eq!(post(port, "/v1/events", Some(&key), &huge).0, 413);

    let (status, _, answer) = post(port, "/v1/events", Some(&key), &body);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(answer["failedEntryCount"], 3, "{answer}");
    let entries = answer["entries"].as_array().expect("entries");
    let codes: Vec<&str> = entries
        .iter()
        .map(|e| e["errorCode"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        ["", "ValidationError", "TenantNotAllowed", "TooLarge", ""]
    );
    assert_eq!(
        entries[0],
        json!({"eventId": "1a9e0000-0000-4000-8000-000000000001"})
    );
    assert_eq!(
        entries[1]["errors"][0]["path"],
        "/data/classification/confidence"
    );
    assert_eq!(
        entries[2]["eventId"],
        "1a9e0000-0000-4000-8000-000000000003"
    );

    // The gateway's ledger: every entry counted by outcome, under its tenant only when the key
    // publishes for it; each entry refused for good kept whole as a dead letter.
    let client = isolated.endpoint().client();
    let publishes = || async {
        client
            .query(
                "SELECT path, tenant_id, submitted, accepted, rejected FROM \
                 (SELECT path, tenant_id, toUInt64(sum(submitted)) AS submitted, \
                 toUInt64(sum(accepted)) AS accepted, toUInt64(sum(rejected)) AS rejected \
                 FROM publish_outcomes GROUP BY path, tenant_id) ORDER BY path, tenant_id",
            )
            .fetch_all::<(String, String, u64, u64, u64)>()
            .await
            .expect("publish outcomes")
    };
    let gateway_rows = vec![
        ("gateway".to_string(), String::new(), 1, 0, 1),
        ("gateway".to_string(), "tenant-a".to_string(), 4, 2, 2),
    ];
    let published = eventually(Duration::from_secs(30), publishes, |rows| {
        *rows == gateway_rows
    })
    .await;
    assert_eq!(published, gateway_rows);
    let by_code: Vec<(String, u64, u64, u64)> = client
        .query(
            "SELECT tenant_id, toUInt64(sum(validation_errors)), toUInt64(sum(tenant_not_allowed)), \
             toUInt64(sum(too_large)) FROM publish_outcomes GROUP BY tenant_id ORDER BY tenant_id",
        )
        .fetch_all()
        .await
        .expect("by code");
    assert_eq!(
        by_code,
        [(String::new(), 0, 1, 0), ("tenant-a".to_string(), 1, 0, 1)]
    );
    let letters: Vec<(String, i32, String, String, String)> = client
        .query(
            "SELECT topic, partition, tenant_id, event_id, error FROM dead_letters \
             WHERE reason = 'rejected_at_ingest' ORDER BY event_id",
        )
        .fetch_all()
        .await
        .expect("dead letters");
    let summary: Vec<(&str, i32, &str, &str)> = letters
        .iter()
        .map(|(topic, partition, tenant, _, error)| {
            let code = error.split(':').next().unwrap_or_default();
            let topic = if topic.ends_with(".classification") {
                "routed"
            } else {
                topic
            };
            (topic, *partition, tenant.as_str(), code)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("routed", -1, "tenant-a", "ValidationError"),
            ("ingest.refused", -1, "", "TenantNotAllowed"),
            ("routed", -1, "tenant-a", "TooLarge"),
        ],
        "{letters:?}"
    );
    assert!(letters[0].4.contains("/data/classification/confidence"));

    // Messages that reach the topics without the gateway still count, as direct publishes.
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &isolated.brokers)
        .create()
        .expect("producer");
    let topic = isolated
        .topics
        .iter()
        .find(|t| t.ends_with(".classification"))
        .expect("a classification topic");
    let direct = serde_json::to_vec(&event(6, "tenant-a")).expect("json");
    for payload in [&direct[..], b"not json"] {
        producer
            .send(
                rdkafka::producer::FutureRecord::<str, _>::to(topic)
                    .key("tenant-a")
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }

    // The pipeline counts exactly the accepted entries, and only the direct messages as
    // publishes: the gateway's were counted by the gateway.
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));
    let counted: u64 = client
        .query("SELECT toUInt64(sum(events)) FROM event_volume")
        .fetch_one()
        .await
        .expect("volume");
    assert_eq!(counted, 3);
    let mut expected = gateway_rows.clone();
    expected.insert(0, ("direct".to_string(), String::new(), 1, 0, 1));
    expected.insert(1, ("direct".to_string(), "tenant-a".to_string(), 1, 1, 0));
    assert_eq!(publishes().await, expected);

    // A revoked key stops working.
    let id = key_id(&key);
    stdout_of(&salestalk(&["keys", "revoke", id], &env));
    assert_eq!(post(port, "/v1/events", Some(&key), &body).0, 401);
    isolated.remove().await;
}

/// `salestalk publish` sends a JSON Lines file through the gateway and lists each line that
/// failed with its code and pointers; what it published is what the pipeline counts.
#[tokio::test(flavor = "multi_thread")]
async fn publish_sends_a_file_through_the_gateway_and_lists_the_failures() {
    let isolated = Isolated::create("it-publish", 2).await;
    let (env, port) = gateway_env(&isolated, &[]);
    let key = api_key(&env, "publisher", &["tenant-a"]);
    let _gateway = gateway(&env, port).await;

    let mut invalid = event(12, "tenant-a");
    invalid["data"]["classification"]["confidence"] = json!(1.7);
    let mut lines: Vec<String> = (0..7)
        .map(|n| event(20 + n, "tenant-a").to_string())
        .collect();
    lines.insert(2, invalid.to_string());
    lines.insert(5, "this is not json".to_string());
    lines.push(String::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");

    let mut with_key = env.clone();
    with_key.push(("SALESTALK_API_KEY", key));
    let output = salestalk(
        &[
            "publish",
            &file.to_string_lossy(),
            "--batch",
            "3",
            "--stats",
        ],
        &with_key,
    );
    assert_eq!(output.status.code(), Some(1), "some entries failed");
    let listed = String::from_utf8_lossy(&output.stdout);
    let failures: Vec<&str> = listed.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(failures.len(), 2, "{listed}");
    assert!(
        failures[0].starts_with("line 3: 1a9e0000-0000-4000-8000-00000000000c ValidationError"),
        "{listed}"
    );
    assert!(
        listed.contains("/data/classification/confidence"),
        "{listed}"
    );
    assert!(
        failures[1].starts_with("line 6: (no eventId) ValidationError"),
        "{listed}"
    );
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("published 7 of 9 entries (2 failed)"),
        "{summary}"
    );
    assert!(summary.contains("\"request_ms_p99\""), "{summary}");
    // Without a key it says what is missing.
    let refused = salestalk(&["publish", &file.to_string_lossy()], &env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SALESTALK_API_KEY"));

    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));
    let counted: u64 = isolated
        .endpoint()
        .client()
        .query("SELECT toUInt64(sum(events)) FROM event_volume")
        .fetch_one()
        .await
        .expect("volume");
    assert_eq!(counted, 7);
    isolated.remove().await;
}

/// A tenant over its rate gets `Throttled` (with `Retry-After`) for the entries past it,
/// counted as throttled, not dropped; `salestalk publish` resends them until they are taken,
/// and the pipeline counts each event once.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_over_its_rate_is_throttled_and_a_resend_gets_through() {
    let isolated = Isolated::create("it-throttle", 2).await;
    let (env, port) = gateway_env(
        &isolated,
        &[("SALESTALK__INGEST__TENANT_ENTRIES_PER_SECOND", "5")],
    );
    let key = api_key(&env, "publisher", &["tenant-a"]);
    let _gateway = gateway(&env, port).await;

    let events: Vec<Value> = (0..12).map(|n| event(40 + n, "tenant-a")).collect();
    let body = serde_json::to_vec(&json!({ "entries": events })).expect("json");
    let (status, head, answer) = post(port, "/v1/events", Some(&key), &body);
    assert_eq!(status, 200, "{answer}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let answer: Value = serde_json::from_str(&answer).expect("json");
    let codes: Vec<&str> = answer["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["errorCode"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(codes[..5], [""; 5]);
    assert_eq!(codes[5..], ["Throttled"; 7]);
    let client = isolated.endpoint().client();
    let throttled = || async {
        client
            .query("SELECT toUInt64(sum(throttled)) FROM publish_outcomes WHERE tenant_id = 'tenant-a'")
            .fetch_one::<u64>()
            .await
            .expect("outcomes")
    };
    let counted = eventually(Duration::from_secs(30), throttled, |n| *n >= 7).await;
    assert_eq!(counted, 7);
    // Throttling is not a failed publish: the publish success the alert measures is 5 of 5.
    let rule = salestalk_alerting::Rule {
        scope: salestalk_alerting::Scope::Tenant,
        lookback_ms: 3_600_000,
        min_events: 1,
        ..salestalk_alerting::Rule::spec_defaults()
            .into_iter()
            .find(|r| r.signal == salestalk_alerting::Signal::PublishSuccessRate)
            .expect("the publish success rule")
    };
    let measured = isolated.endpoint().measure(&rule).await.expect("measured");
    let tenant_a: Vec<(u64, f64)> = measured
        .iter()
        .filter(|m| m.subject_tenant == "tenant-a")
        .map(|m| (m.measured, m.value))
        .collect();
    assert_eq!(tenant_a, [(5, 1.0)], "{measured:?}");

    // All twelve again through `publish`: it resends what is throttled until it is taken.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.jsonl");
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).expect("write");
    let mut with_key = env.clone();
    with_key.push(("SALESTALK_API_KEY", key));
    let output = salestalk(
        &["publish", &file.to_string_lossy(), "--batch", "12"],
        &with_key,
    );
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{summary}");
    assert!(
        summary.contains("published 12 of 12 entries (0 failed)"),
        "{summary}"
    );

    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));
    let counted: u64 = client
        .query("SELECT toUInt64(sum(events)) FROM event_volume")
        .fetch_one()
        .await
        .expect("volume");
    assert_eq!(counted, 12, "each event once, however often it was sent");
    isolated.remove().await;
}

/// What the gateway publishes is counted exactly: the tests' rich traffic (duplicates, shared
/// ids, out-of-order, late and clock-skewed events, v2 and new enum values) sent through the
/// gateway, with a few messages produced straight to a topic, gives every public view the
/// batch recomputation of what reached the topics; the gateway refused exactly the invalid
/// entries, and publish success counts both paths.
#[tokio::test(flavor = "multi_thread")]
async fn what_the_gateway_publishes_is_counted_exactly_as_a_batch_recomputation() {
    let isolated = Isolated::create("it-gateway-exact", 2).await;
    let (env, port) = gateway_env(&isolated, &[]);
    let tenants: Vec<String> = (0..25).map(|i| format!("tenant-{i:04}")).collect();
    let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
    let key = api_key_for_types(&env, "publisher", &names, &EVERY_EVENT_TYPE);
    let _gateway = gateway(&env, port).await;

    let generated = generate_file(&env, 29, 3_000);
    let (file, messages, invalid) = (&generated.path, generated.messages, generated.invalid);

    let mut with_key = env.clone();
    with_key.push(("SALESTALK_API_KEY", key));
    let output = salestalk(
        &["publish", &file.to_string_lossy(), "--batch", "100"],
        &with_key,
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    let refused = listed.lines().filter(|l| l.starts_with("line ")).count() as u64;
    assert_eq!(
        refused, invalid,
        "the gateway refuses exactly the invalid entries"
    );
    assert!(
        listed
            .lines()
            .filter(|l| l.starts_with("line "))
            .all(|l| l.contains("ValidationError")),
        "{listed}"
    );

    // A few messages straight to a topic: counted as direct publishes, and dead-lettered.
    crate::support::produce_not_json(&isolated, 3).await;

    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));
    let setup = crate::exactness::Setup { isolated, env };
    let expected = crate::exactness::assert_views_equal_recomputation(&setup, false).await;
    let client = setup.isolated.endpoint().client();
    let by_path: Vec<(String, u64, u64)> = client
        .query(
            "SELECT path, toUInt64(sum(submitted)), toUInt64(sum(rejected)) FROM publish_outcomes \
             GROUP BY path ORDER BY path",
        )
        .fetch_all()
        .await
        .expect("publish outcomes");
    assert_eq!(
        by_path,
        [
            ("direct".to_string(), 3, 3),
            ("gateway".to_string(), messages, invalid),
        ]
    );
    assert!(expected.accepted > 2_000);
    setup.isolated.remove().await;
}

/// A generated traffic file for `salestalk publish`, and what the generator said of it.
pub(crate) struct GeneratedFile {
    /// Holds the file.
    _dir: tempfile::TempDir,
    /// The file, one entry a line.
    pub path: std::path::PathBuf,
    /// Lines written (resends included).
    pub messages: u64,
    /// Of them, invalid on purpose.
    pub invalid: u64,
}

/// `events` of the exactness tests' traffic from `seed`, at 100 a second ending two minutes
/// ago, in a file.
pub(crate) fn generate_file(
    env: &[(&'static str, String)],
    seed: u64,
    events: i64,
) -> GeneratedFile {
    let start = chrono::Utc::now() - chrono::Duration::seconds(events / 100 + 120);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let (seed, count, start, output) = (
        seed.to_string(),
        events.to_string(),
        start.to_rfc3339(),
        path.to_string_lossy().into_owned(),
    );
    let mut args = vec![
        "generate", "--seed", &seed, "--count", &count, "--start", &start, "--rate", "100",
        "--output", &output,
    ];
    args.extend(crate::exactness::TRAFFIC);
    let generated = salestalk(&args, env);
    assert!(generated.status.success());
    let report: Value = serde_json::from_slice(
        generated
            .stderr
            .split(|b| *b == b'\n')
            .find(|line| line.starts_with(b"{"))
            .expect("the generator's report"),
    )
    .expect("json");
    let invalid: u64 = report["by_fault"]
        .as_object()
        .expect("faults")
        .iter()
        .filter(|(fault, _)| fault.starts_with("invalid"))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum();
    assert!(invalid > 10, "{report}");
    let messages = report["messages"].as_u64().expect("messages");
    GeneratedFile {
        _dir: dir,
        path,
        messages,
        invalid,
    }
}

/// The spec's example of `event_type`, numbered `n` in the gateway tests' id space, for
/// `tenant`, stamped now.
pub(crate) fn example_of(event_type: &str, n: u32, tenant: &str) -> Value {
    Examples::new(0x1a9e).event(event_type, tenant, n.into())
}

/// A key speaks for its tenants and its event types only: a payload naming another tenant,
/// a platform event without the grant and a type outside the key's patterns are refused
/// `TenantNotAllowed` with a reason (the grant and the pattern let them through); an expired
/// key is refused; a client address that keeps presenting bad keys is answered 429 (with
/// `Retry-After`) before any lookup, whatever key it presents next.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_speaks_only_for_its_tenants_and_granted_types() {
    let isolated = Isolated::create("it-gateway-scopes", 1).await;
    let (env, port) = gateway_env(
        &isolated,
        &[
            ("SALESTALK__INGEST__KEY_CACHE_MS", "0"),
            ("SALESTALK__INGEST__REFUSED_ENTRIES_PER_SECOND", "10"),
        ],
    );
    let plain = api_key(&env, "publisher", &["tenant-a"]);
    let platform = api_key_for_types(&env, "publisher", &["tenant-a"], &EVERY_EVENT_TYPE);
    let conversations = api_key_for_types(&env, "publisher", &["tenant-a"], &["conversation.*"]);
    let short_lived = stdout_of(&salestalk(
        &[
            "keys",
            "create",
            "--role",
            "publisher",
            "--tenant",
            "tenant-a",
            "--expires",
            "3s",
        ],
        &env,
    ))
    .trim()
    .to_string();
    let _gateway = gateway(&env, port).await;
    let send = |key: &str, entries: Vec<Value>| {
        let body = serde_json::to_vec(&json!({ "entries": entries })).expect("json");
        let (status, _, answer) = post(port, "/v1/events", Some(key), &body);
        (
            status,
            serde_json::from_str::<Value>(&answer).unwrap_or_default(),
        )
    };
    let codes = |answer: &Value| -> Vec<String> {
        answer["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["errorCode"].as_str().unwrap_or("").to_string())
            .collect()
    };

    let own = example_of("tenant.provisioned.v1", 1, "tenant-a");
    let mut other = example_of("tenant.provisioned.v1", 2, "tenant-a");
    other["data"]["tenantId"] = json!("tenant-b");
    let classification = example_of("classification.performed.v1", 3, "tenant-a");
    let conversation = example_of("conversation.completed.v1", 4, "tenant-a");

    // A tenant's plain key: no platform events at all, its other types pass.
    let (status, answer) = send(
        &plain,
        vec![own.clone(), other.clone(), classification.clone()],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(codes(&answer), ["TenantNotAllowed", "TenantNotAllowed", ""]);
    assert!(
        answer["entries"][0]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("platform event")),
        "{answer}"
    );
    // With the grant: its own tenant's announcement passes, another tenant's never does.
    let (_, answer) = send(&platform, vec![own, other]);
    assert_eq!(codes(&answer), ["", "TenantNotAllowed"]);
    assert_eq!(answer["entries"][1]["errors"][0]["path"], "/data/tenantId");
    // A key scoped to conversations publishes those only.
    let (_, answer) = send(&conversations, vec![classification.clone(), conversation]);
    assert_eq!(codes(&answer), ["TenantNotAllowed", ""]);

    // An expiring key works, then stops.
    let (status, _) = send(
        &short_lived,
        vec![example_of("classification.performed.v1", 5, "tenant-a")],
    );
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = send(
        &short_lived,
        vec![example_of("classification.performed.v1", 6, "tenant-a")],
    );
    assert_eq!(status, 401);
    assert!(stdout_of(&salestalk(&["keys", "list"], &env)).contains("expires"));

    // Refused entries cost rate: a flood of invalid entries is answered Throttled past the
    // key's allowance (10 a second), and only those within it are kept as dead letters.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let invalid: Vec<Value> = (100..140)
        .map(|n| {
            let mut event = example_of("classification.performed.v1", n, "tenant-a");
            event["data"]["classification"]["confidence"] = json!(1.7);
            event
        })
        .collect();
    let (_, answer) = send(&plain, invalid);
    let flood = codes(&answer);
    let kept = flood.iter().filter(|c| *c == "ValidationError").count();
    let throttled = flood.iter().filter(|c| *c == "Throttled").count();
    assert_eq!(kept + throttled, 40, "{flood:?}");
    assert!((10..=11).contains(&kept), "{flood:?}");
    assert!(
        answer["entries"][39]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("refused entries a second")),
        "{answer}"
    );
    let client = isolated.endpoint().client();
    let letters = || async {
        client
            .query(
                "SELECT count() FROM dead_letters WHERE reason = 'rejected_at_ingest' \
                 AND startsWith(error, 'ValidationError') AND event_id LIKE '1a9e0000-%'",
            )
            .fetch_one::<u64>()
            .await
            .expect("dead letters")
    };
    eventually(Duration::from_secs(30), letters, |n| *n >= kept as u64).await;
    // A moment more: a letter too many would show now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(letters().await, kept as u64);

    // Bad keys from one address: refused, then answered 429 without a lookup.
    let body = entries(10, 1, "tenant-a");
    let statuses: Vec<u16> = (0..40)
        .map(|i| {
            let made_up = format!("stk_{:016x}_{}", i, "0".repeat(64));
            post(port, "/v1/events", Some(&made_up), &body).0
        })
        .collect();
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[35..].iter().all(|s| *s == 429), "{statuses:?}");
    let (_, head, _) = post(port, "/v1/events", Some(&plain), &body);
    assert!(head.to_lowercase().contains("retry-after"), "{head}");
    isolated.remove().await;
}
