//! Alerting for SREs: rules over the pipeline's public metrics (by default the contract's
//! four thresholds, its targets as a warning tier, and burn-rate rules on the targets' error
//! budgets; [`objectives`]), and the pure state machine that turns each evaluation's measurements into
//! firing and resolved notifications, once each, without flapping.
//!
//! The evaluator in the `salestalk` binary measures each rule's signal in ClickHouse, feeds the
//! measurements to a [`Tracker`], sends what it returns to the webhooks and records it in the
//! `alerts` table. Nothing here does I/O, so every transition is unit-tested with a clock the
//! tests control.

pub mod notification;
pub mod objectives;
pub mod rule;
pub mod tracker;

pub use notification::{Notification, Status};
pub use rule::{Comparison, ErrorBudget, Rule, Scope, Severity, Signal};
pub use tracker::Tracker;
