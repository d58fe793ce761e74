//! The operators of the SalesTalk pipeline graph.
//!
//! Operators are pure and synchronous and work on whole batches: the runtime (in the
//! `salestalk` crate) reads a batch from a source, passes it through the operators, and hands
//! their output to sinks. Nothing here does I/O, so every operator is tested in isolation.
//!
//! ```text
//!                  ┌──────────────── task (one per source partition) ────────────────┐
//! source batch ──▶ │ validate ─▶ dedup ─▶ lateness/skew ─▶ aggregates ─▶ windows     │ ──▶ flush
//!                  │    └──────────────┴────────┴──▶ dead letters (with reason)       │
//!                  └──────────────────────────────────────────────────────────────────┘
//! flush = changed window rows + archive rows + dead letters + checkpoint ──▶ sinks
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`message`] | what a source hands in: raw bytes and their position |
//! | [`address`] | typed identities: a source partition with its kind, a dead letter's address |
//! | [`task`] | the per-partition operator: validate, dedup, lateness, dead letters |
//! | [`flush`] | what a task hands to sinks and resumes from (its output schema) |
//! | [`aggregate`] | the metric families, the `Aggregate` contract, one file per aggregate |
//! | [`windows`] | minute windows and their hour and day rollups, interned |
//! | [`time`] | the clock, minutes, `DateTime` seconds, flush epochs and generations |
//! | [`versions`] | each event version's lifecycle: current, or deprecated until a date |
//! | [`dedup`], [`histogram`], [`dead_letter`], [`tally`] | the pieces those use |

pub mod address;
pub mod aggregate;
pub mod dead_letter;
pub mod dedup;
pub mod flush;
pub mod histogram;
pub mod message;
pub mod new_values;
pub mod routing;
pub mod tally;
pub mod task;
pub mod time;
pub mod versions;
pub mod windows;

pub use address::{DeadLetterAddress, SourceKind, SourcePartition};
pub use message::{PublishPath, RawMessage};
pub use tally::Tally;
