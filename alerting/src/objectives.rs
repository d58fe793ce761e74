//! The contract's monitoring table ("Event Monitoring, Key Metrics"): each metric's target,
//! what the team aims for, and its alert threshold, when someone is told. This is the one home
//! of those numbers: the default rules (a critical tier at the threshold, a warning tier at
//! the target, and burn-rate rules on the targets' error budgets), the thresholds the
//! dashboards draw, and the docs' tables are built from it.

use crate::rule::{Comparison, Signal};

/// One line of the contract's monitoring table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// The signal that measures it.
    pub signal: Signal,
    /// Which side is bad.
    pub comparison: Comparison,
    /// What the team aims for (crossing it is a warning).
    pub target: f64,
    /// When someone is paged.
    pub alert: f64,
}

/// Publish success rate: target above 99.9 %, alert below 99 %.
pub const PUBLISH_SUCCESS: Objective = Objective {
    signal: Signal::PublishSuccessRate,
    comparison: Comparison::Below,
    target: 0.999,
    alert: 0.99,
};

/// P95 processing latency per consumer: target under 5 s, alert above 30 s.
pub const P95_LATENCY_MS: Objective = Objective {
    signal: Signal::P95LatencyMs,
    comparison: Comparison::Above,
    target: 5_000.0,
    alert: 30_000.0,
};

/// DLQ depth: target 0, alert above 10 messages.
pub const DLQ_DEPTH: Objective = Objective {
    signal: Signal::DlqDepth,
    comparison: Comparison::Above,
    target: 0.0,
    alert: 10.0,
};

/// Consumer error rate: target under 0.1 %, alert above 1 %.
pub const CONSUMER_ERROR_RATE: Objective = Objective {
    signal: Signal::ConsumerErrorRate,
    comparison: Comparison::Above,
    target: 0.001,
    alert: 0.01,
};

/// The whole table, in the contract's order.
pub const ALL: [Objective; 4] = [
    PUBLISH_SUCCESS,
    P95_LATENCY_MS,
    DLQ_DEPTH,
    CONSUMER_ERROR_RATE,
];

/// The latency objective as a share of events: "P95 under 5 s" promises that 95 % of the
/// events are processed within the target, so 5 % may be slower (the error budget).
pub const LATENCY_GOOD_SHARE: f64 = 0.95;

/// Multi-window burn-rate alerting (the SRE workbook's numbers for a 30-day budget): a fast
/// burn spends 2 % of the budget in an hour (14.4 times the sustainable rate, over 1 h and
/// 5 min), a slow burn 5 % in six hours (6 times, over 6 h and 30 min). Both windows must
/// burn: the long one says it matters, the short one that it is still going on.
pub const FAST_BURN: BurnWindows = BurnWindows {
    rate: 14.4,
    lookback_ms: 3_600_000,
    short_lookback_ms: 300_000,
};

/// See [`FAST_BURN`].
pub const SLOW_BURN: BurnWindows = BurnWindows {
    rate: 6.0,
    lookback_ms: 21_600_000,
    short_lookback_ms: 1_800_000,
};

/// A burn rate and the two windows it must hold over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnWindows {
    /// How many times faster than sustainable the budget burns.
    pub rate: f64,
    /// The long window, ms.
    pub lookback_ms: u64,
    /// The short window, ms.
    pub short_lookback_ms: u64,
}

impl Objective {
    /// Whether `value` misses the target (the warning tier).
    pub fn misses_target(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Above => value > self.target,
            Comparison::Below => value < self.target,
        }
    }
}
