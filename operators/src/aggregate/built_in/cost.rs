//! The cost aggregate: AI cost and tokens per tenant, event type and model (`narrative.generated`).

use super::nanos;
use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventData, EventKind, EventType};

/// AI cost and tokens per tenant, event type and model (`narrative.generated`).
#[derive(Debug)]
pub struct Cost;

impl Aggregate for Cost {
    fn family(&self) -> Family {
        Family::Cost
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type.kind() == EventKind::NarrativeGenerated
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::NarrativeGenerated(data) = &event.data else {
            return;
        };
        let event_type = event.envelope.event_type.as_str();
        let model = data.ai_model.model_id;
        let tokens = &data.token_usage;
        const FAMILY: Family = Family::Cost;
        set.update(
            FAMILY,
            window_start,
            tenant,
            [event_type, model, ""],
            |row| {
                add!(
                    &mut row.ints,
                    FAMILY,
                    "cost_nanos",
                    nanos(data.cost.amount_usd),
                );
                add!(
                    &mut row.ints,
                    FAMILY,
                    "prompt_tokens",
                    tokens.prompt.unwrap_or(0) as i64
                );
                add!(
                    &mut row.ints,
                    FAMILY,
                    "completion_tokens",
                    tokens.completion.unwrap_or(0) as i64,
                );
                add!(
                    &mut row.ints,
                    FAMILY,
                    "total_tokens",
                    tokens.total.unwrap_or(0) as i64
                );
                add!(&mut row.ints, FAMILY, "messages", 1);
            },
        );
    }
}
