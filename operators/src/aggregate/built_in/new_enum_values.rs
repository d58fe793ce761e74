//! The new-enum-values aggregate: events carrying a value of an open contract enum that this
//! build does not know yet, per tenant, event type, field and value (so teams notice a
//! producer ahead of the contract; `docs/contracts.md`).

use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventType};

/// Events carrying a new enum value, per tenant, event type, field and value.
#[derive(Debug)]
pub struct NewEnumValues;

impl Aggregate for NewEnumValues {
    fn family(&self) -> Family {
        Family::NewEnumValues
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type.domain() != "tenant"
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        const FAMILY: Family = Family::NewEnumValues;
        let event_type = event.envelope.event_type.as_str();
        for (field, value) in event.data.new_enum_values() {
            set.update(
                FAMILY,
                window_start,
                tenant,
                [event_type, field, value],
                |row| {
                    add!(&mut row.ints, FAMILY, "events", 1);
                },
            );
        }
    }
}
