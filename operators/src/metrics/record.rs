//! The built-in aggregates: how each message updates the window rows of one family. Pure
//! functions over a [`WindowSet`]; the task decides the window and whether the event counts.

use salestalk_contracts::{Event, EventData, EventType};

use crate::dead_letter::DeadLetterReason;

use super::aggregate::{Aggregate, Durable};
use super::family::Family;
use super::windows::{Symbol, WindowSet};

/// Classifications below this confidence count as low-confidence.
pub const LOW_CONFIDENCE: f64 = 0.5;

/// US dollars as integer nano-dollars, the unit every cost is summed in (exact to the cent
/// and far beyond; `f64` sums are not).
pub fn nanos(usd: f64) -> i64 {
    (usd * 1e9).round() as i64
}

/// Adds to a named integer counter of a row. The name's position is found at compile time
/// (a name the family's layout lacks fails the build), so the hot path does no lookup.
macro_rules! add {
    (&mut $values:expr, $family:expr, $name:literal, $amount:expr $(,)?) => {
        $values[const { $family.int_slot($name) }] += $amount
    };
}

/// Like `add!`, for a named floating-point sum.
macro_rules! add_float {
    (&mut $values:expr, $family:expr, $name:literal, $amount:expr $(,)?) => {
        $values[const { $family.float_slot($name) }] += $amount
    };
}

/// Distinct valid events per tenant, event type and source.
#[derive(Debug)]
pub struct Volume;

impl Aggregate for Volume {
    fn family(&self) -> Family {
        Family::Volume
    }

    fn reads(&self, _event_type: EventType) -> bool {
        true
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let envelope = &event.envelope;
        let dims = [envelope.event_type.as_str(), envelope.source, ""];
        let row = set.row_for_symbol(Family::Volume, window_start, tenant, dims);
        add!(&mut row.ints, Family::Volume, "events", 1);
    }
}

/// Classifications per tenant, intent, subject and measure (`classification.performed`).
#[derive(Debug)]
pub struct Intents;

impl Aggregate for Intents {
    fn family(&self) -> Family {
        Family::Intents
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type == EventType::ClassificationPerformedV1
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::ClassificationPerformed(data) = &event.data else {
            return;
        };
        let c = &data.classification;
        const FAMILY: Family = Family::Intents;
        let dims = [c.intent.into(), c.subject.into(), c.measure.into()];
        let row = set.row_for_symbol(FAMILY, window_start, tenant, dims);
        add!(&mut row.ints, FAMILY, "classifications", 1);
        add!(
            &mut row.ints,
            FAMILY,
            "low_confidence",
            i64::from(c.confidence < LOW_CONFIDENCE),
        );
        add_float!(&mut row.floats, FAMILY, "confidence_sum", c.confidence);
    }
}

/// AI cost and tokens per tenant, event type and model (`narrative.generated`).
#[derive(Debug)]
pub struct Cost;

impl Aggregate for Cost {
    fn family(&self) -> Family {
        Family::Cost
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type == EventType::NarrativeGeneratedV1
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::NarrativeGenerated(data) = &event.data else {
            return;
        };
        let event_type = event.envelope.event_type.as_str();
        let model = data.ai_model.model_id;
        let tokens = &data.token_usage;
        const FAMILY: Family = Family::Cost;
        let row = set.row_for_symbol(FAMILY, window_start, tenant, [event_type, model, ""]);
        add!(
            &mut row.ints,
            FAMILY,
            "cost_nanos",
            nanos(data.cost.amount_usd),
        );
        add!(&mut row.ints, FAMILY, "prompt_tokens", tokens.prompt as i64);
        add!(
            &mut row.ints,
            FAMILY,
            "completion_tokens",
            tokens.completion as i64,
        );
        add!(&mut row.ints, FAMILY, "total_tokens", tokens.total as i64);
        add!(&mut row.ints, FAMILY, "messages", 1);
    }
}

/// Narrative quality per tenant and model (`narrative.generated`).
#[derive(Debug)]
pub struct Quality;

