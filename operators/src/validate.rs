//! The validate operator: raw messages in, typed events or rejections (with a dead-letter
//! reason and every violation) out. The first operator of the graph.

use salestalk_contracts::{
    EventType, Reason, Violation, ViolationKind, check, parse, reason_for, validate,
};

use crate::message::RawMessage;

/// A message that passed the contracts, reduced to what downstream operators need now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Its event type.
    pub event_type: EventType,
    /// Its tenant.
    pub tenant_id: String,
    /// Its event id, as a 128-bit value.
    pub event_id: u128,
}

/// A message refused by the contracts, with the evidence the dead-letter path keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Dead-letter reason.
    pub reason: Reason,
    /// Every violation found.
    pub violations: Vec<Violation>,
}

/// Validates a batch, appending to `accepted` and `rejected` in input order.
pub fn validate_batch(
    batch: &[RawMessage<'_>],
    max_message_bytes: usize,
    accepted: &mut Vec<Validated>,
    rejected: &mut Vec<Rejected>,
) {
    for message in batch {
        match validate_one(message, max_message_bytes) {
            Ok(validated) => accepted.push(validated),
            Err(violations) => rejected.push(Rejected {
                topic: message.topic.to_string(),
                partition: message.partition,
                offset: message.offset,
                reason: reason_for(&violations),
                violations,
            }),
        }
    }
}

fn validate_one(message: &RawMessage<'_>, max_bytes: usize) -> Result<Validated, Vec<Violation>> {
    let Some(payload) = message.payload else {
        let kind = ViolationKind::NotJson("message has no value".to_string());
        return Err(vec![Violation {
            path: String::new(),
            kind,
        }]);
    };
    if payload.len() > max_bytes {
        return Err(check(payload, max_bytes));
    }
    let value = parse(payload).map_err(|v| vec![v])?;
    let event = validate(&value)?;
    Ok(Validated {
        event_type: event.envelope.event_type,
        tenant_id: event.envelope.tenant_id.to_string(),
        event_id: event.envelope.event_id.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"{"eventId":"990e8400-e29b-41d4-a716-446655440004","eventType":"tenant.provisioned.v1","eventVersion":"1.0","source":"tenant-onboard","timestamp":"2025-11-09T10:00:00.000Z","tenantId":"tenant-abc123","metadata":{"correlationId":"c"},"data":{"tenantId":"tenant-abc123","organizationName":"Acme","ownerEmail":"a@acme.com","plan":"standard","region":"us-east-1","resources":{"messagesTableName":"m","metricsTableName":"t","s3Prefix":"p/"},"provisioningTimeMs":1,"sampleDataSeeded":true}}"#;

    fn message(offset: i64, payload: Option<&[u8]>) -> RawMessage<'_> {
        RawMessage {
            topic: "salestalk.tenant",
            partition: 2,
            offset,
            timestamp_ms: None,
            payload,
        }
    }

    #[test]
    fn splits_a_batch_keeping_provenance_of_rejects() {
        let batch = [
            message(10, Some(VALID.as_bytes())),
            message(11, Some(b"{not json")),
            message(12, None),
            message(13, Some(br#"{"eventType":"x.y.v1"}"#)),
        ];
        let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
        validate_batch(&batch, 1 << 20, &mut accepted, &mut rejected);
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].tenant_id, "tenant-abc123");
        let reasons: Vec<(i64, Reason)> = rejected.iter().map(|r| (r.offset, r.reason)).collect();
        assert_eq!(
            reasons,
            [
                (11, Reason::NotJson),
                (12, Reason::NotJson),
                (13, Reason::UnknownEventType)
            ]
        );
        assert!(
            rejected
                .iter()
                .all(|r| r.partition == 2 && r.topic == "salestalk.tenant")
        );
    }

    #[test]
    fn oversized_messages_are_not_parsed() {
        let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
        validate_batch(
            &[message(1, Some(VALID.as_bytes()))],
            64,
            &mut accepted,
            &mut rejected,
        );
        assert!(accepted.is_empty());
        assert_eq!(rejected[0].reason, Reason::Oversized);
    }
}
