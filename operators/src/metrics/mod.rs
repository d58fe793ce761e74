//! Windowed metrics: the families, their one-minute window rows, and how events update them.
//!
//! This is the aggregate stage of the graph. A task (one source partition) owns a
//! [`WindowSet`]; the runtime decides which window an event belongs to and whether it counts
//! (dedup, lateness), then calls [`record_event`], [`record_read`] and [`record_latency`].

pub mod family;
pub mod record;
pub mod windows;

pub use family::{Family, Layout};
pub use record::{
    LOW_CONFIDENCE, ReadMessage, nanos, record_event, record_latency, record_latency_for,
    record_read,
};
pub use windows::{Symbol, WINDOW_SECONDS, WindowKey, WindowSet, WindowValue, window_start};
