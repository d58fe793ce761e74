//! One test per contract rule: take a spec example, break exactly one thing, and check that
//! the validator reports exactly that field (and the right dead-letter reason).

mod support;

use salestalk_contracts::enums::Open;
use salestalk_contracts::{Event, EventData, Json, Reason, ViolationKind, reason_for, validate};
use serde_json::{Value, json};
use support::{example, examples, remove, set};

const CLASSIFICATION: &str = "classification.performed.v1";
const NARRATIVE: &str = "narrative.generated.v1";
const CONVERSATION: &str = "conversation.completed.v1";
const METRICS: &str = "metrics.ingested.v1";
const TENANT: &str = "tenant.provisioned.v1";

/// Asserts that `value` is invalid with violations at exactly `pointers`.
#[track_caller]
fn assert_invalid_at(value: &Value, pointers: &[&str]) -> Vec<salestalk_contracts::Violation> {
    let violations = validate(&Json::from(value)).expect_err("event should be invalid");
    let mut found: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
    found.sort();
    found.dedup();
    let mut expected = pointers.to_vec();
    expected.sort();
    assert_eq!(found, expected, "violations: {violations:?}");
    violations
}

/// Asserts that `value` is valid and carries exactly one contract warning, at `pointer`, of a
/// kind `matches` accepts.
#[track_caller]
fn assert_warned(value: &Value, pointer: &str, matches: impl Fn(&ViolationKind) -> bool) {
    let json = Json::from(value);
    let event = validate(&json).unwrap_or_else(|v| panic!("accepted with a warning: {v:?}"));
    assert_eq!(event.warnings.len(), 1, "{:?}", event.warnings);
    assert_eq!(event.warnings[0].path, pointer);
    assert!(matches(&event.warnings[0].kind), "{:?}", event.warnings);
}

#[track_caller]
fn assert_kind(value: &Value, pointer: &str, matches: impl Fn(&ViolationKind) -> bool) {
    let violations = assert_invalid_at(value, &[pointer]);
    assert!(
        violations.iter().all(|v| matches(&v.kind)),
        "unexpected kind: {violations:?}"
    );
}

#[test]
fn spec_examples_are_valid() {
    for event in examples() {
        let json = Json::from(&event);
        let parsed = validate(&json).unwrap_or_else(|v| panic!("{}: {v:?}", event["eventType"]));
        assert_eq!(parsed.envelope.event_type.as_str(), event["eventType"]);
    }
}

#[test]
fn spec_examples_decode_to_the_right_typed_values() {
    let narrative = example(NARRATIVE);
    let json = Json::from(&narrative);
    let event = validate(&json).expect("valid");
    let EventData::NarrativeGenerated(data) = &event.data else {
        panic!("wrong payload")
    };
    assert_eq!(data.token_usage.total, Some(543));
    assert_eq!(data.cost.amount_usd, 0.0217);
    assert_eq!(data.ai_model.model_id, "anthropic.claude-v2");
    assert_eq!(data.data_references.len(), 3);
    assert_eq!(event.envelope.tenant_id, "tenant-abc123");
    assert_eq!(
        event
            .envelope
            .metadata
            .causation_id
            .map(|id| id.to_string())
            .as_deref(),
        Some("550e8400-e29b-41d4-a716-446655440000")
    );
    let conversation = example(CONVERSATION);
    let json = Json::from(&conversation);
    let event = validate(&json).expect("valid");
    let EventData::ConversationCompleted(data) = &event.data else {
        panic!("wrong payload")
    };
    assert_eq!(data.satisfaction_rating, Some(5.0));
    assert_eq!(data.duration_seconds, 660.0);
}

