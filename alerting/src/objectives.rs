//! The contract's monitoring table ("Event Monitoring, Key Metrics"): each metric's target,
//! what the team aims for, and its alert threshold, when someone is told. This is the one home
//! of those numbers: the default rules (a critical tier at the threshold, a warning tier at
//! the target, and burn-rate rules on the targets' error budgets, [`Rule::spec_defaults`],
//! defined here), the thresholds the dashboards draw, and the docs' tables are built from it.

use crate::rule::{Comparison, ErrorBudget, Rule, Scope, Severity, Signal};

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

impl Rule {
    /// The defaults, from the contract's monitoring table ([`crate::objectives`]): each of its
    /// four metrics alerted at its threshold (critical; the DLQ depth a warning, as the
    /// contract's CloudWatch alarm) and at its target (a warning tier); burn-rate rules on the
    /// publish success and latency objectives' error budgets, fast (critical) and slow
    /// (warning); a stall, five minutes without durable progress while messages wait; and a
    /// downstream consumer group not progressing: its oldest uncommitted message older than
    /// the latency threshold.
    pub fn spec_defaults() -> Vec<Rule> {
        let rule = |name: &str, signal, comparison, threshold, severity| Rule {
            name: name.to_string(),
            signal,
            comparison,
            threshold,
            for_ms: 300_000,
            keep_firing_ms: 300_000,
            severity,
            scope: Scope::Global,
            lookback_ms: 900_000,
            min_events: 100,
            reasons: Vec::new(),
            budget: None,
        };
        let tiers = |name: &str, objective: Objective, severity| {
            [
                rule(
                    name,
                    objective.signal,
                    objective.comparison,
                    objective.alert,
                    severity,
                ),
                rule(
                    &format!("{name}Target"),
                    objective.signal,
                    objective.comparison,
                    objective.target,
                    Severity::Warning,
                ),
            ]
        };
        let burn =
            |name: &str, signal, objective: f64, good_within_ms, windows: BurnWindows, severity| {
                Rule {
                    for_ms: 120_000,
                    keep_firing_ms: 300_000,
                    lookback_ms: windows.lookback_ms,
                    budget: Some(ErrorBudget {
                        objective,
                        short_lookback_ms: windows.short_lookback_ms,
                        good_within_ms,
                    }),
                    ..rule(name, signal, Comparison::Above, windows.rate, severity)
                }
            };
        let mut rules = Vec::new();
        rules.extend(tiers(
            "PublishSuccessRateLow",
            PUBLISH_SUCCESS,
            Severity::Critical,
        ));
        rules.extend(tiers(
            "ProcessingLatencyP95High",
            P95_LATENCY_MS,
            Severity::Critical,
        ));
        rules.extend(
            tiers("DlqDepthHigh", DLQ_DEPTH, Severity::Warning).map(|r| Rule {
                for_ms: 60_000,
                ..r
            }),
        );
        rules.extend(tiers(
            "ConsumerErrorRateHigh",
            CONSUMER_ERROR_RATE,
            Severity::Critical,
        ));
        let latency_ms = Some(P95_LATENCY_MS.target);
        rules.extend([
            burn(
                "PublishErrorBudgetFastBurn",
                Signal::PublishBurnRate,
                PUBLISH_SUCCESS.target,
                None,
                FAST_BURN,
                Severity::Critical,
            ),
            burn(
                "PublishErrorBudgetSlowBurn",
                Signal::PublishBurnRate,
                PUBLISH_SUCCESS.target,
                None,
                SLOW_BURN,
                Severity::Warning,
            ),
            burn(
                "LatencyErrorBudgetFastBurn",
                Signal::LatencyBurnRate,
                LATENCY_GOOD_SHARE,
                latency_ms,
                FAST_BURN,
                Severity::Critical,
            ),
            burn(
                "LatencyErrorBudgetSlowBurn",
                Signal::LatencyBurnRate,
                LATENCY_GOOD_SHARE,
                latency_ms,
                SLOW_BURN,
                Severity::Warning,
            ),
        ]);
        // The contract's three months' notice: producers of a deprecated version hear of it
        // from then on, each day they still publish it.
        rules.push(Rule {
            for_ms: 0,
            keep_firing_ms: 3_600_000,
            lookback_ms: 86_400_000,
            min_events: 1,
            ..rule(
                "DeprecatedVersionPublished",
                Signal::DeprecatedVersionEvents,
                Comparison::Above,
                0.0,
                Severity::Warning,
            )
        });
        // Events are immutable by contract: an id resent with other content is a producer bug.
        rules.push(Rule {
            for_ms: 0,
            keep_firing_ms: 3_600_000,
            lookback_ms: 3_600_000,
            min_events: 1,
            ..rule(
                "ConflictingDuplicates",
                Signal::ConflictingDuplicates,
                Comparison::Above,
                0.0,
                Severity::Warning,
            )
        });
        rules.push(Rule {
            for_ms: 60_000,
            min_events: 1,
            ..rule(
                "NoFreshData",
                Signal::NoFreshDataMs,
                Comparison::Above,
                300_000.0,
                Severity::Critical,
            )
        });
        // A consumer's latency SLO does not end at the target's broker: a group whose
        // oldest uncommitted message is older than the P95 threshold is as late as a sink
        // would be, and a stopped billing-worker is exactly that.
        rules.push(Rule {
            min_events: 1,
            ..rule(
                "ConsumerGroupNotProgressing",
                Signal::ConsumerLagMs,
                Comparison::Above,
                P95_LATENCY_MS.alert,
                Severity::Critical,
            )
        });
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_objective_has_a_threshold_and_a_target_rule() {
        let rules = Rule::spec_defaults();
        for objective in ALL {
            let thresholds: Vec<f64> = rules
                .iter()
                .filter(|r| r.signal == objective.signal)
                .map(|r| r.threshold)
                .collect();
            assert_eq!(thresholds, [objective.alert, objective.target]);
            assert!(
                objective.misses_target(if objective.comparison == Comparison::Above {
                    objective.target + 0.0001
                } else {
                    objective.target - 0.0001
                })
            );
        }
        let burns: Vec<(&str, Severity)> = rules
            .iter()
            .filter(|r| r.signal.is_burn_rate())
            .map(|r| (r.name.as_str(), r.severity))
            .collect();
        assert_eq!(burns.len(), 4, "fast and slow, for publish and latency");
    }
}
