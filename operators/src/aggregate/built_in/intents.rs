//! The intents aggregate: classifications per tenant, intent, subject and measure (`classification.performed`).

use super::LOW_CONFIDENCE;
use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventData, EventKind, EventType};

/// Classifications per tenant, intent, subject and measure (`classification.performed`).
#[derive(Debug)]
pub struct Intents;

impl Aggregate for Intents {
    fn family(&self) -> Family {
        Family::Intents
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type.kind() == EventKind::ClassificationPerformed
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::ClassificationPerformed(data) = &event.data else {
            return;
        };
        let c = &data.classification;
        const FAMILY: Family = Family::Intents;
        let dims = [c.intent.as_wire(), c.subject.as_wire(), c.measure.as_wire()];
        set.update(FAMILY, window_start, tenant, dims, |row| {
            add!(&mut row.ints, FAMILY, "classifications", 1);
            add!(
                &mut row.ints,
                FAMILY,
                "low_confidence",
                i64::from(c.confidence < LOW_CONFIDENCE),
            );
            add_float!(&mut row.floats, FAMILY, "confidence_sum", c.confidence);
        });
    }
}
