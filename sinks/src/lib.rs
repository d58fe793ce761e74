//! Sinks: the last stage of the pipeline graph, where results become durable.
//!
//! For now this holds the ClickHouse connection and the server probe that decides which
//! schema features the server supports (ClickHouse 18.16 from Debian in tests, modern
//! ClickHouse for users). The metric tables and batched inserts build on it.

pub mod clickhouse;
pub mod retry;
