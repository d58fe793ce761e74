//! The tally operator: counts what flowed through the graph, by event type and by
//! rejection reason. It is how a run reports itself and how tests compare runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::{Rejected, Validated};

/// Running counts of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Messages seen.
    pub messages: u64,
    /// Valid events, by event type.
    pub valid: BTreeMap<String, u64>,
    /// Rejected messages, by dead-letter reason.
    pub rejected: BTreeMap<String, u64>,
}

impl Tally {
    /// Adds one validated batch.
    pub fn add(&mut self, accepted: &[Validated], rejected: &[Rejected]) {
        self.messages += (accepted.len() + rejected.len()) as u64;
        for event in accepted {
            *self
                .valid
                .entry(event.event_type.as_str().to_string())
                .or_default() += 1;
        }
        for reject in rejected {
            *self
                .rejected
                .entry(reject.reason.as_str().to_string())
                .or_default() += 1;
        }
    }

    /// Valid events of every type.
    pub fn valid_total(&self) -> u64 {
        self.valid.values().sum()
    }

    /// Rejected messages of every reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salestalk_contracts::{EventType, Reason};

    #[test]
    fn counts_by_type_and_reason() {
        let valid = Validated {
            event_type: EventType::MetricsIngestedV1,
            tenant_id: "t".into(),
            event_id: 1,
        };
        let reject = Rejected {
            topic: "x".into(),
            partition: 0,
            offset: 0,
            reason: Reason::NotJson,
            violations: vec![],
        };
        let mut tally = Tally::default();
        tally.add(&[valid.clone(), valid], &[reject]);
        assert_eq!(tally.messages, 3);
        assert_eq!(tally.valid["metrics.ingested.v1"], 2);
        assert_eq!(tally.rejected["not_json"], 1);
        assert_eq!((tally.valid_total(), tally.rejected_total()), (2, 1));
    }
}