#[test]
fn unknown_extra_fields_are_tolerated_everywhere() {
    for event in examples() {
        let mut pointers = vec![String::new(), "/metadata".to_string(), "/data".to_string()];
        pointers.extend(support::all_pointers(&event).into_iter().filter(|p| {
            event.pointer(p).is_some_and(Value::is_object)
                && p != "/data/metricsIngested/0/dimensions"
        }));
        for at in pointers {
            let extended = set(
                event.clone(),
                &format!("{at}/futureField"),
                json!({"any": [1, "thing"]}),
            );
            assert!(
                validate(&Json::from(&extended)).is_ok(),
                "{} with extra field at {at:?}",
                event["eventType"]
            );
        }
    }
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    let optional = [
        (CLASSIFICATION, "/userId"),
        (CLASSIFICATION, "/sessionId"),
        (CLASSIFICATION, "/metadata/traceId"),
        (NARRATIVE, "/metadata/causationId"),
        (CLASSIFICATION, "/data/classification/timeRange"),
        (CONVERSATION, "/data/satisfactionRating"),
        (METRICS, "/data/fileName"),
        (METRICS, "/data/metricsIngested/0/dimensions"),
        (NARRATIVE, "/data/cost/currency"),
    ];
    for (event_type, pointer) in optional {
        let absent = remove(example(event_type), pointer);
        assert!(
            validate(&Json::from(&absent)).is_ok(),
            "{event_type} without {pointer}"
        );
        let null = set(example(event_type), pointer, Value::Null);
        assert!(
            validate(&Json::from(&null)).is_ok(),
            "{event_type} with null {pointer}"
        );
    }
}

#[test]
fn every_required_field_is_reported_at_its_own_pointer_when_missing() {
    let required: &[(&str, &[&str])] = &[
        (
            CLASSIFICATION,
            &[
                "/eventId",
                "/eventType",
                "/eventVersion",
                "/source",
                "/timestamp",
                "/tenantId",
                "/data",
                "/data/messageId",
                "/data/originalText",
                "/data/classification",
                "/data/classification/intent",
                "/data/classification/subject",
                "/data/classification/measure",
                "/data/classification/filters",
                "/data/classification/confidence",
                "/data/classification/timeRange/period",
                "/data/classification/timeRange/value",
                "/data/classification/timeRange/year",
                "/data/classifierModel",
                "/data/processingTimeMs",
            ],
        ),
        (
            NARRATIVE,
            &[
                "/data/messageId",
                "/data/conversationId",
                "/data/userMessageId",
                "/data/narrativeText",
                "/data/classification",
                "/data/classification/intent",
                "/data/classification/subject",
                "/data/classification/measure",
                "/data/dataReferences",
                "/data/dataReferences/1/metric",
                "/data/dataReferences/1/period",
                "/data/dataReferences/1/value",
                "/data/dataReferences/1/unit",
                "/data/aiModel",
                "/data/aiModel/provider",
                "/data/aiModel/modelId",
                "/data/aiModel/temperature",
                "/data/aiModel/maxTokens",
                "/data/cost",
                "/data/cost/amountUSD",
            ],
        ),
        (
            CONVERSATION,
            &[
                "/data/conversationId",
                "/data/startTime",
                "/data/endTime",
                "/data/durationSeconds",
                "/data/messageCount",
                "/data/userMessageCount",
                "/data/assistantMessageCount",
                "/data/subjects",
                "/data/intents",
                "/data/actionsTaken",
                "/data/actionsTaken/insightSaved",
                "/data/actionsTaken/insightShared",
                "/data/actionsTaken/dataExported",
                "/data/actionsTaken/followUpCreated",
                "/data/totalCostUSD",
                "/data/averageResponseTimeMs",
            ],
        ),
        (
            METRICS,
            &[
                "/data/batchId",
                "/data/source",
                "/data/recordCount",
                "/data/metricsIngested",
                "/data/metricsIngested/0/subject",
                "/data/metricsIngested/0/period",
                "/data/metricsIngested/0/value",
                "/data/metricsIngested/0/unit",
                "/data/validationResults",
                "/data/validationResults/valid",
                "/data/validationResults/invalid",
                "/data/validationResults/warnings",
                "/data/processingTimeMs",
            ],
        ),
        (
            TENANT,
            &[
                "/data/tenantId",
                "/data/organizationName",
                "/data/ownerEmail",
                "/data/plan",
                "/data/region",
                "/data/resources",
                "/data/resources/messagesTableName",
                "/data/resources/metricsTableName",
                "/data/resources/s3Prefix",
                "/data/provisioningTimeMs",
                "/data/sampleDataSeeded",
            ],
        ),
    ];
    for (event_type, pointers) in required {
        for pointer in *pointers {
            let broken = remove(example(event_type), pointer);
            let violations = assert_invalid_at(&broken, &[pointer]);
            assert!(
                matches!(violations[0].kind, ViolationKind::Missing),
                "{event_type} {pointer}"
            );
            assert_eq!(reason_for(&violations), Reason::SchemaViolation);
        }
    }
}

