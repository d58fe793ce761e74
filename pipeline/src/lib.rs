//! The `salestalk` pipeline: command line, configuration, runtime and sources.
//!
//! The binary (`src/main.rs`) is a thin shell over these modules; integration tests drive
//! the same functions.

pub mod generate;
pub mod kafka;
pub mod lines;
pub mod logging;
pub mod produce;
pub mod run;
pub mod settings;
pub mod telemetry;
pub mod validate;