impl Aggregate for Quality {
    fn family(&self) -> Family {
        Family::Quality
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type == EventType::NarrativeGeneratedV1
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::NarrativeGenerated(data) = &event.data else {
            return;
        };
        let model = data.ai_model.model_id;
        let tokens = &data.token_usage;
        const FAMILY: Family = Family::Quality;
        let q = &data.quality;
        let row = set.row_for_symbol(FAMILY, window_start, tenant, [model, "", ""]);
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
    }
}

/// Conversations, their messages, ratings and actions per tenant (`conversation.completed`).
#[derive(Debug)]
pub struct Engagement;

impl Aggregate for Engagement {
    fn family(&self) -> Family {
        Family::Engagement
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type == EventType::ConversationCompletedV1
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::ConversationCompleted(data) = &event.data else {
            return;
        };
        const FAMILY: Family = Family::Engagement;
        let row = set.row_for_symbol(FAMILY, window_start, tenant, ["", "", ""]);
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
            "rating_sum",
            i64::from(data.satisfaction_rating.unwrap_or(0)),
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
        row.histogram.record(data.duration_seconds);
    }
}

/// Metric-ingestion batches per tenant and source (`metrics.ingested`).
#[derive(Debug)]
pub struct Ingestion;

impl Aggregate for Ingestion {
    fn family(&self) -> Family {
        Family::Ingestion
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type == EventType::MetricsIngestedV1
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::MetricsIngested(data) = &event.data else {
            return;
        };
        const FAMILY: Family = Family::Ingestion;
        let row = set.row_for_symbol(FAMILY, window_start, tenant, [data.source.into(), "", ""]);
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
    }
}

/// Tenants provisioned per plan and region (`tenant.provisioned`).
#[derive(Debug)]
pub struct Onboarding;

impl Aggregate for Onboarding {
    fn family(&self) -> Family {
        Family::Onboarding
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type == EventType::TenantProvisionedV1
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::TenantProvisioned(data) = &event.data else {
            return;
        };
        const FAMILY: Family = Family::Onboarding;
        let row = set.row_for_symbol(FAMILY, window_start, tenant, [data.plan, data.region, ""]);
        add!(&mut row.ints, FAMILY, "tenants", 1);
        add!(
            &mut row.ints,
            FAMILY,
            "sample_data_seeded",
            i64::from(data.sample_data_seeded),
        );
        add_float!(
            &mut row.floats,
            FAMILY,
            "provisioning_ms_sum",
            data.provisioning_time_ms,
        );
        row.histogram.record(data.provisioning_time_ms);
    }
}