#[test]
fn null_is_not_a_value_for_required_fields() {
    assert_kind(
        &set(example(CLASSIFICATION), "/tenantId", Value::Null),
        "/tenantId",
        |k| matches!(k, ViolationKind::WrongType { .. }),
    );
}

#[test]
fn wrong_types_are_reported_at_the_field() {
    let cases = [
        (CLASSIFICATION, "/eventId", json!(42)),
        (CLASSIFICATION, "/source", json!(["chat-handler"])),
        (CLASSIFICATION, "/timestamp", json!(1731155696)),
        (CLASSIFICATION, "/userId", json!(7)),
        (CLASSIFICATION, "/metadata", json!("corr")),
        (CLASSIFICATION, "/metadata/traceId", json!({})),
        (CLASSIFICATION, "/data", json!([])),
        (
            CLASSIFICATION,
            "/data/classification/confidence",
            json!("0.92"),
        ),
        (CLASSIFICATION, "/data/classification/filters", json!({})),
        (CLASSIFICATION, "/data/processingTimeMs", json!(true)),
        (NARRATIVE, "/data/tokenUsage/promptTokens", json!("387")),
        (NARRATIVE, "/data/tokenUsage/totalTokens", json!(543.5)),
        (NARRATIVE, "/data/cost/amountUSD", json!("0.0217")),
        (
            NARRATIVE,
            "/data/qualityMetrics/hallucinationDetected",
            json!("false"),
        ),
        (
            NARRATIVE,
            "/data/dataReferences",
            json!({"metric": "revenue"}),
        ),
        (NARRATIVE, "/data/dataReferences/0", json!("revenue")),
        (CONVERSATION, "/data/actionsTaken/dataExported", json!(0)),
        (CONVERSATION, "/data/messageCount", json!(8.5)),
        (CONVERSATION, "/data/satisfactionRating", json!("5")),
        (
            METRICS,
            "/data/metricsIngested/0/dimensions/region",
            json!(1),
        ),
        (METRICS, "/data/fileName", json!(false)),
        (TENANT, "/data/sampleDataSeeded", json!("true")),
        (TENANT, "/data/resources", json!("tenant-abc123/")),
    ];
    for (event_type, pointer, value) in cases {
        assert_kind(&set(example(event_type), pointer, value), pointer, |k| {
            matches!(k, ViolationKind::WrongType { .. })
        });
    }
}

#[test]
fn integers_may_be_written_with_a_zero_fraction() {
    let event = set(
        example(NARRATIVE),
        "/data/tokenUsage/promptTokens",
        json!(387.0),
    );
    assert!(validate(&Json::from(&event)).is_ok());
}

