//! Generated traffic through the real broker: `salestalk generate --kafka` then
//! `salestalk run`, compared with the generator's own record of what it broke.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use salestalk::generate::{
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
