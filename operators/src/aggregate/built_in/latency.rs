//! The latency aggregate: event-to-durable latency per tenant, event type and consumer, as a mergeable histogram.

use crate::aggregate::{Aggregate, Durable, Family};
use crate::windows::WindowSet;

/// Event-to-durable latency per tenant, event type and consumer, as a mergeable histogram.
#[derive(Debug)]
pub struct Latency;

impl Aggregate for Latency {
    fn family(&self) -> Family {
        Family::Latency
    }

    fn on_durable(&self, set: &mut WindowSet, output: &Durable<'_>) {
        const FAMILY: Family = Family::Latency;
        let dims = [output.event_type, output.consumer, ""];
        set.update(FAMILY, output.window_start, output.tenant, dims, |row| {
            add!(&mut row.ints, FAMILY, "events", 1);
            add_float!(&mut row.floats, FAMILY, "latency_ms_sum", output.latency_ms);
            if let Some(histogram) = row.histogram {
                histogram.record(output.latency_ms);
            }
        });
    }
}
