//! Reading the common envelope and dispatching `data` to the payload of its event type.

use crate::checker::{self as read, Checker, Object};
use crate::enums::{EventType, EventTypeError};
use crate::event::{Envelope, Event, EventData, EventId, Metadata};
use crate::json::Json;
use crate::payloads::{
    ClassificationPerformed, ConversationCompleted, MetricsIngested, NarrativeGenerated,
    TenantProvisioned,
};
use crate::pointer::Segment;
use crate::violation::{Format, ViolationKind};

/// Reads a whole event. `data` is only inspected when `eventType` names a supported event,
/// since its rules depend on the type.
pub(crate) fn read_event<'a>(c: &mut Checker, root: &'a Json<'a>) -> Option<Event<'a>> {
    let object = c.here(root, read::object)?;
    let event_id = c.required(object, "eventId", read::uuid).map(EventId);
    let event_type = c.required(object, "eventType", event_type);
    // The contract's schema asks a string only; the tables say "currently 1.0": another
    // version is read with a warning.
    let event_version = c.required(object, "eventVersion", read::string);
    if let Some(version) = event_version
        && let Err(kind) = event_version_format(version)
    {
        c.warn(Some(Segment::Key("eventVersion")), kind);
    }
    let source = c.required(object, "source", read::non_empty);
    let timestamp = c.required(object, "timestamp", read::timestamp);
    let tenant_id = c.required(object, "tenantId", read::non_empty);
    // Optional identifiers given empty (or too long) are read as not given, with a warning.
    let user_id = c.optional_identifier(object, "userId");
    let session_id = c.optional_identifier(object, "sessionId");
    // The contract's JSON Schema and its test-event generator leave `metadata` out.
    let metadata = c
        .wanted_object(object, "metadata", read_metadata)
        .map(Option::unwrap_or_default);
    let data = match event_type {
        Some(event_type) => c.required_object(object, "data", |c, d| read_data(c, event_type, d)),
        None => {
            c.required(object, "data", read::object);
            None
        }
    };
    Some(Event {
        envelope: Envelope {
            event_id: event_id?,
            event_type: event_type?,
            event_version: event_version?,
            source: source?,
            timestamp: timestamp?,
            tenant_id: tenant_id?,
            user_id,
            session_id,
            metadata: metadata?,
        },
        data: data?,
        warnings: Vec::new(),
    })
}

fn read_metadata<'a>(c: &mut Checker, object: &'a Object<'a>) -> Option<Metadata<'a>> {
    let correlation_id = c.wanted_identifier(object, "correlationId");
    let causation_id = c.optional(object, "causationId", read::uuid).map(EventId);
    let trace_id = c.optional(object, "traceId", read::string);
    Some(Metadata {
        correlation_id,
        causation_id,
        trace_id,
    })
}

fn read_data<'a>(
    c: &mut Checker,
    event_type: EventType,
    data: &'a Object<'a>,
) -> Option<EventData<'a>> {
    Some(match event_type {
        EventType::ClassificationPerformedV1 => {
            EventData::ClassificationPerformed(ClassificationPerformed::read(c, data)?)
        }
        // v2 maps onto the same facts: the metrics count both versions together.
        EventType::ClassificationPerformedV2 => {
            EventData::ClassificationPerformed(ClassificationPerformed::read_v2(c, data)?)
        }
        EventType::NarrativeGeneratedV1 => {
            EventData::NarrativeGenerated(NarrativeGenerated::read(c, data)?)
        }
        EventType::ConversationCompletedV1 => {
            EventData::ConversationCompleted(ConversationCompleted::read(c, data)?)
        }
        EventType::MetricsIngestedV1 => EventData::MetricsIngested(MetricsIngested::read(c, data)?),
        EventType::TenantProvisionedV1 => {
            EventData::TenantProvisioned(TenantProvisioned::read(c, data)?)
        }
    })
}

fn event_type(value: &Json<'_>) -> Result<EventType, ViolationKind> {
    EventType::parse(read::string(value)?).map_err(|error| match error {
        EventTypeError::Malformed => ViolationKind::BadFormat(Format::EventType),
        EventTypeError::Unknown => ViolationKind::UnknownEventType,
        EventTypeError::UnsupportedVersion { supported } => {
            ViolationKind::UnsupportedVersion { supported }
        }
    })
}

/// `eventVersion` is the envelope's version: `1.x` is the only major version there is.
fn event_version_format(text: &str) -> Result<(), ViolationKind> {
    let minor = text
        .strip_prefix("1.")
        .ok_or(ViolationKind::BadFormat(Format::EventVersion))?;
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ViolationKind::BadFormat(Format::EventVersion));
    }
    Ok(())
}
