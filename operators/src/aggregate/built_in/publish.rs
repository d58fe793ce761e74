//! The publish aggregate: messages read per tenant, source, topic and publish path (broker
//! time), with those that failed as publishes (never valid events), resends, and resends
//! whose bytes differ from the first copy (conflicting duplicates): the pipeline's
//! half of the publish success rate. The gateway counts its own half (`ingest_outcomes`).

use crate::aggregate::{Aggregate, Family, ReadMessage};
use crate::windows::WindowSet;

/// Messages read, failed as publishes and resent per tenant, source, topic and path (broker
/// time).
#[derive(Debug)]
pub struct Publish;

impl Aggregate for Publish {
    fn family(&self) -> Family {
        Family::Publish
    }

    fn on_read(&self, set: &mut WindowSet, message: &ReadMessage<'_>) {
        const FAMILY: Family = Family::Publish;
        let dims = [message.source, message.topic, message.path.as_str()];
        let failed = message
            .rejected
            .is_some_and(|reason| reason.is_publish_failure());
        set.update_for(FAMILY, message.window_start, message.tenant, dims, |row| {
            add!(&mut row.ints, FAMILY, "submitted", 1);
            add!(&mut row.ints, FAMILY, "rejected", i64::from(failed));
            add!(
                &mut row.ints,
                FAMILY,
                "duplicates",
                i64::from(message.duplicate),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "conflicting_duplicates",
                i64::from(message.conflicting),
            );
        });
    }
}
