//! The operators of the SalesTalk pipeline graph.
//!
//! Operators are pure and synchronous and work on whole batches: the runtime (in the
//! `salestalk` crate) reads a batch from a source, passes it through the operators, and hands
//! their output to sinks. Nothing here does I/O, so every operator is tested in isolation.
//!
//! ```text
//!                  ┌──────────────── task (one per source partition) ─────────────────┐
//! source batch ──▶ │ validate ─▶ dedup ─▶ lateness/skew ─▶ windows (metric families) │ ──▶ flush
//!                  │    └──────────────┴────────┴──▶ dead letters (with reason)        │
//!                  └───────────────────────────────────────────────────────────────────┘
//! flush = changed window rows + archive rows + dead letters + checkpoint ──▶ sinks
//! ```

pub mod dead_letter;
pub mod dedup;
pub mod histogram;
pub mod message;
pub mod metrics;
pub mod tally;
pub mod task;

pub use message::RawMessage;
pub use tally::Tally;