#[test]
fn numbers_outside_their_ranges_are_rejected() {
    let cases = [
        (
            CLASSIFICATION,
            "/data/classification/confidence",
            json!(1.0001),
        ),
        (
            CLASSIFICATION,
            "/data/classification/confidence",
            json!(-0.1),
        ),
        (CLASSIFICATION, "/data/processingTimeMs", json!(-1)),
        (
            CLASSIFICATION,
            "/data/classification/timeRange/year",
            json!(0),
        ),
        (
            CLASSIFICATION,
            "/data/classification/timeRange/year",
            json!(10000),
        ),
        (NARRATIVE, "/data/aiModel/temperature", json!(1.5)),
        (NARRATIVE, "/data/aiModel/maxTokens", json!(0)),
        (NARRATIVE, "/data/cost/amountUSD", json!(-0.01)),
        (NARRATIVE, "/data/tokenUsage/completionTokens", json!(-3)),
        (
            NARRATIVE,
            "/data/tokenUsage/totalTokens",
            json!(9007199254740992u64),
        ),
        (NARRATIVE, "/data/tokenUsage/totalTokens", json!(1e300)),
        (NARRATIVE, "/data/performance/aiGenerationMs", json!(-1542)),
        (NARRATIVE, "/data/qualityMetrics/confidenceScore", json!(94)),
        (NARRATIVE, "/data/qualityMetrics/factsTotal", json!(-1)),
        (CONVERSATION, "/data/satisfactionRating", json!(0)),
        (CONVERSATION, "/data/satisfactionRating", json!(6)),
        (CONVERSATION, "/data/durationSeconds", json!(-660)),
        (CONVERSATION, "/data/totalCostUSD", json!(-0.087)),
        (CONVERSATION, "/data/averageResponseTimeMs", json!(-1)),
        (METRICS, "/data/recordCount", json!(-247)),
        (METRICS, "/data/validationResults/warnings", json!(-3)),
        (METRICS, "/data/processingTimeMs", json!(-1)),
        (TENANT, "/data/provisioningTimeMs", json!(-3456)),
    ];
    for (event_type, pointer, value) in cases {
        assert_kind(
            &set(example(event_type), pointer, value.clone()),
            pointer,
            |k| matches!(k, ViolationKind::OutOfRange { .. }),
        );
    }
    let boundaries = [
        (CLASSIFICATION, "/data/classification/confidence", json!(0)),
        (CLASSIFICATION, "/data/classification/confidence", json!(1)),
        (NARRATIVE, "/data/aiModel/temperature", json!(0.0)),
        (
            NARRATIVE,
            "/data/tokenUsage/totalTokens",
            json!(9007199254740991u64),
        ),
        (CONVERSATION, "/data/satisfactionRating", json!(1)),
        (CONVERSATION, "/data/durationSeconds", json!(0)),
        (NARRATIVE, "/data/dataReferences/0/value", json!(-2500000)),
    ];
    for (event_type, pointer, value) in boundaries {
        let event = set(example(event_type), pointer, value.clone());
        assert!(
            validate(&Json::from(&event)).is_ok(),
            "{event_type} {pointer} = {value}"
        );
    }
}

#[test]
fn empty_identifiers_are_rejected() {
    for (event_type, pointer) in [
        (CLASSIFICATION, "/tenantId"),
        (CLASSIFICATION, "/source"),
        (CLASSIFICATION, "/data/messageId"),
        (CLASSIFICATION, "/data/classifierModel"),
        (NARRATIVE, "/data/aiModel/modelId"),
        (CONVERSATION, "/data/conversationId"),
        (METRICS, "/data/batchId"),
        (TENANT, "/data/organizationName"),
    ] {
        assert_kind(
            &set(example(event_type), pointer, json!("")),
            pointer,
            |k| matches!(k, ViolationKind::Empty),
        );
    }
    // An optional identifier given empty is read as not given, with a warning; so is the
    // correlation id, which the contract's JSON Schema does not ask for.
    for pointer in ["/userId", "/sessionId", "/metadata/correlationId"] {
        assert_warned(
            &set(example(CLASSIFICATION), pointer, json!("")),
            pointer,
            |k| matches!(k, ViolationKind::Empty),
        );
    }
    // Free text may be empty.
    assert!(
        validate(&Json::from(&set(
            example(CLASSIFICATION),
            "/data/originalText",
            json!("")
        )))
        .is_ok()
    );
}

#[test]
fn what_the_tables_ask_but_the_schema_leaves_out_is_accepted_with_a_warning() {
    let wanted: &[(&str, &[&str])] = &[
        (CLASSIFICATION, &["/metadata", "/metadata/correlationId"]),
        (NARRATIVE, &WANTED_NARRATIVE_PARTS),
    ];
    for (event_type, pointers) in wanted {
        for pointer in *pointers {
            assert_warned(&remove(example(event_type), pointer), pointer, |k| {
                matches!(k, ViolationKind::Missing)
            });
            // `null` means not given, as for every optional member.
            assert_warned(
                &set(example(event_type), pointer, Value::Null),
                pointer,
                |k| matches!(k, ViolationKind::Missing),
            );
        }
    }
    // Given, they must still be right: a wanted member is not an anything-goes member.
    assert_kind(
        &set(
            example(NARRATIVE),
            "/data/performance/totalTimeMs",
            json!(-1),
        ),
        "/data/performance/totalTimeMs",
        |k| matches!(k, ViolationKind::OutOfRange { .. }),
    );
}

