//! The publish aggregate: messages read, rejected and resent per tenant, source and topic (broker time): the

use crate::aggregate::{Aggregate, Family, ReadMessage};
use crate::windows::WindowSet;

/// Messages read, rejected and resent per tenant, source and topic (broker time): the
/// publish success rate.
#[derive(Debug)]
pub struct Publish;

impl Aggregate for Publish {
    fn family(&self) -> Family {
        Family::Publish
    }

    fn on_read(&self, set: &mut WindowSet, message: &ReadMessage<'_>) {
        const FAMILY: Family = Family::Publish;
        let dims = [message.source, message.topic, ""];
        set.update_for(FAMILY, message.window_start, message.tenant, dims, |row| {
            add!(&mut row.ints, FAMILY, "submitted", 1);
            add!(
                &mut row.ints,
                FAMILY,
                "rejected",
                i64::from(message.rejected.is_some()),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "duplicates",
                i64::from(message.duplicate),
            );
        });
    }
}