/// What the pipeline knows about a message it read, for the publish and dead-letter
/// families (windowed by broker time, since a rejected message may have no event time).
#[derive(Debug, Clone, Copy)]
pub struct ReadMessage<'a> {
    /// Window of the message's broker timestamp.
    pub window_start: i64,
    /// Source topic.
    pub topic: &'a str,
    /// Tenant, when readable; `""` otherwise.
    pub tenant: &'a str,
    /// Emitting service, when readable; `""` otherwise.
    pub source: &'a str,
    /// Event type, when readable; `""` otherwise.
    pub event_type: &'a str,
    /// Why it was rejected, if it was.
    pub rejected: Option<DeadLetterReason>,
    /// Whether it repeated an `eventId` already counted.
    pub duplicate: bool,
}

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
        let row = set.row_for(FAMILY, message.window_start, message.tenant, dims);
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
    }
}

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
        let row = set.row_for(FAMILY, message.window_start, message.tenant, dims);
        add!(&mut row.ints, FAMILY, "messages", 1);
    }
}

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
        let row = set.row_for_symbol(FAMILY, output.window_start, output.tenant, dims);
        add!(&mut row.ints, FAMILY, "events", 1);
        add_float!(&mut row.floats, FAMILY, "latency_ms_sum", output.latency_ms);
        row.histogram.record(output.latency_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Aggregates;
    use salestalk_contracts::{parse, validate};

    const EXAMPLES: &str = include_str!("../../../contracts/tests/corpus/spec-examples.jsonl");

    fn recorded() -> WindowSet {
        let mut set = WindowSet::default();
        for line in EXAMPLES.lines() {
            let value = parse(line.as_bytes()).expect("json");
            let event = validate(&value).expect("valid");
            Aggregates::default().on_event(&mut set, &event, 0);
        }
        set
    }

    fn ints(set: &mut WindowSet, family: Family, dims: [&str; 3]) -> Vec<i64> {
        let key = set.key(family, 0, "tenant-abc123", dims);
        set.get(&key)
            .unwrap_or_else(|| panic!("no {family:?} row {dims:?}"))
            .ints
            .clone()
    }

    #[test]
    fn the_spec_examples_land_in_their_families() {
        let mut set = recorded();
        assert_eq!(
            ints(
                &mut set,
                Family::Volume,
                ["narrative.generated.v1", "chat-handler", ""]
            ),
            [1]
        );
        assert_eq!(
            ints(
                &mut set,
                Family::Volume,
                ["metrics.ingested.v1", "metrics-handler", ""]
            ),
            [1]
        );
        let cost = ints(
            &mut set,
            Family::Cost,
            ["narrative.generated.v1", "anthropic.claude-v2", ""],
        );
        assert_eq!(cost, [21_700_000, 387, 156, 543, 1]);
        let quality = ints(&mut set, Family::Quality, ["anthropic.claude-v2", "", ""]);
        assert_eq!(quality, [1, 0, 3, 3, 543]);
        assert_eq!(
            ints(
                &mut set,
                Family::Intents,
                ["fact_retrieval", "revenue", "total"]
            ),
            [1, 0]
        );
        let engagement = ints(&mut set, Family::Engagement, ["", "", ""]);
        assert_eq!(engagement, [1, 8, 4, 4, 1, 5, 1, 0, 0, 1, 87_000_000]);
        assert_eq!(
            ints(&mut set, Family::Ingestion, ["csv_upload", "", ""]),
            [1, 247, 247, 0, 3]
        );
        assert_eq!(
            ints(&mut set, Family::Onboarding, ["standard", "us-east-1", ""]),
            [1, 1]
        );
    }

    #[test]
    fn histograms_and_sums_follow_the_events() {
        let mut set = recorded();
        let key = set.key(
            Family::Quality,
            0,
            "tenant-abc123",
            ["anthropic.claude-v2", "", ""],
        );
        let row = set.get(&key).expect("row");
        assert_eq!(row.histogram.count(), 1);
        assert_eq!(row.floats, [0.94]);
    }

    #[test]
    fn reads_count_submitted_and_rejected_by_reason() {
        let mut set = WindowSet::default();
        let ok = ReadMessage {
            window_start: 60,
            topic: "t",
            tenant: "a",
            source: "s",
            event_type: "x.y.v1",
            rejected: None,
            duplicate: false,
        };
        Aggregates::default().on_read(&mut set, &ok);
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                rejected: Some(DeadLetterReason::SchemaViolation),
                ..ok
            },
        );
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                tenant: "",
                source: "",
                event_type: "",
                rejected: Some(DeadLetterReason::NotJson),
                ..ok
            },
        );
        let key = set.key(Family::Publish, 60, "a", ["s", "t", ""]);
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                duplicate: true,
                ..ok
            },
        );
        assert_eq!(set.get(&key).expect("row").ints, [3, 1, 1]);
        let key = set.key(Family::DeadLetters, 60, "", ["not_json", "", "t"]);
        assert_eq!(set.get(&key).expect("row").ints, [1]);
    }

    #[test]
    fn costs_are_summed_in_integer_nanodollars() {
        assert_eq!(nanos(0.0217), 21_700_000);
        assert_eq!(nanos(0.1) + nanos(0.2), nanos(0.3));
    }

    #[test]
    fn latency_is_recorded_per_consumer() {
        let mut set = WindowSet::default();
        let tenant = set.symbol("a");
        for latency_ms in [1500.0, 500.0] {
            let output = Durable {
                window_start: 0,
                tenant,
                event_type: "x.y.v1",
                consumer: "clickhouse",
                latency_ms,
            };
            Aggregates::default().on_durable(&mut set, &output);
        }
        let key = set.key(Family::Latency, 0, "a", ["x.y.v1", "clickhouse", ""]);
        let row = set.get(&key).expect("row");
        assert_eq!(
            (row.ints[0], row.floats[0], row.histogram.count()),
            (2, 2000.0, 2)
        );
    }
}