/// The narrative's timings, token counts and quality results: the tables require them, but a
/// narrative without one is still billable (issue 30).
const WANTED_NARRATIVE_PARTS: [&str; 15] = [
    "/data/performance",
    "/data/performance/totalTimeMs",
    "/data/performance/classificationMs",
    "/data/performance/dataRetrievalMs",
    "/data/performance/aiGenerationMs",
    "/data/performance/validationMs",
    "/data/tokenUsage",
    "/data/tokenUsage/promptTokens",
    "/data/tokenUsage/completionTokens",
    "/data/tokenUsage/totalTokens",
    "/data/qualityMetrics",
    "/data/qualityMetrics/hallucinationDetected",
    "/data/qualityMetrics/factsVerified",
    "/data/qualityMetrics/factsTotal",
    "/data/qualityMetrics/confidenceScore",
];

#[test]
fn the_contracts_own_generator_output_is_accepted() {
    // `create_classification_event` in the contract's testing strategy: no `metadata`, no
    // `userId`/`sessionId`, a naive `isoformat()` timestamp with a `Z`.
    let mut event = example(CLASSIFICATION);
    let object = event.as_object_mut().expect("an object");
    for key in ["metadata", "userId", "sessionId"] {
        object.remove(key);
    }
    object.insert("source".into(), json!("test-harness"));
    object.insert("timestamp".into(), json!("2025-11-09T12:34:56.789012Z"));
    let json = Json::from(&event);
    let read = validate(&json).expect("the contract's generator output is valid");
    assert_eq!(read.envelope.metadata.correlation_id, None);
    let warned: Vec<&str> = read.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(warned, ["/metadata"]);
}

#[test]
fn a_satisfaction_rating_is_a_number_from_1_to_5() {
    for rating in [1.0, 4.5, 5.0] {
        let event = set(
            example(CONVERSATION),
            "/data/satisfactionRating",
            json!(rating),
        );
        let json = Json::from(&event);
        let read = validate(&json).expect("a rating in range");
        let salestalk_contracts::EventData::ConversationCompleted(data) = read.data else {
            panic!("a conversation");
        };
        assert_eq!(data.satisfaction_rating, Some(rating));
        assert!(read.warnings.is_empty());
    }
    for rating in [0.5, 5.5] {
        assert_kind(
            &set(
                example(CONVERSATION),
                "/data/satisfactionRating",
                json!(rating),
            ),
            "/data/satisfactionRating",
            |k| matches!(k, ViolationKind::OutOfRange { .. }),
        );
    }
}

#[test]
fn new_enum_values_are_accepted_under_their_own_value() {
    // The contract: adding enum values is backward compatible within a version.
    for (event_type, pointer, value) in [
        (CLASSIFICATION, "/data/classification/intent", "small_talk"),
        (CLASSIFICATION, "/data/classification/measure", "median"),
        (NARRATIVE, "/data/classification/subject", "quota"),
        (NARRATIVE, "/data/aiModel/provider", "openai"),
        (CONVERSATION, "/data/subjects/1", "weather"),
        (METRICS, "/data/source", "sftp_drop"),
    ] {
        let event = set(example(event_type), pointer, json!(value));
        let json = Json::from(&event);
        assert!(validate(&json).is_ok(), "{pointer} = {value}");
    }
    let event = set(
        example(CLASSIFICATION),
        "/data/classification/intent",
        json!("small_talk"),
    );
    let json = Json::from(&event);
    let Ok(Event {
        data: EventData::ClassificationPerformed(c),
        ..
    }) = validate(&json)
    else {
        panic!("valid classification");
    };
    assert_eq!(c.classification.intent, Open::New("small_talk"));
    assert_eq!(c.classification.intent.as_wire(), "small_talk");
}

