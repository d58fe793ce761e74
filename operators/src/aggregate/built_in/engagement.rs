//! The engagement aggregate: conversations, their messages, ratings and actions per tenant (`conversation.completed`).

use super::nanos;
use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventData, EventKind, EventType};

/// Conversations, their messages, ratings and actions per tenant (`conversation.completed`).
#[derive(Debug)]
pub struct Engagement;

impl Aggregate for Engagement {
    fn family(&self) -> Family {
        Family::Engagement
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type.kind() == EventKind::ConversationCompleted
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::ConversationCompleted(data) = &event.data else {
            return;
        };
        const FAMILY: Family = Family::Engagement;
        set.update(FAMILY, window_start, tenant, ["", "", ""], |row| {
            let actions = &data.actions_taken;
            add!(&mut row.ints, FAMILY, "conversations", 1);
            add!(&mut row.ints, FAMILY, "messages", data.message_count as i64);
            add!(
                &mut row.ints,
                FAMILY,
                "user_messages",
                data.user_message_count as i64,
            );
            add!(
                &mut row.ints,
                FAMILY,
                "assistant_messages",
                data.assistant_message_count as i64,
            );
            add!(
                &mut row.ints,
                FAMILY,
                "rated",
                i64::from(data.satisfaction_rating.is_some()),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "insight_saved",
                i64::from(actions.insight_saved),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "insight_shared",
                i64::from(actions.insight_shared),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "data_exported",
                i64::from(actions.data_exported),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "follow_up_created",
                i64::from(actions.follow_up_created),
            );
            add!(
                &mut row.ints,
                FAMILY,
                "total_cost_nanos",
                nanos(data.total_cost_usd),
            );
            add_float!(
                &mut row.floats,
                FAMILY,
                "duration_seconds_sum",
                data.duration_seconds,
            );
            add_float!(
                &mut row.floats,
                FAMILY,
                "response_time_ms_sum",
                data.average_response_time_ms,
            );
            add_float!(
                &mut row.floats,
                FAMILY,
                "satisfaction_sum",
                data.satisfaction_rating.unwrap_or(0.0),
            );
            if let Some(histogram) = row.histogram {
                histogram.record(data.duration_seconds);
            }
        });
    }
}
