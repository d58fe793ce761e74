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
        // A result a narrative did not report adds nothing to its sum and is counted as
        // unknown, so each rate's denominator is the narratives that reported it.
        let (facts_verified, facts_total) = match (q.facts_verified, q.facts_total) {
            (Some(verified), Some(total)) => (verified, total),
            // Half a ratio says nothing about the share verified.
            _ => (0, 0),
        };
        set.update(FAMILY, window_start, tenant, [model, "", ""], |row| {
            add!(&mut row.ints, FAMILY, "narratives", 1);
            add!(
                &mut row.ints,
                FAMILY,
                "hallucinations",
                i64::from(q.hallucination_detected == Some(true)),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "hallucination_unknown",
                i64::from(q.hallucination_detected.is_none()),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "facts_verified",
                facts_verified as i64
            );
            add!(&mut row.ints, FAMILY, "facts_total", facts_total as i64);
            add!(
                &mut row.ints,
                FAMILY,
                "total_tokens",
                tokens.total.unwrap_or(0) as i64,
            );
            add!(
                &mut row.ints,
                FAMILY,
                "confidence_unknown",
                i64::from(q.confidence_score.is_none()),
            );
            add_float!(
                &mut row.floats,
                FAMILY,
                "confidence_sum",
                q.confidence_score.unwrap_or(0.0),
            );
            if let Some(generation_ms) = data.performance.ai_generation_ms
                && let Some(histogram) = row.histogram
            {
                histogram.record(generation_ms);
            }
        });
    }
}
