//! The `salestalk` pipeline: the command line, configuration and the runtime.
//!
//! - [`commands`]: one module per command; the binary (`src/main.rs`) only calls them;
//! - [`runtime`]: the driver loop over the sources (`salestalk-sources`) and the sinks
//!   (`salestalk-sinks`);
//! - past days are corrected from the archive by `salestalk-corrections`, which `run`
//!   schedules and `replay run --backfill` calls;
//! - [`serve`], [`alerts`], [`stalls`], [`webhook`], [`telemetry`]: what serves people and
//!   Prometheus (on `salestalk-http`);
//! - the gateway services publish through is `salestalk-gateway`, run by `commands::ingest`;
//! - [`validate`], [`lines`], [`billing`]: validation and export formats (the traffic
//!   generator is `salestalk-generator`);
//! - [`settings`], [`logging`]: configuration and diagnostics.

pub mod alerts;
pub mod billing;
pub mod commands;
pub mod downstream;
pub mod instance;
pub mod lines;
pub mod logging;
pub mod runtime;
pub mod serve;
pub mod settings;
pub mod stalls;
pub mod telemetry;
pub mod validate;
pub mod webhook;

/// The allocator of every program built on this crate (the binary, its tests and benches):
/// the hot path allocates per message, and glibc's allocator spent about a third of the task's
/// time in malloc and free; mimalloc is built for many small, short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
