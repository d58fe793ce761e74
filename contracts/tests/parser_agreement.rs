//! The SIMD tokenizer behind `parse` must build the document serde_json would: the same
//! values for every JSON text, and the same verdict (accepted or `NotJson`) for every byte
//! string, so swapping tokenizers changes no event's fate.

mod support;

use proptest::prelude::*;
use salestalk_contracts::{Json, json::MAX_DEPTH, parse};
use serde_json::Value;

/// Arbitrary JSON values, strings with any characters (escapes, control characters, astral
/// planes) and numbers of every kind serde_json keeps.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[\"\\\\/\\n\\t\\u{0}-\\u{1f}a-z\\u{80}-\\u{10ffff}]{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// serde_json's verdict on the same bytes, the reference the pipeline used to have.
fn serde_accepts(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok()
}

proptest! {
    #[test]
    fn every_json_text_parses_to_the_same_document(value in json_value(), pretty: bool) {
        let bytes = if pretty {
            serde_json::to_vec_pretty(&value)
        } else {
            serde_json::to_vec(&value)
        }
        .expect("serialisable");
        let parsed = parse(&bytes).expect("valid JSON");
        prop_assert_eq!(parsed, Json::from(&value));
    }

    #[test]
    fn arbitrary_bytes_get_the_same_verdict(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(parse(&bytes).is_ok(), serde_accepts(&bytes));
    }

    #[test]
    fn damaged_examples_get_the_same_verdict(
        line in 0usize..8,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut: bool,
    ) {
        let lines: Vec<&str> = support::SPEC_EXAMPLES.lines().collect();
        let mut bytes = lines[line % lines.len()].as_bytes().to_vec();
        let at = at.index(bytes.len());
        if cut {
            bytes.truncate(at);
        } else {
            bytes[at] = byte;
        }
        prop_assert_eq!(parse(&bytes).is_ok(), serde_accepts(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn edge_cases_get_serde_jsons_verdict() {
    let cases: &[&[u8]] = &[
        b"",
        b" ",
        b"{} ",
        b" {}\n",
        b"{}x",
        b"{} {}",
        b"\"\\ud800\"",
        b"\"\\ud800\\u0041\"",
        b"\"\\udc00\"",
        b"\"\\ud83d\\ude00\"",
        b"\"\\u00e9\"",
        b"\"\\x\"",
        b"\"tab\there\"",
        b"\"\xc3\xa9\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xf4\x90\x80\x80\"",
        b"\"\xc0\xaf\"",
        b"01",
        b"-0",
        b"-",
        b"1.",
        b".5",
        b"1e",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"18446744073709551615",
        b"18446744073709551616",
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"0.1e1",
        b"1E+2",
        b"[1,]",
        b"{\"a\":1,}",
        b"{\"a\" 1}",
        b"{1:1}",
        b"nul",
        b"null",
        b"true ",
        b"[true,false,null]",
        b"\xef\xbb\xbf{}",
        b"{\"a\":\"\\/\"}",
    ];
    for bytes in cases {
        let ours = parse(bytes);
        assert_eq!(
            ours.is_ok(),
            serde_accepts(bytes),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        if let (Ok(ours), Ok(theirs)) = (ours, serde_json::from_slice::<Value>(bytes)) {
            assert_eq!(
                ours,
                Json::from(&theirs),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

#[test]
fn nesting_is_accepted_to_the_limit_and_refused_past_it() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let limit = usize::from(MAX_DEPTH);
    assert!(parse(nested(limit).as_bytes()).is_ok());
    assert!(parse(nested(limit + 1).as_bytes()).is_err());
    let objects = format!("{}1{}", "{\"a\":".repeat(limit + 1), "}".repeat(limit + 1));
    assert!(parse(objects.as_bytes()).is_err());
    // Far past it: refused without recursing that deep (a debug build's frames are large).
    assert!(parse(nested(100_000).as_bytes()).is_err());
}
