//! The typed event: common envelope plus one of the five v1 payloads.
//!
//! Events borrow their strings from the parsed JSON value, so reading one allocates nothing
//! beyond the parse itself.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::enums::{EventType, Open};
use crate::formats;
use crate::payloads::{
    ClassificationPerformed, ConversationCompleted, MetricsIngested, NarrativeGenerated,
    TenantProvisioned,
};
use crate::warning::ContractWarning;

/// An event identifier (a UUID), held as its 128-bit value so that identifiers compare
/// equal whatever the letter case they were written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u128);

impl EventId {
    /// The id written as `text` (a hyphenated UUID, either case): the inverse of `Display`,
    /// the one text codec for ids wherever they are stored.
    pub fn parse(text: &str) -> Option<Self> {
        formats::parse_uuid(text).map(Self)
    }

    /// Its hyphenated lowercase text, without an allocation (what `Display` writes).
    pub fn text(&self) -> formats::UuidText {
        formats::UuidText::new(self.0)
    }
}

/// Stored as its hyphenated lowercase text, the one form every table holds.
impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text().as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        EventId::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format_args!("not a UUID: {text:?}")))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

/// A valid event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// The common envelope.
    pub envelope: Envelope<'a>,
    /// The payload for `envelope.event_type`.
    pub data: EventData<'a>,
    /// Where it departs from the contract's tables without being unusable (empty when it
    /// does not; allocates nothing then).
    pub warnings: Vec<ContractWarning>,
}

/// The common envelope every event carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<'a> {
    /// `eventId`: unique per event; duplicates are resends of the same event.
    pub event_id: EventId,
    /// `eventType`.
    pub event_type: EventType,
    /// `eventVersion` (`1.x`).
    pub event_version: &'a str,
    /// `source`: the emitting service.
    pub source: &'a str,
    /// `timestamp`: event time, normalised to UTC.
    pub timestamp: DateTime<Utc>,
    /// `tenantId`.
    pub tenant_id: &'a str,
    /// `userId`, if given.
    pub user_id: Option<&'a str>,
    /// `sessionId`, if given.
    pub session_id: Option<&'a str>,
    /// `metadata`.
    pub metadata: Metadata<'a>,
}

/// Envelope `metadata`: how this event relates to others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata<'a> {
    /// `correlationId`: shared by every event of one request (`None` when not given, which
    /// is accepted with a contract warning).
    pub correlation_id: Option<&'a str>,
    /// `causationId`: the `eventId` of the event that caused this one.
    pub causation_id: Option<EventId>,
    /// `traceId`: distributed-tracing identifier.
    pub trace_id: Option<&'a str>,
}

