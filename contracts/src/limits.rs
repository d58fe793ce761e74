//! Every bound the contracts put on a message's size and shape beyond the spec's types: one
//! home for the numbers docs/guarantees.md ("Hostile input") lists. Each value that becomes a
//! dimension of a metric (tenant, source, model, plan, intents, subjects, ...) is bounded
//! here, so one message cannot open an unbounded number or size of window rows; a value over
//! a bound is a violation with a pointer, never silently cut.

pub use crate::enums::MAX_NEW_VALUE_LEN;

/// Longest identifier (every non-empty string field: ids, tenant, source, model, plan,
/// region, ...), in characters as JSON Schema's `maxLength` counts them.
pub const MAX_IDENTIFIER_LEN: usize = 128;

/// Most items of an array of enum values (`subjects`, `intents`).
pub const MAX_SET_ITEMS: usize = 64;

/// Most metrics one `metrics.ingested` batch may carry.
pub const MAX_METRICS_PER_BATCH: usize = 1_000;

/// Most data references one narrative may carry.
pub const MAX_DATA_REFERENCES: usize = 100;
