//! The dead letters aggregate: messages sent to the dead-letter path per reason, event type and topic (broker time).

use crate::aggregate::{Aggregate, Family, ReadMessage};
use crate::windows::WindowSet;

/// Messages sent to the dead-letter path per reason, event type and topic (broker time).
#[derive(Debug)]
pub struct DeadLetters;

impl Aggregate for DeadLetters {
    fn family(&self) -> Family {
        Family::DeadLetters
    }

    fn on_read(&self, set: &mut WindowSet, message: &ReadMessage<'_>) {
        const FAMILY: Family = Family::DeadLetters;
        let Some(reason) = message.rejected else {
            return;
        };
        let dims = [reason.as_str(), message.event_type, message.topic];
        set.update_for(FAMILY, message.window_start, message.tenant, dims, |row| {
            add!(&mut row.ints, FAMILY, "messages", 1);
        });
    }
}
