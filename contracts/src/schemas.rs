//! The JSON Schema (draft-07) files of the contracts, embedded for tools and tests.
//!
//! `event.schema.json` validates any event (it dispatches on `eventType`); the per-type files
//! validate one event type each. All of them reference `common.schema.json` for the envelope
//! and the shared enums, resolved by their `$id`s.

/// Base URI under which every schema file's `$id` lives.
pub const BASE_URI: &str = "https://schemas.salestalk.dev/events/";

/// Every schema file: (file name, contents).
pub const FILES: &[(&str, &str)] = &[
    (
        "common.schema.json",
        include_str!("../schemas/common.schema.json"),
    ),
    (
        "event.schema.json",
        include_str!("../schemas/event.schema.json"),
    ),
    (
        "classification.performed.v1.schema.json",
        include_str!("../schemas/classification.performed.v1.schema.json"),
    ),
    (
        "classification.performed.v2.schema.json",
        include_str!("../schemas/classification.performed.v2.schema.json"),
    ),
    (
        "narrative.generated.v1.schema.json",
        include_str!("../schemas/narrative.generated.v1.schema.json"),
    ),
    (
        "conversation.completed.v1.schema.json",
        include_str!("../schemas/conversation.completed.v1.schema.json"),
    ),
    (
        "metrics.ingested.v1.schema.json",
        include_str!("../schemas/metrics.ingested.v1.schema.json"),
    ),
    (
        "tenant.provisioned.v1.schema.json",
        include_str!("../schemas/tenant.provisioned.v1.schema.json"),
    ),
];

/// The schema that validates any event.
pub const EVENT_SCHEMA: &str = include_str!("../schemas/event.schema.json");
