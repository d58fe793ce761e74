//! ClickHouse as the pipeline's store: the connection, the schema, and one module per table.
//!
//! [`tables`] holds each table's migration steps, its one row type, its insert and its
//! queries; [`schema`] orders the steps and builds the views over them. The sinks decide
//! when a flush's rows are written (and in which order) and call the tables' inserts. The
//! reads that span tables live beside them: a task's state for a restart ([`restore`]:
//! `window_state`, `events_raw`, `dead_letters`), alert signals ([`signals`]), billing
//! ([`billing`]), the dead-letter queue ([`dead_letter_queue`]), latency percentiles
//! ([`latency`]), the evidence the corrector of past days reads ([`corrections`]) and
//! dashboard panels ([`raw_query`]); and [`retention`], which drops expired partitions where
//! the server has no TTL.

pub mod billing;
pub mod cluster;
pub mod corrections;
pub mod dead_letter_queue;
mod endpoint;
pub mod latency;
mod migrate;
mod profile;
mod query;
pub mod raw_query;
pub mod restore;
pub mod retention;
pub mod schema;
pub mod seal;
pub mod shards;
pub mod signals;
pub mod tables;
pub mod tls;

pub use endpoint::{ClickHouseError, Endpoint, InsertCompression, ReaderLimits};
pub use latency::LatencyPercentiles;
pub use profile::{ServerProfile, Version};
pub use query::Query;
