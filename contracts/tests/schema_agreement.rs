//! The Rust validator and the shipped JSON Schema files must agree: same verdict and the same
//! offending pointers, over the spec's examples and thousands of systematic mutations of them.
//!
//! The schema side runs the independent `jsonschema` implementation (draft-07, formats on).

mod support;

use salestalk_contracts::schemas;
use serde_json::{Value, json};
use support::schema::{compile, schema_pointers};
use support::{all_pointers, examples, remove, rust_pointers, set};

/// Replacement values tried at every position of every example.
fn replacements() -> Vec<Value> {
    vec![
        Value::Null,
        json!(""),
        json!("x"),
        json!(-1),
        json!(0),
        json!(1),
        json!(1.5),
        json!(5),
        json!(387.0),
        json!(1e300),
        json!(9007199254740992u64),
        json!(true),
        json!([]),
        json!(["revenue", "revenue"]),
        json!({}),
        json!("2025-11-09T12:34:56.789Z"),
        json!("2025-11-09T12:34:56+02:00"),
        json!("2025-02-29T12:34:56Z"),
        json!("2025-11-09T25:34:56Z"),
        json!("550e8400-e29b-41d4-a716-446655440000"),
        json!("550e8400-e29b-41d4-a716-44665544000Z"),
        json!("USD"),
        json!("revenue"),
        json!("fact_retrieval"),
        json!("bedrock"),
        json!("api"),
        json!("a@b"),
        json!("1.7"),
        json!("narrative.generated.v1"),
        json!("narrative.generated.v9"),
        json!("billing.invoiced.v1"),
        // The bounds of contracts::limits, just within and just over.
        json!("a".repeat(salestalk_contracts::limits::MAX_IDENTIFIER_LEN)),
        json!("é".repeat(salestalk_contracts::limits::MAX_IDENTIFIER_LEN + 1)),
        json!(
            (0..=salestalk_contracts::limits::MAX_SET_ITEMS)
                .map(|i| format!("s{i}"))
                .collect::<Vec<_>>()
        ),
    ]
}

/// The spec examples and every single-field mutation of them.
fn corpus() -> Vec<Value> {
    let mut cases = Vec::new();
    for example in examples() {
        cases.push(example.clone());
        for at in all_pointers(&example) {
            cases.push(remove(example.clone(), &at));
            for value in replacements() {
                cases.push(set(example.clone(), &at, value));
            }
        }
    }
    cases.extend([json!([]), json!("event"), json!(1), json!(null), json!({})]);
    cases
}

#[test]
fn every_schema_file_compiles() {
    for (file, _) in schemas::FILES {
        if *file != "common.schema.json" {
            compile(file);
        }
    }
}

#[test]
fn rust_validator_and_event_schema_agree_on_every_case() {
    let validator = compile("event.schema.json");
    let cases = corpus();
    assert!(cases.len() > 5_000, "corpus too small: {}", cases.len());
    let mut invalid = 0;
    for case in &cases {
        let rust = rust_pointers(case);
        let schema = schema_pointers(&validator, case);
        assert_eq!(rust, schema, "disagreement on {case}");
        invalid += usize::from(!rust.is_empty());
    }
    // The comparison means something only if both verdicts occur often.
    assert!(
        invalid > cases.len() / 2,
        "{invalid} invalid of {}",
        cases.len()
    );
    assert!(cases.len() - invalid > 100, "too few valid cases");
}

#[test]
fn per_type_schema_files_agree_with_the_rust_validator() {
    for example in examples() {
        let event_type = example["eventType"].as_str().expect("string").to_string();
        let validator = compile(&format!("{event_type}.schema.json"));
        for at in all_pointers(&example)
            .into_iter()
            .filter(|p| p != "/eventType")
        {
            for case in [
                remove(example.clone(), &at),
                set(example.clone(), &at, json!(-1)),
            ] {
                assert_eq!(
                    rust_pointers(&case),
                    schema_pointers(&validator, &case),
                    "{case}"
                );
            }
        }
        assert!(validator.is_valid(&example), "{event_type} example");
    }
}
