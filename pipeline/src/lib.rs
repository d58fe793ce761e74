//! The `salestalk` pipeline: command line, configuration, runtime and sources.
//!
//! The binary (`src/main.rs`) is a thin shell over these modules; integration tests drive
//! the same functions.

pub mod alerts;
pub mod billing;
pub mod dlq;
pub mod generate;
pub mod http;
pub mod lines;
pub mod logging;
pub mod produce;
pub mod run;
pub mod serve;
pub mod settings;
pub mod telemetry;
pub mod validate;
pub mod webhook;

/// The allocator of every program built on this crate (the binary, its tests and benches):
/// the hot path allocates per message, and glibc's allocator spent about a third of the task's
/// time in malloc and free; mimalloc is built for many small, short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
