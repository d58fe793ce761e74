//! The generator's traffic, clean and broken, judged by both the Rust validator and the
//! shipped JSON Schema: they must agree on every message, and the verdicts must match what
//! the generator says it did.

#[path = "../../contracts/tests/support/schema.rs"]
mod schema;

use chrono::{DateTime, Utc};
use salestalk_contracts::{parse, validate};
use salestalk_generator::{
    DEFAULT_TENANT_SKEW, Fault, FaultRates, Generator, GeneratorOptions, Stop,
};

#[test]
fn rust_validator_and_schema_agree_on_generated_traffic() {
    let validator = schema::compile("event.schema.json");
    let generator = Generator::new(GeneratorOptions {
        seed: 99,
        start: DateTime::parse_from_rfc3339("2025-11-09T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid"),
        rate: 200.0,
        tenants: 15,
        tenant_skew: DEFAULT_TENANT_SKEW,
        stop: Stop::Count(5_000),
        faults: FaultRates {
            duplicates: 0.01,
            invalid: 0.1,
            out_of_order: 0.02,
            late: 0.01,
            future_skew: 0.01,
            shared_ids: 0.0,
            v2: 0.3,
            new_enum_values: 0.02,
        },
    });
    let (mut checked, mut invalid) = (0, 0);
    for message in generator {
        let Ok(value) = parse(&message.bytes) else {
            assert!(matches!(
                message.fault,
                Fault::Invalid(_) | Fault::Duplicate
            ));
            continue;
        };
        let mut rust: Vec<String> = validate(&value)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.path)
            .collect();
        rust.sort();
        rust.dedup();
        let value: serde_json::Value =
            serde_json::from_slice(&message.bytes).expect("parsed above");
        assert_eq!(rust, schema::schema_pointers(&validator, &value), "{value}");
        if matches!(message.fault, Fault::Invalid(_)) {
            assert!(!rust.is_empty(), "a broken event passed: {value}");
            invalid += 1;
        }
        checked += 1;
    }
    assert!(
        checked > 4_500 && invalid > 300,
        "checked {checked}, invalid {invalid}"
    );
}
