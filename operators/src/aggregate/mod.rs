//! The aggregate stage of the graph: windowed aggregate operators, one per metric family.
//!
//! A task (one source partition) decides what each message is (a counted event, a resend, a
//! late or rejected message) and hands it to every configured aggregate; each one folds it
//! into the window rows of its family in the task's [`WindowSet`](crate::windows::WindowSet),
//! which carries it to the minute, hour and day rows at once.
//!
//! - [`family`]: each family's row layout (keys and columns), shared with the storage views;
//! - this module: the [`Aggregate`] contract and what it is handed;
//! - [`built_in`]: the aggregates, one file each;
//! - [`registry`]: which aggregates exist and which a pipeline runs (`graph.aggregates`).

use std::fmt;

use salestalk_contracts::{Event, EventType};

use crate::dead_letter::DeadLetterReason;
use crate::message::PublishPath;
use crate::windows::{Symbol, WindowSet};

/// Adds to a named integer counter of a row. The name's position is found at compile time
/// (a name the family's layout lacks fails the build), so the hot path does no lookup.
macro_rules! add {
    (&mut $values:expr, $family:expr, $name:literal, $amount:expr $(,)?) => {
        $values[const { $family.int_slot($name) }] += $amount
    };
}

/// Like `add!`, for a named floating-point sum.
macro_rules! add_float {
    (&mut $values:expr, $family:expr, $name:literal, $amount:expr $(,)?) => {
        $values[const { $family.float_slot($name) }] += $amount
    };
}

pub mod built_in;
pub mod family;
pub mod registry;

pub use built_in::{LOW_CONFIDENCE, nanos, window_text};
pub use family::{Family, Layout};
pub use registry::Aggregates;

/// What the pipeline knows about a message it read, for the publish and dead-letter
/// families (windowed by broker time, since a rejected message may have no event time).
#[derive(Debug, Clone, Copy)]
pub struct ReadMessage<'a> {
    /// Minute window of the message's broker timestamp.
    pub window_start: i64,
    /// Source topic.
    pub topic: &'a str,
    /// Tenant, when readable; `""` otherwise.
    pub tenant: &'a str,
    /// Emitting service, when readable; `""` otherwise.
    pub source: &'a str,
    /// Event type, when readable; `""` otherwise.
    pub event_type: &'a str,
    /// Why it was rejected, if it was.
    pub rejected: Option<DeadLetterReason>,
    /// Whether it repeated an `eventId` already counted.
    pub duplicate: bool,
    /// Whether, repeating one, its bytes differ from the first copy's (events are immutable:
    /// a producer reusing ids).
    pub conflicting: bool,
    /// For an event that arrived after its window was final (and within the correction
    /// horizon): that window's start (Unix s). It is archived and counted by the correction
    /// of its day.
    pub late_window: Option<i64>,
    /// Who put it on the bus.
    pub path: PublishPath,
}

/// An output made durable: what the latency aggregate measures.
#[derive(Debug, Clone, Copy)]
pub struct Durable<'a> {
    /// Minute window the output became durable in (processing time).
    pub window_start: i64,
    /// Tenant, interned.
    pub tenant: Symbol,
    /// Event type, or `""` when unreadable.
    pub event_type: &'a str,
    /// The sink that made it durable.
    pub consumer: &'a str,
    /// From the event's (trusted) time to durability, in milliseconds.
    pub latency_ms: f64,
}

/// A windowed aggregate operator: pure and synchronous, called for every message of a batch
/// in offset order. Every method defaults to doing nothing, so an aggregate implements only
/// the moments it cares about. Window starts are minutes; the set rolls them up.
pub trait Aggregate: fmt::Debug + Send + Sync {
    /// The metric family whose window rows it writes; its layout name is the aggregate's
    /// name in configuration.
    fn family(&self) -> Family;

    /// Whether it reads counted events of `event_type` (`on_event` is called only for those).
    fn reads(&self, _event_type: EventType) -> bool {
        false
    }

    /// A valid, first-seen event, counted in the minute starting at `window_start` (Unix s).
    fn on_event(&self, _set: &mut WindowSet, _event: &Event<'_>, _tenant: Symbol, _window: i64) {}

    /// Any message read from a source: valid or not, first-seen or not (broker time).
    fn on_read(&self, _set: &mut WindowSet, _message: &ReadMessage<'_>) {}

    /// An output made durable by a sink.
    fn on_durable(&self, _set: &mut WindowSet, _output: &Durable<'_>) {}
}
