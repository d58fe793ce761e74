//! The volume aggregate: distinct valid events per tenant, event type and source.

use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventType};

/// Distinct valid events per tenant, event type and source.
#[derive(Debug)]
pub struct Volume;

impl Aggregate for Volume {
    fn family(&self) -> Family {
        Family::Volume
    }

    fn reads(&self, _event_type: EventType) -> bool {
        true
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let envelope = &event.envelope;
        let dims = [envelope.event_type.as_str(), envelope.source, ""];
        set.update(Family::Volume, window_start, tenant, dims, |row| {
            add!(&mut row.ints, Family::Volume, "events", 1);
        });
    }
}
