//! Events the tests publish: the contract's own examples (`spec-examples.jsonl`, one per event
//! type) given an id, a tenant and a time of the test's choosing.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The spec's examples, one JSON event per line.
pub const SPEC_EXAMPLES: &str = include_str!("../../../contracts/tests/corpus/spec-examples.jsonl");

/// The spec's examples by event type.
pub fn spec_examples() -> BTreeMap<String, Value> {
    SPEC_EXAMPLES
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("json");
            let event_type = event["eventType"].as_str().expect("type").to_string();
            (event_type, event)
        })
        .collect()
}

/// The id numbered `n` in the id space `space` (a test's own four hex digits, so the ids of
/// one test read as its own in a failure).
pub fn numbered_id(space: u16, n: u64) -> String {
    format!("{space:04x}0000-0000-4000-8000-{n:012x}")
}

/// `example` as event `id` of `tenant` stamped `at`. A payload naming its tenant names the
/// envelope's.
pub fn stamped(example: &Value, id: &str, tenant: &str, at: DateTime<Utc>) -> Value {
    let mut event = example.clone();
    event["eventId"] = json!(id);
    event["tenantId"] = json!(tenant);
    if event["data"].get("tenantId").is_some() {
        event["data"]["tenantId"] = json!(tenant);
    }
    event["timestamp"] = json!(at.to_rfc3339_opts(SecondsFormat::Millis, true));
    event
}

/// The spec's examples, handing out events numbered in one id space.
pub struct Examples {
    by_type: BTreeMap<String, Value>,
    space: u16,
}

impl Examples {
    /// The examples, numbering ids in `space`.
    pub fn new(space: u16) -> Self {
        Self {
            by_type: spec_examples(),
            space,
        }
    }

    /// The event types with an example, in order.
    pub fn types(&self) -> Vec<String> {
        self.by_type.keys().cloned().collect()
    }

    /// The example of `event_type` as event `n` of `tenant`, stamped now.
    pub fn event(&self, event_type: &str, tenant: &str, n: u64) -> Value {
        self.event_at(event_type, tenant, n, Utc::now())
    }

    /// The example of `event_type` as event `n` of `tenant`, stamped `at`.
    pub fn event_at(&self, event_type: &str, tenant: &str, n: u64, at: DateTime<Utc>) -> Value {
        let example = self
            .by_type
            .get(event_type)
            .unwrap_or_else(|| panic!("the spec has no example of {event_type}"));
        stamped(example, &numbered_id(self.space, n), tenant, at)
    }
}
