//! Which aggregates exist and which a pipeline runs: adding one is a file in `built_in/`
//! implementing [`Aggregate`] plus a line in [`BUILT_IN`], with no change to the task or the
//! runtime; `graph.aggregates` picks which run.

use std::sync::Arc;

use salestalk_contracts::{Event, EventType};
use strum::VariantArray;

use super::built_in::{
    ContractWarnings, Cost, DeadLetters, Engagement, Ingestion, Intents, LateArrivals, Latency,
    NewEnumValues, Onboarding, Publish, Quality, Volume,
};
use super::{Aggregate, Durable, Family, ReadMessage};
use crate::windows::WindowSet;

/// Every aggregate this build knows, in storage order.
pub const BUILT_IN: [&'static dyn Aggregate; 13] = [
    &Volume,
    &Cost,
    &Intents,
    &Engagement,
    &Quality,
    &Ingestion,
    &Onboarding,
    &Latency,
    &Publish,
    &DeadLetters,
    &NewEnumValues,
    &LateArrivals,
    &ContractWarnings,
];

/// The aggregates a pipeline runs, shared by all its tasks (`[graph] aggregates`: their
/// names, checked).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct Aggregates {
    all: Arc<[&'static dyn Aggregate]>,
    /// Per event type, the aggregates that read its events: an event is handed only to those.
    by_event_type: Arc<[Vec<&'static dyn Aggregate>]>,
}

impl TryFrom<Vec<String>> for Aggregates {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<Self, String> {
        Self::from_names(&names).map_err(|problems| problems.join("; "))
    }
}

/// Two sets are equal when they run the same aggregates in the same order.
impl PartialEq for Aggregates {
    fn eq(&self, other: &Self) -> bool {
        self.names() == other.names()
    }
}

impl Default for Aggregates {
    /// All of them.
    fn default() -> Self {
        Self::new(BUILT_IN.to_vec())
    }
}

impl Aggregates {
    /// The aggregates named (by family name, e.g. `volume`), in that order; or every name
    /// that is unknown or repeated, each with what was wrong.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, Vec<String>> {
        let mut chosen: Vec<&'static dyn Aggregate> = Vec::new();
        let mut problems = Vec::new();
        for name in names {
            let name = name.as_ref();
            match BUILT_IN.iter().find(|a| a.family().layout().name == name) {
                None => problems.push(format!(
                    "unknown aggregate '{name}' (known: {})",
                    Self::known_names().join(", ")
                )),
                Some(a) if chosen.iter().any(|c| c.family() == a.family()) => {
                    problems.push(format!("aggregate '{name}' is listed twice"));
                }
                Some(a) => chosen.push(*a),
            }
        }
        if problems.is_empty() {
            Ok(Self::new(chosen))
        } else {
            Err(problems)
        }
    }

    fn new(all: Vec<&'static dyn Aggregate>) -> Self {
        let by_event_type = EventType::VARIANTS
            .iter()
            .map(|t| all.iter().copied().filter(|a| a.reads(*t)).collect())
            .collect();
        Self {
            all: all.into(),
            by_event_type,
        }
    }

    /// The names configuration accepts.
    pub fn known_names() -> Vec<&'static str> {
        BUILT_IN.iter().map(|a| a.family().layout().name).collect()
    }

    /// The names of the aggregates that run, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.all.iter().map(|a| a.family().layout().name).collect()
    }

    /// Whether the aggregate of `family` runs.
    pub fn includes(&self, family: Family) -> bool {
        self.all.iter().any(|a| a.family() == family)
    }

    /// Hands a counted event, in the minute starting at `window_start`, to every aggregate
    /// that reads its type.
    pub fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, window_start: i64) {
        // Interned once: every row this event touches shares it.
        let tenant = set.symbol(event.envelope.tenant_id);
        let readers = &self.by_event_type[event.envelope.event_type as usize];
        for aggregate in readers {
            aggregate.on_event(set, event, tenant, window_start);
        }
    }

    /// Hands a message read to every aggregate.
    pub fn on_read(&self, set: &mut WindowSet, message: &ReadMessage<'_>) {
        for aggregate in self.all.iter() {
            aggregate.on_read(set, message);
        }
    }

    /// Hands a durable output to every aggregate.
    pub fn on_durable(&self, set: &mut WindowSet, output: &Durable<'_>) {
        for aggregate in self.all.iter() {
            aggregate.on_durable(set, output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_exactly_one_built_in_aggregate() {
        let families: Vec<Family> = BUILT_IN.iter().map(|a| a.family()).collect();
        assert_eq!(families, Family::ALL);
    }

    #[test]
    fn names_are_checked_and_every_problem_is_listed() {
        let chosen = Aggregates::from_names(&["volume", "cost"]).expect("known names");
        assert!(chosen.includes(Family::Cost) && !chosen.includes(Family::Latency));
        let problems =
            Aggregates::from_names(&["volume", "costs", "volume", "nope"]).expect_err("bad names");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("'costs'") && problems[0].contains("known: volume, cost"));
        assert!(problems[1].contains("listed twice"));
    }
}
