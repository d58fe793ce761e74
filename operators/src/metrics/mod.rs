//! Windowed metrics: the families, their minute and hour window rows, and how events update
//! them.
//!
//! This is the aggregate stage of the graph. A task (one source partition) owns a
//! [`WindowSet`] per [`Span`]; the runtime decides which window an event belongs to and whether it counts
//! (dedup, lateness), then hands each message to the configured [`Aggregates`].

pub mod aggregate;
pub mod family;
pub mod record;
pub mod windows;

pub use aggregate::{Aggregate, Aggregates, Durable};
pub use family::{Family, Layout};
pub use record::{LOW_CONFIDENCE, ReadMessage, nanos};
pub use windows::{Span, Symbol, WINDOW_SECONDS, WindowKey, WindowSet, WindowValue, window_start};
