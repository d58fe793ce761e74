//! The late-arrivals aggregate: events that came after their window was final, per tenant,
//! event type and the event-time minute they belong to, counted in the minute they arrived
//! (broker time). They are archived, and the correction of their day counts them
//! (docs/adr/0016-late-events-and-corrections.md); these rows say how many there were and
//! which windows will change, before and after.

use crate::aggregate::{Aggregate, Family, ReadMessage};
use crate::windows::WindowSet;

/// Late arrivals per tenant, event type and event-time minute (broker time).
#[derive(Debug)]
pub struct LateArrivals;

/// `YYYY-MM-DD hh:mm:00` of a minute (Unix s): how the event window is written as a
/// dimension (ClickHouse's `toDateTime` reads it back).
pub fn window_text(window_start: i64) -> String {
    chrono::DateTime::from_timestamp(window_start, 0)
        .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

impl Aggregate for LateArrivals {
    fn family(&self) -> Family {
        Family::LateArrivals
    }

    fn on_read(&self, set: &mut WindowSet, message: &ReadMessage<'_>) {
        const FAMILY: Family = Family::LateArrivals;
        let Some(window) = message.late_window else {
            return;
        };
        // Rare (late events only), so formatting the window here costs nothing measurable.
        let event_window = window_text(window);
        let dims = [message.event_type, event_window.as_str(), ""];
        set.update_for(FAMILY, message.window_start, message.tenant, dims, |row| {
            add!(&mut row.ints, FAMILY, "events", 1);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_written_as_clickhouse_reads_them() {
        assert_eq!(window_text(1_762_646_460), "2025-11-09 00:01:00");
    }
}
