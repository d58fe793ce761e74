//! The ingestion aggregate: metric-ingestion batches per tenant and source (`metrics.ingested`).

use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventData, EventKind, EventType};

/// Metric-ingestion batches per tenant and source (`metrics.ingested`).
#[derive(Debug)]
pub struct Ingestion;

impl Aggregate for Ingestion {
    fn family(&self) -> Family {
        Family::Ingestion
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type.kind() == EventKind::MetricsIngested
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::MetricsIngested(data) = &event.data else {
            return;
        };
        const FAMILY: Family = Family::Ingestion;
        set.update(
            FAMILY,
            window_start,
            tenant,
            [data.source.as_wire(), "", ""],
            |row| {
                add!(&mut row.ints, FAMILY, "batches", 1);
                add!(&mut row.ints, FAMILY, "records", data.record_count as i64);
                add!(
                    &mut row.ints,
                    FAMILY,
                    "valid_records",
                    data.validation.valid as i64,
                );
                add!(
                    &mut row.ints,
                    FAMILY,
                    "invalid_records",
                    data.validation.invalid as i64,
                );
                add!(
                    &mut row.ints,
                    FAMILY,
                    "warnings",
                    data.validation.warnings as i64,
                );
                add_float!(
                    &mut row.floats,
                    FAMILY,
                    "processing_ms_sum",
                    data.processing_time_ms,
                );
            },
        );
    }
}