#[test]
fn enum_values_that_are_neither_known_nor_well_formed_are_rejected() {
    for (event_type, pointer, value) in [
        (CLASSIFICATION, "/data/classification/subject", "Revenue"),
        (
            CLASSIFICATION,
            "/data/classification/measure",
            "year-over-year",
        ),
        (NARRATIVE, "/data/classification/intent", "2guess"),
        (CONVERSATION, "/data/intents/0", "FACT_RETRIEVAL"),
        (METRICS, "/data/source", "s ftp"),
    ] {
        assert_kind(
            &set(example(event_type), pointer, json!(value)),
            pointer,
            |k| matches!(k, ViolationKind::NotEnumValue { .. }),
        );
    }
    let long = "a".repeat(65);
    assert_kind(
        &set(example(METRICS), "/data/source", json!(long)),
        "/data/source",
        |k| matches!(k, ViolationKind::NotEnumValue { .. }),
    );
    // Currency stays closed: an amount in euros would be summed as dollars.
    assert_kind(
        &set(example(NARRATIVE), "/data/cost/currency", json!("EUR")),
        "/data/cost/currency",
        |k| matches!(k, ViolationKind::NotInEnum { .. }),
    );
}

#[test]
fn a_repeated_subject_or_intent_counts_once_with_a_warning() {
    let event = set(
        example(CONVERSATION),
        "/data/subjects",
        json!(["revenue", "margin", "revenue"]),
    );
    assert_warned(&event, "/data/subjects", |k| {
        matches!(k, ViolationKind::DuplicateItems)
    });
    let json = Json::from(&event);
    let Ok(Event {
        data: EventData::ConversationCompleted(c),
        ..
    }) = validate(&json)
    else {
        panic!("valid conversation");
    };
    let subjects: Vec<&str> = c.subjects.iter().map(|s| s.as_wire()).collect();
    assert_eq!(subjects, ["revenue", "margin"]);
    // Items that are no values stay violations, repeated or not.
    let event = set(
        example(CONVERSATION),
        "/data/intents",
        json!(["Bogus", "Bogus"]),
    );
    assert_invalid_at(&event, &["/data/intents/0", "/data/intents/1"]);
}

#[test]
fn an_envelope_version_other_than_1_x_is_read_with_a_warning() {
    for version in ["2.0", "1", ""] {
        assert_warned(
            &set(example(CLASSIFICATION), "/eventVersion", json!(version)),
            "/eventVersion",
            |k| matches!(k, ViolationKind::BadFormat(_)),
        );
    }
    assert_kind(
        &set(example(CLASSIFICATION), "/eventVersion", json!(1.0)),
        "/eventVersion",
        |k| matches!(k, ViolationKind::WrongType { .. }),
    );
}

#[test]
fn malformed_formats_are_rejected() {
    let cases = [
        (
            CLASSIFICATION,
            "/eventId",
            "550e8400-e29b-41d4-a716-44665544000",
        ),
        (
            CLASSIFICATION,
            "/eventId",
            "550e8400e29b41d4a716446655440000",
        ),
        (CLASSIFICATION, "/eventId", "not-a-uuid"),
        (NARRATIVE, "/metadata/causationId", "parent-event-uuid"),
        (CLASSIFICATION, "/timestamp", "2025-11-09 12:34:56"),
        (CLASSIFICATION, "/timestamp", "2025-02-30T12:00:00Z"),
        (CLASSIFICATION, "/timestamp", "09/11/2025"),
        (CONVERSATION, "/data/startTime", "2025-11-09T12:34:00"),
        (CONVERSATION, "/data/endTime", "noon"),
        (CLASSIFICATION, "/eventType", "classification.performed"),
        (CLASSIFICATION, "/eventType", "Classification.Performed.V1"),
        (TENANT, "/data/ownerEmail", "admin.acme.com"),
    ];
    for (event_type, pointer, value) in cases {
        assert_kind(
            &set(example(event_type), pointer, json!(value)),
            pointer,
            |k| matches!(k, ViolationKind::BadFormat(_)),
        );
    }
}

