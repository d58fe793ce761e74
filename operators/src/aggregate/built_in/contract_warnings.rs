//! The contract-warnings aggregate: accepted events that depart from the contract's tables
//! (an empty optional identifier, a missing `metadata`, a narrative without one of its
//! timings, ...), per tenant, producer `source`, field and kind, so the team owning the
//! producer can fix it while its events still count (ADR 0001, `docs/contracts.md`).

use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventType};

/// Accepted events carrying a contract warning, per tenant, source, field and kind.
#[derive(Debug)]
pub struct ContractWarnings;

impl Aggregate for ContractWarnings {
    fn family(&self) -> Family {
        Family::ContractWarnings
    }

    fn reads(&self, _event_type: EventType) -> bool {
        true
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        const FAMILY: Family = Family::ContractWarnings;
        let source = event.envelope.source;
        // Fields are the contract's own (the checker warns at known keys only), so the key
        // space is bounded by the contract, not by the producer.
        for warning in &event.warnings {
            set.update(
                FAMILY,
                window_start,
                tenant,
                [source, warning.path.as_str(), warning.kind_label()],
                |row| {
                    add!(&mut row.ints, FAMILY, "events", 1);
                },
            );
        }
    }
}
