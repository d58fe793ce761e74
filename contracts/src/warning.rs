//! Contract warnings: where an accepted event departs from the contract's field tables in a
//! way the contract itself allows elsewhere (its JSON Schema, its examples, its own test-event
//! generator), or where the tables are silent. Such an event is counted as usual and carries
//! the warning, counted by producer `source`, field and kind, so a team can fix the producer
//! without losing the event (ADR 0001). Only what makes an event unusable is a violation.

use crate::violation::ViolationKind;

/// One departure from the contract's tables that did not stop the event.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractWarning {
    /// RFC 6901 pointer to the field.
    pub path: String,
    /// How it departs, in the violations' terms.
    pub kind: ViolationKind,
}

impl ContractWarning {
    /// The kind as a label to count by (`missing`, `empty`, `bad_format`, ...).
    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            ViolationKind::NotJson(_) => "not_json",
            ViolationKind::TooLarge { .. } => "too_large",
            ViolationKind::Missing => "missing",
            ViolationKind::WrongType { .. } => "wrong_type",
            ViolationKind::OutOfRange { .. } => "out_of_range",
            ViolationKind::Empty => "empty",
            ViolationKind::NotInEnum { .. } => "not_in_enum",
            ViolationKind::NotEnumValue { .. } => "not_enum_value",
            ViolationKind::BadFormat(_) => "bad_format",
            ViolationKind::DuplicateItems => "repeated_item",
            _ => "other",
        }
    }
}
