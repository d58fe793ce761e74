//! What an alert rule says: which signal, which side of which threshold, for how long, how
//! severe, and whether it is judged for all traffic at once or for each tenant.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A measured signal, each read from the public views (see `docs/metrics.md`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::AsRefStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Signal {
    /// (submitted − rejected) / submitted over the lookback, a fraction.
    PublishSuccessRate,
    /// P95 processing latency per consumer over the lookback, in milliseconds.
    P95LatencyMs,
    /// Dead letters neither redriven nor discarded, now.
    DlqDepth,
    /// Events refused by a sink over events written, per consumer, over the lookback.
    ConsumerErrorRate,
    /// Milliseconds without durable progress while the broker holds unread messages, per
    /// source (topic) and per consumer; 0 when nothing is unread. `serve` measures it from
    /// the checkpoints and the brokers' high watermarks.
    NoFreshDataMs,
    /// Age of the oldest message a downstream consumer group has not committed, per group
    /// (`group.<name>`), from its newest lag sample in the lookback, in milliseconds: 0 while
    /// it keeps up, growing while it is stopped with messages waiting (not progressing).
    ConsumerLagMs,
    /// How fast the publish success objective's error budget burns: the share of failed
    /// publishes (throttled entries left out) over the budget `1 - objective`, the lesser of
    /// the rule's two windows (see [`ErrorBudget`]).
    PublishBurnRate,
    /// How fast the latency objective's error budget burns, per consumer: the share of events
    /// processed later than `good_within_ms` over `1 - objective`, the lesser of two windows.
    LatencyBurnRate,
    /// Events of a deprecated version whose end of support is at most three months away (or
    /// past), per event type, over the lookback: producers that still have to move
    /// (`[[contracts.versions]]`).
    DeprecatedVersionEvents,
    /// Resends of an `(tenantId, eventId)` whose bytes differ from the first copy's, per
    /// producer `source`, over the lookback (events are immutable: a producer reuses ids).
    ConflictingDuplicates,
}

impl Signal {
    /// Whether the signal is a fraction (its threshold must lie in 0..=1).
    pub fn is_fraction(self) -> bool {
        matches!(self, Self::PublishSuccessRate | Self::ConsumerErrorRate)
    }

    /// Whether the signal is a ratio whose denominator `min_events` guards.
    pub fn has_denominator(self) -> bool {
        self.is_fraction() || self == Self::P95LatencyMs || self.is_burn_rate()
    }

    /// The label naming a subject that is not a tenant: the consumer, or the event type for
    /// signals about versions.
    pub fn subject_label(self) -> &'static str {
        match self {
            Self::DeprecatedVersionEvents => "event_type",
            Self::ConflictingDuplicates => "source",
            _ => "consumer",
        }
    }

    /// Whether the signal is an error budget's burn rate (its rule has an [`ErrorBudget`]).
    pub fn is_burn_rate(self) -> bool {
        matches!(self, Self::PublishBurnRate | Self::LatencyBurnRate)
    }

    /// Whether the signal is judged for all traffic only: a dead letter may have no readable
    /// tenant, and a partition or a consumer group's offsets carry many tenants.
    pub fn is_global_only(self) -> bool {
        matches!(
            self,
            Self::DlqDepth | Self::NoFreshDataMs | Self::ConsumerLagMs
        )
    }

    /// Whether the signal is a state now rather than a sum over the lookback.
    pub fn is_measured_now(self) -> bool {
        matches!(self, Self::DlqDepth | Self::NoFreshDataMs)
    }
}

/// Which side of the threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::AsRefStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Comparison {
    /// Bad when the value is above the threshold.
    Above,
    /// Bad when the value is below the threshold.
    Below,
}

/// How loud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::AsRefStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Severity {
    /// Someone is paged.
    Critical,
    /// Someone looks during working hours.
    Warning,
    /// Shown, nobody is told.
    Info,
}

/// Whether a rule judges all traffic together or each tenant apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::AsRefStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    /// One judgement for all tenants (per consumer for per-consumer signals).
    Global,
    /// One judgement per tenant (and per consumer for per-consumer signals).
    Tenant,
}

/// One alert rule, as configured under `[[alerts.rules]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name, the `alertname` label.
    pub name: String,
    /// What is measured.
    pub signal: Signal,
    /// Which side of `threshold` is bad.
    pub comparison: Comparison,
    /// The boundary; fractions for rates (0.99 is 99 %), milliseconds for latency.
    pub threshold: f64,
    /// How long the value must stay bad before the alert fires, ms.
    pub for_ms: u64,
    /// How long the value must stay good before a firing alert resolves, ms (no flapping).
    pub keep_firing_ms: u64,
    /// How loud.
    pub severity: Severity,
    /// Global or per tenant.
    pub scope: Scope,
    /// The span of event time the signal is measured over, ms (ignored by `dlq_depth`).
    pub lookback_ms: u64,
    /// Fewest events in the lookback for a rate or a percentile to be judged at all.
    pub min_events: u64,
    /// For `dlq_depth`: the dead-letter reasons whose pending entries count, and
    /// `consumer_failed` for failures downstream consumers reported over the lookback. Empty:
    /// those that need a person (docs/alerts.md). Other signals take none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// For a burn-rate signal: the objective whose budget burns, and the short window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<ErrorBudget>,
}