#[test]
fn unknown_event_types_and_versions_have_their_own_reasons() {
    let unknown = set(
        example(CLASSIFICATION),
        "/eventType",
        json!("invoice.paid.v1"),
    );
    let violations = assert_invalid_at(&unknown, &["/eventType"]);
    assert_eq!(reason_for(&violations), Reason::UnknownEventType);

    let newer = set(
        example(CLASSIFICATION),
        "/eventType",
        json!("classification.performed.v3"),
    );
    let violations = assert_invalid_at(&newer, &["/eventType"]);
    assert_eq!(reason_for(&violations), Reason::UnsupportedVersion);
}

#[test]
fn v2_of_an_event_reads_into_the_same_facts_as_v1() {
    let v2 = example("classification.performed.v2");
    let json = Json::from(&v2);
    let Ok(Event {
        data: EventData::ClassificationPerformed(c),
        ..
    }) = validate(&json)
    else {
        panic!("a valid v2 classification");
    };
    assert_eq!(c.classification.confidence, 0.92);
    assert_eq!(c.classification.language, Some("en-US"));
    // v1's field name under v2 is a violation, and v2's required language is required.
    let v1_shaped = set(
        example(CLASSIFICATION),
        "/eventType",
        json!("classification.performed.v2"),
    );
    assert_invalid_at(
        &v1_shaped,
        &[
            "/data/classification/confidenceScore",
            "/data/classification/language",
        ],
    );
    let v2_shaped = set(v2, "/eventType", json!(CLASSIFICATION));
    assert_invalid_at(&v2_shaped, &["/data/classification/confidence"]);
}

#[test]
fn payload_rules_follow_the_event_type() {
    // A narrative payload under a classification eventType is a classification with the
    // wrong fields, not a valid narrative.
    let narrative = example(NARRATIVE);
    let mislabeled = set(narrative.clone(), "/eventType", json!(CLASSIFICATION));
    let violations = validate(&Json::from(&mislabeled)).expect_err("invalid");
    assert!(violations.iter().any(|v| v.path == "/data/originalText"));
    // With an unusable eventType the payload is not judged at all, only its shape.
    let untyped = remove(narrative, "/eventType");
    assert_invalid_at(&untyped, &["/eventType"]);
}

#[test]
fn every_problem_in_an_event_is_reported_at_once() {
    let mut event = remove(example(NARRATIVE), "/tenantId");
    event = set(event, "/eventId", json!("nope"));
    event = set(event, "/data/aiModel/temperature", json!(3));
    event = remove(event, "/data/cost/amountUSD");
    assert_invalid_at(
        &event,
        &[
            "/eventId",
            "/tenantId",
            "/data/aiModel/temperature",
            "/data/cost/amountUSD",
        ],
    );
}

#[test]
fn non_objects_are_reported_at_the_document() {
    for value in [
        json!([]),
        json!("event"),
        json!(42),
        json!(null),
        json!(true),
    ] {
        assert_kind(&value, "", |k| matches!(k, ViolationKind::WrongType { .. }));
    }
}

#[test]
fn non_json_and_oversized_messages_are_reported_at_the_document() {
    for bytes in [
        &b""[..],
        b"{",
        b"\xff\xfe",
        b"{\"eventId\": }",
        b"[1,2",
        b"{\"a\":1e400}",
    ] {
        let violations = salestalk_contracts::check(bytes, 1 << 20);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].path, "");
        assert_eq!(reason_for(&violations), Reason::NotJson, "{bytes:?}");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let violations = salestalk_contracts::check(deep.as_bytes(), 1 << 20);
    assert_eq!(reason_for(&violations), Reason::NotJson);

    let big = vec![b' '; 2048];
    let violations = salestalk_contracts::check(&big, 1024);
    assert_eq!(reason_for(&violations), Reason::Oversized);
}

#[test]
fn timestamps_with_offsets_are_normalised_to_utc() {
    let event = set(
        example(CLASSIFICATION),
        "/timestamp",
        json!("2025-11-09T14:34:56.789+02:00"),
    );
    let json = Json::from(&event);
    let parsed = validate(&json).expect("valid");
    assert_eq!(
        parsed.envelope.timestamp.to_rfc3339(),
        "2025-11-09T12:34:56.789+00:00"
    );
}

