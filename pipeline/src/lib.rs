//! The `salestalk` binary: the command line, configuration, and the processes it runs, each
//! in a wing of its own.
//!
//! - [`commands`]: the command line, one thin module per command; `src/main.rs` only calls it;
//! - [`run`]: the `run` process: the driver loop over the sources (`salestalk-sources`) and
//!   the sinks (`salestalk-sinks`), the downstream consumer groups it watches, redrives;
//!   past days are corrected by `salestalk-corrections`, which it schedules;
//! - [`serve`]: the `serve` process: dashboards and the API on `salestalk-http`, the alert
//!   evaluator, its stall signal and webhooks;
//! - the `ingest` process is `salestalk-gateway`, started by `commands::ingest`;
//! - [`tools`]: what the one-shot commands share: validation, JSON Lines, the billing export
//!   (the traffic generator is `salestalk-generator`);
//! - [`settings`], [`logging`], [`telemetry`], [`instance`]: what every process shares.

pub mod commands;
pub mod instance;
pub mod logging;
pub mod run;
pub mod serve;
pub mod settings;
pub mod telemetry;
pub mod tools;

/// The allocator of every program built on this crate (the binary, its tests and benches):
/// the hot path allocates per message, and glibc's allocator spent about a third of the task's
/// time in malloc and free; mimalloc is built for many small, short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