/// An objective's error budget, for a burn-rate rule (`[alerts.rules.budget]`). The burn rate
/// is the share of bad events over `1 - objective`: 1 spends the budget exactly over the
/// objective's period, 14.4 spends a 30-day budget's 2 % in an hour. It is measured over the
/// rule's `lookback_ms` and over `short_lookback_ms`, and the lesser is the value: the alert
/// fires only while the burn is both large and still going on, and resolves soon after it
/// stops (multi-window, multi-burn-rate alerting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBudget {
    /// The share of events promised good (0.999 is 99.9 %), strictly between 0 and 1.
    pub objective: f64,
    /// The short window, ms: at least one minute, shorter than `lookback_ms`.
    pub short_lookback_ms: u64,
    /// For `latency_burn_rate`: an event is good when processed within this many ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_within_ms: Option<f64>,
}

impl Rule {
    /// Whether `value` is on the bad side of the threshold.
    pub fn breached_by(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Above => value > self.threshold,
            Comparison::Below => value < self.threshold,
        }
    }
}

/// Every problem with a set of rules, each naming its rule; empty when they are usable.
pub fn problems(rules: &[Rule]) -> Vec<String> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("alerts.rules[{i}] ({})", rule.name);
        if rule.name.trim().is_empty() {
            out.push(format!("alerts.rules[{i}]: name is empty"));
        } else if !names.insert(rule.name.as_str()) {
            out.push(format!("{at}: name is used by another rule"));
        }
        if !rule.threshold.is_finite() {
            out.push(format!("{at}: threshold must be a finite number"));
        } else if rule.signal.is_fraction() && !(0.0..=1.0).contains(&rule.threshold) {
            out.push(format!(
                "{at}: {} is a fraction, so threshold must be within 0..=1 (0.99 is 99 %), not {}",
                rule.signal.as_ref(),
                rule.threshold
            ));
        } else if rule.threshold < 0.0 {
            out.push(format!("{at}: threshold must not be negative"));
        }
        if !rule.signal.is_measured_now() && rule.lookback_ms < 60_000 {
            out.push(format!(
                "{at}: lookback_ms must be at least 60000 (one window), not {}",
                rule.lookback_ms
            ));
        }
        if rule.signal.is_global_only() && rule.scope == Scope::Tenant {
            let why = match rule.signal {
                Signal::DlqDepth => "a dead letter may have no readable tenant",
                Signal::ConsumerLagMs => "a group's offsets carry many tenants",
                _ => "a partition carries many tenants",
            };
            out.push(format!("{at}: {} is global ({why})", rule.signal.as_ref()));
        }
        match (&rule.budget, rule.signal.is_burn_rate()) {
            (None, true) => out.push(format!(
                "{at}: {} needs a budget (objective, short_lookback_ms)",
                rule.signal.as_ref()
            )),
            (Some(_), false) => out.push(format!("{at}: a budget is for burn-rate signals only")),
            (Some(budget), true) => {
                if !(budget.objective > 0.0 && budget.objective < 1.0) {
                    out.push(format!(
                        "{at}: budget.objective must be strictly between 0 and 1 (0.999 is 99.9 %), not {}",
                        budget.objective
                    ));
                }
                if budget.short_lookback_ms < 60_000 || budget.short_lookback_ms >= rule.lookback_ms
                {
                    out.push(format!(
                        "{at}: budget.short_lookback_ms must be at least 60000 and shorter than lookback_ms, not {}",
                        budget.short_lookback_ms
                    ));
                }
                let latency = rule.signal == Signal::LatencyBurnRate;
                match budget.good_within_ms {
                    Some(ms) if !latency => out.push(format!(
                        "{at}: budget.good_within_ms ({ms}) is for latency_burn_rate only"
                    )),
                    Some(ms) if !(ms.is_finite() && ms > 0.0) => out.push(format!(
                        "{at}: budget.good_within_ms must be a positive number of ms, not {ms}"
                    )),
                    None if latency => out.push(format!(
                        "{at}: latency_burn_rate needs budget.good_within_ms (the P95 target, 5000)"
                    )),
                    _ => {}
                }
            }
            (None, false) => {}
        }
        if !rule.reasons.is_empty() && rule.signal != Signal::DlqDepth {
            out.push(format!("{at}: reasons are for dlq_depth only"));
        }
        for reason in &rule.reasons {
            let name =
                !reason.is_empty() && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !name {
                out.push(format!("{at}: reason '{reason}' is not a reason's name"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_spec_thresholds_and_valid() {
        let rules = Rule::spec_defaults();
        assert!(problems(&rules).is_empty(), "{:?}", problems(&rules));
        let by = |signal| {
            rules
                .iter()
                .find(|r| r.signal == signal)
                .expect("a default per signal")
        };
        assert!(by(Signal::PublishSuccessRate).breached_by(0.989));
        assert!(!by(Signal::PublishSuccessRate).breached_by(0.99));
        assert!(by(Signal::P95LatencyMs).breached_by(30_001.0));
        assert!(!by(Signal::P95LatencyMs).breached_by(30_000.0));
        assert!(by(Signal::DlqDepth).breached_by(11.0));
        assert!(!by(Signal::DlqDepth).breached_by(10.0));
        assert!(by(Signal::ConsumerErrorRate).breached_by(0.0101));
        assert!(!by(Signal::ConsumerErrorRate).breached_by(0.01));
        assert!(by(Signal::NoFreshDataMs).breached_by(300_001.0));
        assert!(!by(Signal::NoFreshDataMs).breached_by(300_000.0));
        assert!(by(Signal::ConsumerLagMs).breached_by(30_001.0));
        assert!(!by(Signal::ConsumerLagMs).breached_by(30_000.0));
    }

    #[test]
    fn every_problem_is_listed_with_its_rule() {
        let defaults = Rule::spec_defaults();
        let of = |signal: Signal| {
            defaults
                .iter()
                .find(|r| r.signal == signal)
                .expect("a default per signal")
                .clone()
        };
        let mut rules = vec![
            of(Signal::PublishSuccessRate),
            of(Signal::P95LatencyMs),
            of(Signal::DlqDepth),
            of(Signal::ConsumerErrorRate),
            of(Signal::NoFreshDataMs),
        ];
        rules[1].name = rules[0].name.clone();
        rules[0].threshold = 99.0;
        rules[2].scope = Scope::Tenant;
        rules[3].lookback_ms = 1_000;
        rules[4].scope = Scope::Tenant;
        rules.push(Rule {
            name: " ".into(),
            threshold: f64::NAN,
            ..rules[3].clone()
        });
        rules[0].reasons = vec!["late".into()];
        rules[2].reasons = vec!["x'); DROP".into()];
        let found = problems(&rules);
        assert_eq!(found.len(), 10, "{found:#?}");
        assert!(
            found
                .iter()
                .any(|p| p.contains("rules[0]") && p.contains("dlq_depth only"))
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("rules[2]") && p.contains("not a reason's name"))
        );
        let found: Vec<String> = found
            .into_iter()
            .filter(|p| !p.contains("dlq_depth only") && !p.contains("reason's name"))
            .collect();
        assert!(found[0].contains("rules[0]") && found[0].contains("within 0..=1"));
        assert!(found[1].contains("rules[1]") && found[1].contains("used by another"));
        assert!(found[2].contains("rules[2]") && found[2].contains("dlq_depth is global"));
        assert!(found[3].contains("rules[3]") && found[3].contains("lookback_ms"));
        assert!(found[4].contains("rules[4]") && found[4].contains("no_fresh_data_ms is global"));
        assert!(found[5].contains("rules[5]: name is empty"));
    }

    #[test]
    fn a_burn_rate_rule_needs_a_sound_budget_and_only_it_has_one() {
        let defaults = Rule::spec_defaults();
        let latency = defaults
            .iter()
            .find(|r| r.signal == Signal::LatencyBurnRate)
            .expect("a latency burn rule")
            .clone();
        let budget = latency.budget.clone().expect("a budget");
        let cases = [
            (
                Rule {
                    budget: None,
                    ..latency.clone()
                },
                "needs a budget",
            ),
            (
                Rule {
                    budget: Some(ErrorBudget {
                        objective: 1.0,
                        ..budget.clone()
                    }),
                    ..latency.clone()
                },
                "strictly between 0 and 1",
            ),
            (
                Rule {
                    budget: Some(ErrorBudget {
                        short_lookback_ms: latency.lookback_ms,
                        ..budget.clone()
                    }),
                    ..latency.clone()
                },
                "shorter than lookback_ms",
            ),
            (
                Rule {
                    budget: Some(ErrorBudget {
                        good_within_ms: None,
                        ..budget.clone()
                    }),
                    ..latency.clone()
                },
                "needs budget.good_within_ms",
            ),
            (
                Rule {
                    signal: Signal::PublishBurnRate,
                    ..latency.clone()
                },
                "for latency_burn_rate only",
            ),
            (
                Rule {
                    signal: Signal::DlqDepth,
                    ..latency.clone()
                },
                "for burn-rate signals only",
            ),
        ];
        for (rule, expected) in cases {
            let found = problems(std::slice::from_ref(&rule));
            assert!(
                found.len() == 1 && found[0].contains(expected),
                "{expected}: {found:?}"
            );
        }
    }

    #[test]
    fn rules_read_from_toml_refuse_unknown_keys() {
        let rule: Result<Rule, _> = serde_json::from_value(serde_json::json!({
            "name": "x", "signal": "dlq_depth", "comparison": "above", "threshold": 1.0,
            "for_ms": 0, "keep_firing_ms": 0, "severity": "info", "scope": "global",
            "lookback_ms": 0, "min_events": 0, "treshold": 2.0
        }));
        assert!(rule.is_err());
    }
}
