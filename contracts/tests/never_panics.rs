//! Property tests: whatever bytes arrive, decoding and validation return an answer, never a
//! panic, and every reported pointer really points into the input (or at the document).

mod support;

use proptest::prelude::*;
use salestalk_contracts::{Json, check, parse, validate};
use serde_json::Value;

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A spec example with one position replaced by an arbitrary value.
fn mutated_example() -> impl Strategy<Value = Value> {
    let examples = support::examples();
    (
        0..examples.len(),
        any::<prop::sample::Index>(),
        json_value(),
    )
        .prop_map(move |(i, at, value)| {
            let example = examples[i].clone();
            let pointers = support::all_pointers(&example);
            let pointer = at.get(&pointers).clone();
            support::set(example, &pointer, value)
        })
}

fn pointers_resolve(value: &Value) -> bool {
    match validate(&Json::from(value)) {
        Ok(_) => true,
        Err(violations) => violations.iter().all(|v| {
            // A missing field's pointer names the field, so check its parent exists.
            let parent = v.path.rsplit_once('/').map_or("", |(parent, _)| parent);
            value.pointer(&v.path).is_some() || value.pointer(parent).is_some()
        }),
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let violations = check(&bytes, 1 << 20);
        // Random bytes are essentially never a valid event.
        prop_assert!(!violations.is_empty());
    }

    #[test]
    fn arbitrary_json_never_panics_and_pointers_resolve(value in json_value()) {
        prop_assert!(pointers_resolve(&value));
    }

    #[test]
    fn mutated_examples_never_panic_and_pointers_resolve(value in mutated_example()) {
        prop_assert!(pointers_resolve(&value));
        let bytes = serde_json::to_vec(&value).expect("serialisable");
        let reparsed = parse(&bytes).expect("round trip");
        prop_assert_eq!(validate(&reparsed).is_ok(), validate(&Json::from(&value)).is_ok());
    }

    #[test]
    fn truncated_examples_are_rejected_as_not_json(cut in 1usize..400) {
        let line = support::SPEC_EXAMPLES.lines().next().expect("example");
        let cut = cut.min(line.len() - 1);
        let violations = check(&line.as_bytes()[..cut], 1 << 20);
        prop_assert_eq!(violations.len(), 1);
        prop_assert_eq!(violations[0].path.as_str(), "");
    }
}