#[test]
fn event_ids_compare_by_value_not_by_letter_case() {
    let lower = example(CLASSIFICATION);
    let upper = set(
        lower.clone(),
        "/eventId",
        json!("550E8400-E29B-41D4-A716-446655440000"),
    );
    let a = validate(&Json::from(&lower))
        .expect("valid")
        .envelope
        .event_id;
    let b = validate(&Json::from(&upper))
        .expect("valid")
        .envelope
        .event_id;
    assert_eq!(a, b);
}

#[test]
fn every_value_that_becomes_a_dimension_is_bounded_with_a_pointer() {
    use salestalk_contracts::limits::{
        MAX_DATA_REFERENCES, MAX_IDENTIFIER_LEN, MAX_METRICS_PER_BATCH, MAX_SET_ITEMS,
    };
    let long = "é".repeat(MAX_IDENTIFIER_LEN + 1);
    let longest = "é".repeat(MAX_IDENTIFIER_LEN);
    for (event_type, pointer) in [
        (CLASSIFICATION, "/source"),
        (CLASSIFICATION, "/tenantId"),
        (CLASSIFICATION, "/data/classifierModel"),
        (NARRATIVE, "/data/aiModel/modelId"),
        (TENANT, "/data/plan"),
        (TENANT, "/data/region"),
    ] {
        let at_limit = set(example(event_type), pointer, json!(longest));
        let json = Json::from(&at_limit);
        // The tenant.provisioned example's tenant must still match: only other fields here.
        assert!(
            validate(&json).is_ok(),
            "{event_type}{pointer} at the limit"
        );
        assert_kind(
            &set(example(event_type), pointer, json!(long)),
            pointer,
            |k| {
                *k == ViolationKind::TooLong {
                    max: MAX_IDENTIFIER_LEN,
                }
            },
        );
    }
    // 20,000 new subjects: one violation at the array, no item read.
    let many: Vec<String> = (0..20_000).map(|i| format!("new_subject_{i}")).collect();
    let violations = assert_invalid_at(
        &set(example(CONVERSATION), "/data/subjects", json!(many)),
        &["/data/subjects"],
    );
    assert_eq!(violations.len(), 1);
    assert_eq!(
        violations[0].kind,
        ViolationKind::TooMany { max: MAX_SET_ITEMS }
    );
    let at_limit: Vec<String> = many[..MAX_SET_ITEMS].to_vec();
    let value = set(example(CONVERSATION), "/data/intents", json!(at_limit));
    assert!(validate(&Json::from(&value)).is_ok());

    let metric = example(METRICS)["data"]["metricsIngested"][0].clone();
    let metrics = vec![metric; MAX_METRICS_PER_BATCH + 1];
    assert_kind(
        &set(example(METRICS), "/data/metricsIngested", json!(metrics)),
        "/data/metricsIngested",
        |k| {
            *k == ViolationKind::TooMany {
                max: MAX_METRICS_PER_BATCH,
            }
        },
    );
    let reference = example(NARRATIVE)["data"]["dataReferences"][0].clone();
    let references = vec![reference; MAX_DATA_REFERENCES + 1];
    assert_kind(
        &set(
            example(NARRATIVE),
            "/data/dataReferences",
            json!(references),
        ),
        "/data/dataReferences",
        |k| {
            *k == ViolationKind::TooMany {
                max: MAX_DATA_REFERENCES,
            }
        },
    );
}

#[test]
fn a_payload_naming_another_tenant_is_found() {
    let own = example(TENANT);
    let json = Json::from(&own);
    let event = validate(&json).expect("valid");
    assert_eq!(salestalk_contracts::other_tenant(&event), None);
    let other = set(example(TENANT), "/data/tenantId", json!("tenant-0002"));
    let json = Json::from(&other);
    // Valid by the contract's types (JSON Schema cannot compare two fields) ...
    let event = validate(&json).expect("valid by the schema");
    // ... and refused by the tenancy rule, at the field.
    let violation = salestalk_contracts::other_tenant(&event).expect("another tenant");
    assert_eq!(violation.path, "/data/tenantId");
    assert_eq!(violation.kind, ViolationKind::OtherTenant);
    assert_eq!(reason_for(&[violation]), Reason::SchemaViolation);
}