/// The payload of each v1 event type.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData<'a> {
    /// `classification.performed.v1`
    ClassificationPerformed(ClassificationPerformed<'a>),
    /// `narrative.generated.v1`
    NarrativeGenerated(NarrativeGenerated<'a>),
    /// `conversation.completed.v1`
    ConversationCompleted(ConversationCompleted<'a>),
    /// `metrics.ingested.v1`
    MetricsIngested(MetricsIngested<'a>),
    /// `tenant.provisioned.v1`
    TenantProvisioned(TenantProvisioned<'a>),
}

impl<'a> EventData<'a> {
    /// Every value of an open enum this build does not know yet, with the pointer of its field
    /// (a set's field, not its item, for `intents` and `subjects`): what `docs/contracts.md`
    /// asks teams to notice.
    pub fn new_enum_values(&self) -> Vec<(&'static str, &'a str)> {
        let mut found = Vec::new();
        let mut note = |field: &'static str, value: Option<&'a str>| {
            if let Some(value) = value {
                found.push((field, value));
            }
        };
        match self {
            Self::ClassificationPerformed(data) => {
                let c = &data.classification;
                note("/data/classification/intent", new_of(c.intent));
                note("/data/classification/subject", new_of(c.subject));
                note("/data/classification/measure", new_of(c.measure));
            }
            Self::NarrativeGenerated(data) => {
                let c = &data.classification;
                note("/data/classification/intent", new_of(c.intent));
                note("/data/classification/subject", new_of(c.subject));
                note("/data/classification/measure", new_of(c.measure));
                note("/data/aiModel/provider", new_of(data.ai_model.provider));
            }
            Self::ConversationCompleted(data) => {
                for intent in &data.intents {
                    note("/data/intents", new_of(*intent));
                }
                for subject in &data.subjects {
                    note("/data/subjects", new_of(*subject));
                }
            }
            Self::MetricsIngested(data) => note("/data/source", new_of(data.source)),
            Self::TenantProvisioned(_) => {}
        }
        found
    }
}

/// The value new enum values are counted under once their field's budget is spent
/// ([`EventData::cap_new_enum_values`]). It is not a well-formed value (those start with a
/// letter), so it never stands for a real one.
pub const OVERFLOW_VALUE: &str = "_overflow";

impl EventData<'_> {
    /// Replaces each new enum value that `keep(field, value)` refuses with
    /// [`OVERFLOW_VALUE`], field by field in the order [`EventData::new_enum_values`] lists
    /// them: the metrics then count the event under one value instead of opening rows for an
    /// unbounded number of them.
    pub fn cap_new_enum_values(&mut self, mut keep: impl FnMut(&'static str, &str) -> bool) {
        fn cap<E>(
            open: &mut Open<'_, E>,
            field: &'static str,
            keep: &mut impl FnMut(&'static str, &str) -> bool,
        ) {
            if let Open::New(text) = open
                && !keep(field, text)
            {
                *open = Open::New(OVERFLOW_VALUE);
            }
        }
        match self {
            Self::ClassificationPerformed(data) => {
                let c = &mut data.classification;
                cap(&mut c.intent, "/data/classification/intent", &mut keep);
                cap(&mut c.subject, "/data/classification/subject", &mut keep);
                cap(&mut c.measure, "/data/classification/measure", &mut keep);
            }
            Self::NarrativeGenerated(data) => {
                let c = &mut data.classification;
                cap(&mut c.intent, "/data/classification/intent", &mut keep);
                cap(&mut c.subject, "/data/classification/subject", &mut keep);
                cap(&mut c.measure, "/data/classification/measure", &mut keep);
                cap(
                    &mut data.ai_model.provider,
                    "/data/aiModel/provider",
                    &mut keep,
                );
            }
            Self::ConversationCompleted(data) => {
                for intent in &mut data.intents {
                    cap(intent, "/data/intents", &mut keep);
                }
                for subject in &mut data.subjects {
                    cap(subject, "/data/subjects", &mut keep);
                }
            }
            Self::MetricsIngested(data) => cap(&mut data.source, "/data/source", &mut keep),
            Self::TenantProvisioned(_) => {}
        }
    }
}

/// The text of a value this build does not know.
fn new_of<E>(open: Open<'_, E>) -> Option<&str> {
    match open {
        Open::New(text) => Some(text),
        Open::Known(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_stored_as_its_lowercase_text_and_read_back_in_either_case() {
        let id = EventId::parse("0F8FAD5B-D9CB-469F-A165-70867728950E").expect("a UUID");
        let stored = serde_json::to_string(&id).expect("serializable");
        assert_eq!(stored, "\"0f8fad5b-d9cb-469f-a165-70867728950e\"");
        assert_eq!(serde_json::from_str::<EventId>(&stored).ok(), Some(id));
        let upper = serde_json::from_str::<EventId>("\"0F8FAD5B-D9CB-469F-A165-70867728950E\"");
        assert_eq!(upper.ok(), Some(id));
        assert!(serde_json::from_str::<EventId>("\"not-an-id\"").is_err());
        let kind = serde_json::from_str::<EventType>("\"narrative.generated.v1\"");
        assert_eq!(kind.ok(), Some(EventType::NarrativeGeneratedV1));
        assert!(serde_json::from_str::<EventType>("\"narrative.generated.v9\"").is_err());
    }
}
