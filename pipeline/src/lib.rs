//! The `salestalk` pipeline: the command line, configuration and the runtime.
//!
//! - [`commands`]: one module per command; the binary (`src/main.rs`) only calls them;
//! - [`runtime`]: the driver loop over the sources (`salestalk-sources`) and the sinks
//!   (`salestalk-sinks`);
//! - [`corrections`]: past days corrected from the archive (late events, copies counted in
//!   two partitions), by `run` and by `replay run --backfill`; [`recompute`] runs the operators
//!   over archived events for it;
//! - [`serve`], [`alerts`], [`stalls`], [`webhook`], [`telemetry`]: what serves people and
//!   Prometheus (on `salestalk-http`);
//! - the gateway services publish through is `salestalk-gateway`, run by `commands::ingest`;
//! - [`validate`], [`lines`], [`billing`]: validation and export formats (the traffic
//!   generator is `salestalk-generator`);
//! - [`settings`], [`logging`]: configuration and diagnostics.

pub mod alerts;
pub mod billing;
pub mod commands;
pub mod corrections;
pub mod downstream;
pub mod instance;
pub mod lines;
pub mod logging;
pub mod recompute;
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
