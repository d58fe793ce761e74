//! Generated traffic through the real broker: `salestalk generate --kafka` then
//! `salestalk run`, compared with the generator's own record of what it broke.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use salestalk_generator::{
    DEFAULT_TENANT_SKEW, Fault, FaultRates, Generator, GeneratorOptions, Stop,
};
use salestalk_operators::Tally;

use crate::support::{Isolated, salestalk, stdout_of};

/// Traffic that starts a few minutes ago, as live producers publish it: clock skew is judged
/// against broker time, so event time must be close to when the messages are produced.
fn options(start: DateTime<Utc>) -> GeneratorOptions {
    GeneratorOptions {
        seed: 2024,
        start,
        rate: 300.0,
        tenants: 30,
        tenant_skew: DEFAULT_TENANT_SKEW,
        stop: Stop::Count(15_000),
        faults: FaultRates {
            duplicates: 0.02,
            invalid: 0.02,
            out_of_order: 0.03,
            late: 0.01,
            future_skew: 0.002,
            shared_ids: 0.0,
            v2: 0.0,
            new_enum_values: 0.0,
        },
    }
}

/// What the run must report, from the generator's ground truth alone: messages it did not
/// break are valid; the first copy of each eventId counts, later copies are duplicates.
fn expected_tally(start: DateTime<Utc>) -> Tally {
    let messages: Vec<_> = Generator::new(options(start)).collect();
    let broken: HashSet<&[u8]> = messages
        .iter()
        .filter(|m| matches!(m.fault, Fault::Invalid(_)))
        .map(|m| m.bytes.as_slice())
        .collect();
    let mut expected = Tally {
        messages: messages.len() as u64,
        ..Tally::default()
    };
    let mut seen = HashSet::new();
    for message in &messages {
        if broken.contains(message.bytes.as_slice()) {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(&message.bytes).expect("valid JSON");
        if seen.insert(value["eventId"].as_str().expect("id").to_string()) {
            *expected
                .valid
                .entry(message.event_type.as_str().to_string())
                .or_default() += 1;
        } else {
            expected.duplicates += 1;
        }
    }
    expected
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_traffic_round_trips_through_the_broker_with_exact_counts() {
    let isolated = Isolated::create("it-roundtrip", 3).await;
    let mut env = isolated.env.clone();
    // Nothing in this traffic is late enough to be refused; lateness has its own tests.
    env.push((
        "SALESTALK__PIPELINE__ALLOWED_LATENESS_MS",
        "3600000".to_string(),
    ));
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 300, 0).expect("valid time");
    let o = options(start);
    let produced = salestalk(
        &[
            "generate",
            "--kafka",
            "--seed",
            &o.seed.to_string(),
            "--count",
            "15000",
            "--start",
            &start.to_rfc3339(),
            "--rate",
            "300",
            "--tenants",
            "30",
            "--duplicates",
            "0.02",
            "--invalid",
            "0.02",
            "--out-of-order",
            "0.03",
            "--late",
            "0.01",
            "--future-skew",
            "0.002",
        ],
        &env,
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout_of(&produced).trim()).expect("produce report");
    let expected = expected_tally(start);
    assert_eq!(report["delivered"], expected.messages, "{report}");

    let consumed = salestalk(&["run", "--idle-exit", "8s"], &env);
    let tally: Tally = serde_json::from_str(stdout_of(&consumed).trim()).expect("tally json");
    assert_eq!(tally.messages, expected.messages);
    assert_eq!(tally.valid, expected.valid, "{tally:?}");
    assert_eq!(tally.duplicates, expected.duplicates);
    let broken = expected.messages - expected.valid_total() - expected.duplicates;
    assert_eq!(tally.rejected_total(), broken);
    assert_eq!(
        expected.valid.len(),
        5,
        "every event type flows: {:?}",
        expected.valid
    );
    for reason in [
        "not_json",
        "schema_violation",
        "unknown_event_type",
        "unsupported_version",
    ] {
        assert!(
            tally.rejected.get(reason).is_some_and(|n| *n > 0),
            "no {reason} in {:?}",
            tally.rejected
        );
    }

    // Checkpoints were stored: the same group finds nothing left to read.
    let again = salestalk(&["run", "--idle-exit", "5s"], &env);
    let rest: Tally = serde_json::from_str(stdout_of(&again).trim()).expect("tally json");
    assert_eq!(rest.messages, 0, "a committed group re-read {rest:?}");
    isolated.remove().await;
}

/// The Java client's partitioner for a keyed record: murmur2 of the key bytes (Kafka's
/// `Utils.murmur2`, seed 0x9747b28c), made positive, modulo the partitions.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

#[test]
fn the_java_partitioner_here_is_kafkas() {
    // Kafka's UtilsTest: murmur2 of these strings, before the sign bit is masked.
    for (key, hash) in [
        ("21", -973_932_308_i32),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        ("abc", 479_470_107),
    ] {
        let expected = ((hash as u32 & 0x7fff_ffff) % 1_000_003) as i32;
        assert_eq!(java_partition(key.as_bytes(), 1_000_003), expected, "{key}");
    }
}

/// `generate`, the gateway, `replay` and `dlq redrive` share one producer configuration: a
/// tenant's events land where a Java producer keyed by tenant would put them, so resends by
/// either reach the same task (whose dedup is its own).
#[tokio::test(flavor = "multi_thread")]
async fn our_producers_partition_by_tenant_as_the_java_client_does() {
    let isolated = Isolated::create("it-murmur2", 5).await;
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 300, 0).expect("valid time");
    stdout_of(&salestalk(
        &[
            "generate",
            "--kafka",
            "--count",
            "600",
            "--tenants",
            "40",
            "--start",
            &start.to_rfc3339(),
        ],
        &isolated.env,
    ));
    let input = crate::exactness::read_back(&isolated);
    let mut checked = 0;
    for ((_, partition), messages) in &input {
        for (_, _, bytes) in messages {
            let event: serde_json::Value = serde_json::from_slice(bytes).expect("json");
            let tenant = event["tenantId"].as_str().expect("a tenant");
            assert_eq!(
                *partition,
                java_partition(tenant.as_bytes(), isolated.partitions),
                "{tenant}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 600);
    let used: HashSet<i32> = input.keys().map(|(_, p)| *p).collect();
    assert!(used.len() > 3, "the tenants spread over the partitions");
    isolated.remove().await;
}
