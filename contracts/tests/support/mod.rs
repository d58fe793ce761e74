//! Helpers shared by the contract test suites: the spec's examples and JSON mutations.

#![allow(dead_code)]

use serde_json::Value;

pub mod schema;

/// The five examples from `spec/event-contracts.md`, verbatim, one per line.
pub const SPEC_EXAMPLES: &str = include_str!("../corpus/spec-examples.jsonl");

/// An example of each version added since (`docs/contracts.md`): the spec's v1 example with
/// the v2 changes applied.
pub const V2_EXAMPLES: &str = include_str!("../corpus/v2-examples.jsonl");

/// The spec's example of `event_type`, parsed.
pub fn example(event_type: &str) -> Value {
    examples()
        .into_iter()
        .find(|e| e["eventType"] == event_type)
        .unwrap_or_else(|| panic!("no spec example for {event_type}"))
}

/// The five spec examples and the later versions' examples, parsed.
pub fn examples() -> Vec<Value> {
    SPEC_EXAMPLES
        .lines()
        .chain(V2_EXAMPLES.lines())
        .map(|line| serde_json::from_str(line).expect("spec example is JSON"))
        .collect()
}

/// Removes the member at `pointer` (which must exist).
pub fn remove(mut value: Value, pointer: &str) -> Value {
    let (parent, key) = split(pointer);
    match value
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent for {pointer}"))
    {
        Value::Object(map) => {
            map.remove(key)
                .unwrap_or_else(|| panic!("nothing at {pointer}"));
        }
        Value::Array(items) => {
            items.remove(key.parse().expect("array index"));
        }
        _ => panic!("parent of {pointer} is not a container"),
    }
    value
}

/// Sets the member at `pointer` to `new` (creating it in an object if absent).
pub fn set(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = split(pointer);
    match value
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent for {pointer}"))
    {
        Value::Object(map) => {
            map.insert(key.to_string(), new);
        }
        Value::Array(items) => {
            items[key.parse::<usize>().expect("array index")] = new;
        }
        _ => panic!("parent of {pointer} is not a container"),
    }
    value
}

fn split(pointer: &str) -> (&str, &str) {
    pointer.rsplit_once('/').expect("pointer has a parent")
}

/// Every pointer inside `value` (not the root), depth first.
pub fn all_pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, at: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let mut path = at.to_string();
                    path.push('/');
                    salestalk_contracts::pointer::push_escaped(&mut path, key);
                    out.push(path.clone());
                    walk(child, &path, out);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    let path = format!("{at}/{index}");
                    out.push(path.clone());
                    walk(child, &path, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

/// The sorted, de-duplicated pointers of the violations the Rust validator reports.
pub fn rust_pointers(value: &Value) -> Vec<String> {
    // Through the front door the pipeline uses: bytes in, violations out.
    let bytes = serde_json::to_vec(value).expect("serialisable");
    let mut paths: Vec<String> = salestalk_contracts::check(&bytes, usize::MAX)
        .into_iter()
        .map(|v| v.path)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}
