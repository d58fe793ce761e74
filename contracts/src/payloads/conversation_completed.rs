//! `conversation.completed.v1`: a conversation session ended. Drives the engagement metrics.

use chrono::{DateTime, Utc};

use crate::checker::{self as read, Checker, Object};
use crate::enums::{Intent, Open, Subject};

/// Payload of `conversation.completed.v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationCompleted<'a> {
    /// `conversationId`.
    pub conversation_id: &'a str,
    /// `startTime`.
    pub start_time: DateTime<Utc>,
    /// `endTime`. Not checked against `startTime`: an inversion is a data-quality signal.
    pub end_time: DateTime<Utc>,
    /// `durationSeconds`.
    pub duration_seconds: f64,
    /// `messageCount` (user + assistant; the sum is not enforced).
    pub message_count: u64,
    /// `userMessageCount`.
    pub user_message_count: u64,
    /// `assistantMessageCount`.
    pub assistant_message_count: u64,
    /// `subjects`: unique subjects discussed.
    pub subjects: Vec<Open<'a, Subject>>,
    /// `intents`: unique intents identified.
    pub intents: Vec<Open<'a, Intent>>,
    /// `actionsTaken`.
    pub actions_taken: ActionsTaken,
    /// `satisfactionRating` (a number from 1 to 5, "number (1-5)" in the contract, so 4.5 is
    /// a rating), if the user gave one.
    pub satisfaction_rating: Option<f64>,
    /// `totalCostUSD`: conversation-level total, never added on top of message costs.
    pub total_cost_usd: f64,
    /// `averageResponseTimeMs`.
    pub average_response_time_ms: f64,
}

/// What the user did during the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionsTaken {
    /// `insightSaved`.
    pub insight_saved: bool,
    /// `insightShared`.
    pub insight_shared: bool,
    /// `dataExported`.
    pub data_exported: bool,
    /// `followUpCreated`.
    pub follow_up_created: bool,
}

impl<'a> ConversationCompleted<'a> {
    pub(crate) fn read(c: &mut Checker, data: &'a Object<'a>) -> Option<Self> {
        let conversation_id = c.required(data, "conversationId", read::non_empty);
        let start_time = c.required(data, "startTime", read::timestamp);
        let end_time = c.required(data, "endTime", read::timestamp);
        let duration_seconds = c.required(data, "durationSeconds", read::non_negative);
        let message_count = c.required(data, "messageCount", read::count);
        let user_message_count = c.required(data, "userMessageCount", read::count);
        let assistant_message_count = c.required(data, "assistantMessageCount", read::count);
        let subjects = c.required_enum_set::<Subject>(data, "subjects");
        let intents = c.required_enum_set::<Intent>(data, "intents");
        let actions_taken = c.required_object(data, "actionsTaken", |c, o| {
            let insight_saved = c.required(o, "insightSaved", read::boolean);
            let insight_shared = c.required(o, "insightShared", read::boolean);
            let data_exported = c.required(o, "dataExported", read::boolean);
            let follow_up_created = c.required(o, "followUpCreated", read::boolean);
            Some(ActionsTaken {
                insight_saved: insight_saved?,
                insight_shared: insight_shared?,
                data_exported: data_exported?,
                follow_up_created: follow_up_created?,
            })
        });
        let satisfaction_rating = c.optional(data, "satisfactionRating", |v| {
            read::number_in(v, 1.0, Some(5.0))
        });
        let total_cost_usd = c.required(data, "totalCostUSD", read::non_negative);
        let average_response_time_ms =
            c.required(data, "averageResponseTimeMs", read::non_negative);
        Some(Self {
            conversation_id: conversation_id?,
            start_time: start_time?,
            end_time: end_time?,
            duration_seconds: duration_seconds?,
            message_count: message_count?,
            user_message_count: user_message_count?,
            assistant_message_count: assistant_message_count?,
            subjects: subjects?,
            intents: intents?,
            actions_taken: actions_taken?,
            satisfaction_rating,
            total_cost_usd: total_cost_usd?,
            average_response_time_ms: average_response_time_ms?,
        })
    }
}
