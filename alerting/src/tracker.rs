//! The state of every alert between evaluations. Each (rule, subject) is either quiet, pending
//! (bad, not yet for `for_ms`), firing, or clearing (good again, not yet for
//! `keep_firing_ms`). Only two transitions notify: pending → firing and clearing → quiet. A
//! value that wobbles around the threshold therefore notifies at most once each way per
//! `for_ms` + `keep_firing_ms`, never once per evaluation.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::notification::{Labels, Notification, Status};
use crate::rule::Rule;

/// One subject's value in one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The subject (`tenant_id`, `consumer`); empty for a global, non-consumer signal.
    pub labels: Labels,
    /// The value of the rule's signal.
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Pending,
    Firing,
    Clearing { since: DateTime<Utc> },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct State {
    phase: Phase,
    /// When the condition began to hold (the alert's `startsAt`).
    bad_since: DateTime<Utc>,
    /// The last value measured while bad.
    value: f64,
}

/// Every rule's alerts and their phases.
#[derive(Debug, Clone)]
pub struct Tracker {
    rules: Vec<Rule>,
    states: BTreeMap<(usize, Labels), State>,
}

impl Tracker {
    /// A tracker for `rules`, with nothing firing.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self {
            rules,
            states: BTreeMap::new(),
        }
    }

    /// The rules, in the order `observe` indexes them.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Feeds one evaluation of rule `index` at `now`. Subjects tracked before but missing from
    /// `measurements` count as good: no traffic breaches nothing. Returns the notifications
    /// due, firing ones and resolved ones.
    pub fn observe(
        &mut self,
        index: usize,
        now: DateTime<Utc>,
        measurements: &[Measurement],
    ) -> Vec<Notification> {
        let Some(rule) = self.rules.get(index) else {
            return Vec::new();
        };
        let hold = |ms: u64| Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX));
        let (for_, keep) = (hold(rule.for_ms), hold(rule.keep_firing_ms));
        let mut notifications = Vec::new();
        let mut bad: BTreeMap<&Labels, f64> = BTreeMap::new();
        for m in measurements {
            if rule.breached_by(m.value) {
                bad.insert(&m.labels, m.value);
            }
        }
        // Bad subjects: start pending, fire once pending long enough, or stop clearing.
        for (labels, value) in &bad {
            let state = self
                .states
                .entry((index, (*labels).clone()))
                .or_insert(State {
                    phase: Phase::Pending,
                    bad_since: now,
                    value: *value,
                });
            state.value = *value;
            match state.phase {
                Phase::Pending if now - state.bad_since >= for_ => {
                    state.phase = Phase::Firing;
                    notifications.push(Notification::new(
                        rule,
                        Status::Firing,
                        (*labels).clone(),
                        *value,
                        state.bad_since,
                        None,
                    ));
                }
                Phase::Clearing { .. } => state.phase = Phase::Firing,
                Phase::Pending | Phase::Firing => {}
            }
        }
        // Good subjects (measured good or not measured at all): forget pending ones, start
        // clearing firing ones, resolve those clear long enough.
        let mut forget = Vec::new();
        for ((rule_index, labels), state) in self.states.range_mut((index, Labels::new())..) {
            if *rule_index != index {
                break;
            }
            if bad.contains_key(labels) {
                continue;
            }
            match state.phase {
                Phase::Pending => forget.push(labels.clone()),
                Phase::Firing => state.phase = Phase::Clearing { since: now },
                Phase::Clearing { .. } => {}
            }
            if let Phase::Clearing { since } = state.phase
                && now - since >= keep
            {
                notifications.push(Notification::new(
                    rule,
                    Status::Resolved,
                    labels.clone(),
                    state.value,
                    state.bad_since,
                    Some(now),
                ));
                forget.push(labels.clone());
            }
        }
        for labels in forget {
            self.states.remove(&(index, labels));
        }
        notifications
    }

    /// Alerts firing now (clearing ones included: they have not resolved yet).
    pub fn firing(&self) -> Vec<Notification> {
        self.states
            .iter()
            .filter(|(_, state)| state.phase != Phase::Pending)
            .filter_map(|((index, labels), state)| {
                let rule = self.rules.get(*index)?;
                Some(Notification::new(
                    rule,
                    Status::Firing,
                    labels.clone(),
                    state.value,
                    state.bad_since,
                    None,
                ))
            })
            .collect()
    }

    /// Takes back an alert of `rule` about `labels` that was firing before a restart (from the
    /// `alerts` history), so it is neither announced twice nor left unresolved. Unknown rules
    /// are ignored: a rule removed from the configuration has nothing left to resolve.
    pub fn restore_firing(
        &mut self,
        rule: &str,
        labels: Labels,
        value: f64,
        starts_at: DateTime<Utc>,
    ) {
        let Some(index) = self.rules.iter().position(|r| r.name == rule) else {
            return;
        };
        self.states.insert(
            (index, labels),
            State {
                phase: Phase::Firing,
                bad_since: starts_at,
                value,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Signal;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + seconds, 0).expect("a time")
    }

    fn dlq_rule(for_ms: u64, keep_firing_ms: u64) -> Rule {
        let mut rule = Rule::spec_defaults()
            .into_iter()
            .find(|r| r.signal == Signal::DlqDepth)
            .expect("a dlq rule");
        rule.for_ms = for_ms;
        rule.keep_firing_ms = keep_firing_ms;
        rule
    }

    fn global(value: f64) -> Vec<Measurement> {
        vec![Measurement {
            labels: Labels::new(),
            value,
        }]
    }

    fn statuses(notifications: &[Notification]) -> Vec<Status> {
        notifications.iter().map(|n| n.status).collect()
    }

    #[test]
    fn fires_after_for_and_resolves_after_keep_firing_once_each() {
        let mut tracker = Tracker::new(vec![dlq_rule(60_000, 120_000)]);
        assert!(
            tracker.observe(0, at(0), &global(11.0)).is_empty(),
            "pending"
        );
        assert!(
            tracker.observe(0, at(59), &global(12.0)).is_empty(),
            "pending"
        );
        let fired = tracker.observe(0, at(60), &global(13.0));
        assert_eq!(statuses(&fired), [Status::Firing]);
        assert_eq!(fired[0].starts_at, at(0));
        assert_eq!(fired[0].value, 13.0);
        assert!(
            tracker.observe(0, at(61), &global(14.0)).is_empty(),
            "already firing"
        );
        assert_eq!(tracker.firing().len(), 1);
        assert!(
            tracker.observe(0, at(100), &global(2.0)).is_empty(),
            "clearing"
        );
        assert!(
            tracker.observe(0, at(219), &global(2.0)).is_empty(),
            "clearing"
        );
        let resolved = tracker.observe(0, at(220), &global(2.0));
        assert_eq!(statuses(&resolved), [Status::Resolved]);
        assert_eq!(resolved[0].ends_at, Some(at(220)));
        assert_eq!(resolved[0].value, 14.0, "the last bad value");
        assert!(tracker.firing().is_empty());
        assert!(tracker.observe(0, at(300), &global(2.0)).is_empty());
    }

    #[test]
    fn a_blip_shorter_than_for_never_fires() {
        let mut tracker = Tracker::new(vec![dlq_rule(60_000, 60_000)]);
        for second in (0..600).step_by(15) {
            let value = if second % 60 == 0 { 50.0 } else { 0.0 };
            assert!(tracker.observe(0, at(second), &global(value)).is_empty());
        }
    }

    #[test]
    fn a_value_wobbling_around_the_threshold_does_not_flap() {
        let mut tracker = Tracker::new(vec![dlq_rule(0, 300_000)]);
        let mut sent = Vec::new();
        for second in (0..600).step_by(10) {
            let value = if (second / 10) % 2 == 0 { 11.0 } else { 9.0 };
            sent.extend(statuses(&tracker.observe(0, at(second), &global(value))));
        }
        assert_eq!(
            sent,
            [Status::Firing],
            "one firing, no resolution while it wobbles"
        );
        for second in (600..=900).step_by(10) {
            sent.extend(statuses(&tracker.observe(0, at(second), &global(0.0))));
        }
        assert_eq!(sent, [Status::Firing, Status::Resolved]);
    }

    #[test]
    fn subjects_are_judged_apart_and_a_silent_one_resolves() {
        let mut rule = dlq_rule(0, 0);
        rule.name = "PerTenant".into();
        let mut tracker = Tracker::new(vec![rule]);
        let tenant = |name: &str, value| Measurement {
            labels: Labels::from([("tenant_id".to_string(), name.to_string())]),
            value,
        };
        let fired = tracker.observe(0, at(0), &[tenant("a", 20.0), tenant("b", 1.0)]);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].labels["tenant_id"], "a");
        let fired = tracker.observe(0, at(10), &[tenant("a", 20.0), tenant("b", 30.0)]);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].labels["tenant_id"], "b");
        // Tenant a sends nothing any more: no traffic is no breach.
        let resolved = tracker.observe(0, at(20), &[tenant("b", 30.0)]);
        assert_eq!(statuses(&resolved), [Status::Resolved]);
        assert_eq!(resolved[0].labels["tenant_id"], "a");
    }

    #[test]
    fn rules_do_not_share_state() {
        let mut second = dlq_rule(0, 0);
        second.name = "Second".into();
        let mut tracker = Tracker::new(vec![dlq_rule(0, 0), second]);
        assert_eq!(tracker.observe(0, at(0), &global(20.0)).len(), 1);
        assert!(tracker.observe(1, at(0), &global(1.0)).is_empty());
        assert_eq!(
            tracker.firing().len(),
            1,
            "rule 1 resolved nothing of rule 0"
        );
    }

    proptest::proptest! {
        /// Whatever the values and timings, each subject's notifications alternate firing,
        /// resolved, firing, ..., and a firing one is reported as firing until resolved.
        #[test]
        fn notifications_alternate_per_subject(
            steps in proptest::collection::vec((0u8..3, 0.0f64..30.0, 1i64..120), 1..200),
            for_s in 0u64..200,
            keep_s in 0u64..200,
        ) {
            let mut tracker = Tracker::new(vec![dlq_rule(for_s * 1000, keep_s * 1000)]);
            let mut last: BTreeMap<Labels, Status> = BTreeMap::new();
            let mut now = 0;
            for (tenant, value, gap) in steps {
                now += gap;
                let measured = [Measurement {
                    labels: Labels::from([("tenant_id".to_string(), tenant.to_string())]),
                    value,
                }];
                for n in tracker.observe(0, at(now), &measured) {
                    let expected = match last.get(&n.labels) {
                        None | Some(Status::Resolved) => Status::Firing,
                        Some(Status::Firing) => Status::Resolved,
                    };
                    proptest::prop_assert_eq!(n.status, expected);
                    last.insert(n.labels, n.status);
                }
                let firing: Vec<Labels> = tracker.firing().into_iter().map(|n| n.labels).collect();
                let expected: Vec<Labels> = last
                    .iter()
                    .filter(|(_, status)| **status == Status::Firing)
                    .map(|(labels, _)| labels.clone())
                    .collect();
                proptest::prop_assert_eq!(firing, expected);
            }
        }
    }

    #[test]
    fn a_restored_alert_is_not_announced_again_and_resolves() {
        let rule = dlq_rule(0, 0);
        let mut before = Tracker::new(vec![rule.clone()]);
        let fired = before.observe(0, at(0), &global(20.0));
        let mut after = Tracker::new(vec![rule]);
        let alert = &fired[0];
        after.restore_firing(
            &alert.rule,
            alert.labels.clone(),
            alert.value,
            alert.starts_at,
        );
        assert!(after.observe(0, at(10), &global(25.0)).is_empty());
        let resolved = after.observe(0, at(20), &global(0.0));
        assert_eq!(statuses(&resolved), [Status::Resolved]);
        assert_eq!(resolved[0].starts_at, at(0));
    }
}
