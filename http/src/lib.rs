//! What every HTTP endpoint of SalesTalk stands on: the server with its limits and security
//! headers ([`server`]), who a request is from and what its key may do ([`access`]), and
//! per-key and per-tenant request budgets ([`rate`]). `serve`, the ingest gateway and the
//! Prometheus endpoint of `run` are built on it.

pub mod access;
pub mod probes;
pub mod rate;
pub mod server;
