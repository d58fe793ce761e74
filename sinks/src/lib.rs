//! Sinks: the last stage of the pipeline graph, where a flush's outputs become durable.
//!
//! [`sink`] holds the contract every sink implements and the flush plan that runs them in the
//! configured order (`sinks.flush_order`); [`clickhouse`] and [`kafka`] hold the sinks;
//! [`retry`] how their writes are retried and refused rows isolated (ADR 0006). What reads
//! the stored results back (restores, dashboards, alerts, billing, the DLQ) is the
//! `salestalk-store` crate.

pub mod build;
pub mod clickhouse;
pub mod kafka;
pub mod outcomes;
pub mod retry;
pub mod sink;

pub use build::{BuildError, SinkBuild};
pub use sink::{
    FlushBatch, FlushOrder, FlushPlan, Sink, SinkError, SinkKind, SinkObserver, SinkSettings,
};
