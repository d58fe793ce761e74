//! SalesTalk event contracts (`spec/event-contracts.md`, v1) as Rust types and rules.
//!
//! This crate is the first stage of the pipeline's graph: every message read from a topic is
//! [`parse`]d and [`validate`]d here before any operator sees it. Valid messages become typed
//! [`Event`]s borrowing from the parsed JSON; invalid ones yield every [`Violation`] with a
//! JSON Pointer to the offending field and a dead-letter [`Reason`]. A valid event may carry
//! [`ContractWarning`]s: where it departs from the contract's tables but stays usable.
//!
//! The same rules ship as JSON Schema (draft-07) files under `contracts/schemas/`, embedded
//! in [`schemas`]; a test runs both over one corpus to keep them in agreement.
//!
//! ```
//! let line = br#"{"eventId": "not-a-uuid"}"#;
//! let problems = salestalk_contracts::check(line, 1 << 20);
//! assert!(problems.iter().any(|v| v.path == "/eventId"));
//! assert!(problems.iter().any(|v| v.path == "/tenantId"));
//! ```

mod checker;
mod decode;
pub mod enums;
mod envelope;
mod event;
pub mod formats;
pub mod json;
pub mod limits;
pub mod payloads;
pub mod pointer;
pub mod schemas;
mod tenancy;
mod violation;
mod warning;

pub use decode::{assess, check, parse, validate};
pub use enums::{EventKind, EventType};
pub use event::{Envelope, Event, EventData, EventId, Metadata, OVERFLOW_VALUE};
pub use json::{Json, Object};
pub use tenancy::other_tenant;
pub use violation::{Expected, Format, JsonType, Reason, Violation, ViolationKind, reason_for};
pub use warning::ContractWarning;
