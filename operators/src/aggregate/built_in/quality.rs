//! The quality aggregate: narrative quality per tenant and model (`narrative.generated`).

use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventData, EventKind, EventType};

/// Narrative quality per tenant and model (`narrative.generated`).
#[derive(Debug)]
pub struct Quality;

impl Aggregate for Quality {
    fn family(&self) -> Family {
        Family::Quality
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type.kind() == EventKind::NarrativeGenerated
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::NarrativeGenerated(data) = &event.data else {
            return;
        };
        let model = data.ai_model.model_id;
        let tokens = &data.token_usage;
        const FAMILY: Family = Family::Quality;
        let q = &data.quality;
        set.update(FAMILY, window_start, tenant, [model, "", ""], |row| {
            add!(&mut row.ints, FAMILY, "narratives", 1);
            add!(
                &mut row.ints,
                FAMILY,
                "hallucinations",
                i64::from(q.hallucination_detected),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "facts_verified",
                q.facts_verified as i64,
            );
            add!(&mut row.ints, FAMILY, "facts_total", q.facts_total as i64);
            add!(&mut row.ints, FAMILY, "total_tokens", tokens.total as i64);
            add_float!(
                &mut row.floats,
                FAMILY,
                "confidence_sum",
                q.confidence_score,
            );
            row.histogram.record(data.performance.ai_generation_ms);
        });
    }
}
