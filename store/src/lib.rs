//! ClickHouse as the pipeline's store: the connection, the schema, the codec of every stored
//! fact, and every read.
//!
//! The write path (making a flush durable) is in `salestalk-sinks`, which uses the
//! [`codec`] and [`Endpoint`] from here; everything that *reads* what the pipeline wrote is
//! here: a task's state for a restart ([`restore`]), alert signals ([`signals`]), billing
//! ([`billing`]), the dead-letter queue ([`dead_letter_queue`]), latency percentiles
//! ([`latency`]), the lineage that fences a task's stalled owners ([`lineage`]), what the
//! corrector of past days reads and records ([`corrections`]), the alert history ([`alert_history`]) and dashboard panels
//! ([`raw_query`]); and [`retention`], which drops expired partitions where the server has no
//! TTL.

pub mod alert_history;
pub mod alert_outbox;
pub mod billing;
pub mod cluster;
pub mod codec;
pub mod corrections;
pub mod dead_letter_queue;
pub mod downstream;
mod endpoint;
pub mod ingest_outcome;
pub mod keys;
pub mod latency;
pub mod lineage;
mod migrate;
mod profile;
mod query;
pub mod raw_query;
pub mod replay;
pub mod restore;
pub mod retention;
pub mod schema;
pub mod signals;
pub mod tables;
pub mod tls;

pub use endpoint::{ClickHouseError, Endpoint, InsertCompression, ReaderLimits};
pub use latency::LatencyPercentiles;
pub use profile::{ServerProfile, Version};
pub use query::Query;
