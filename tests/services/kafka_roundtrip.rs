//! Generated traffic through the real broker: `salestalk generate --kafka` then
//! `salestalk run`, compared with the generator's own record of what it broke.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use salestalk::generate::{Fault, FaultRates, Generator, GeneratorOptions, Stop};
use salestalk_operators::Tally;

use crate::support::{create_topics, salestalk, stdout_of, unique};

const DOMAINS: [&str; 5] = [
    "classification",
    "narrative",
    "conversation",
    "metrics",
    "tenant",
];

fn options() -> GeneratorOptions {
    GeneratorOptions {
        seed: 2024,
        start: DateTime::parse_from_rfc3339("2025-11-09T08:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid"),
        rate: 300.0,
        tenants: 30,
        stop: Stop::Count(15_000),
        faults: FaultRates {
            duplicates: 0.02,
            invalid: 0.02,
            out_of_order: 0.03,
            late: 0.01,
            future_skew: 0.002,
        },
    }
}

/// What the consumer must report, derived from the generator's ground truth alone: every
/// message it did not break is valid and counted under the type it was generated as.
fn expected_tally() -> (u64, BTreeMap<String, u64>, u64) {
    let messages: Vec<_> = Generator::new(options()).collect();
    let broken: std::collections::HashSet<&[u8]> = messages
        .iter()
        .filter(|m| matches!(m.fault, Fault::Invalid(_)))
        .map(|m| m.bytes.as_slice())
        .collect();
    let mut valid: BTreeMap<String, u64> = BTreeMap::new();
    let mut invalid = 0;
    for message in &messages {
        if broken.contains(message.bytes.as_slice()) {
            invalid += 1;
        } else {
            *valid
                .entry(message.event_type.as_str().to_string())
                .or_default() += 1;
        }
    }
    (messages.len() as u64, valid, invalid)
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_traffic_round_trips_through_the_broker_with_exact_counts() {
    let prefix = unique("it-roundtrip");
    let topics: Vec<String> = DOMAINS.iter().map(|d| format!("{prefix}.{d}")).collect();
    create_topics(&topics, 3).await;
    let env = [
        (
            "SALESTALK__KAFKA__TOPIC_TEMPLATE",
            format!("{prefix}.{{domain}}"),
        ),
        ("SALESTALK__KAFKA__TOPICS", topics.join(",")),
        ("SALESTALK__KAFKA__GROUP_ID", format!("{prefix}-group")),
    ];
    let o = options();
    let produced = salestalk(
        &[
            "generate",
            "--kafka",
            "--seed",
            &o.seed.to_string(),
            "--count",
            "15000",
            "--start",
            "2025-11-09T08:00:00Z",
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
    let (messages, valid, invalid) = expected_tally();
    assert_eq!(report["delivered"], messages, "{report}");

    let consumed = salestalk(&["run", "--idle-exit", "8s"], &env);
    let tally: Tally = serde_json::from_str(stdout_of(&consumed).trim()).expect("tally json");
    assert_eq!(tally.messages, messages);
    assert_eq!(tally.valid, valid);
    assert_eq!(tally.rejected_total(), invalid);
    assert_eq!(valid.len(), 5, "every event type flows: {valid:?}");
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

    // Offsets were committed: the same group finds nothing left to read.
    let again = salestalk(&["run", "--idle-exit", "5s"], &env);
    let rest: Tally = serde_json::from_str(stdout_of(&again).trim()).expect("tally json");
    assert_eq!(rest.messages, 0, "a committed group re-read {rest:?}");
}
