//! The dead-letter taxonomy: every reason a message can leave the normal path.

use salestalk_contracts::Reason;

/// Why a message went to the dead-letter path. The names are stable: they are stored,
/// filtered on and alerted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterReason {
    /// Not a JSON document (or no value at all).
    NotJson,
    /// Broke a contract rule.
    SchemaViolation,
    /// `eventType` names no known event.
    UnknownEventType,
    /// A known event at an unsupported version.
    UnsupportedVersion,
    /// Larger than the configured message limit.
    Oversized,
    /// Its window was already final (older than the allowed lateness). Written before late
    /// events were corrected automatically; such letters are still counted by the next
    /// correction of their day (docs/guarantees.md, "Late events").
    Late,
    /// Its window was final and it was stamped further back than the correction horizon
    /// (`corrections.horizon_ms`) before its broker time: no correction counts it.
    TooLate,
    /// A sink refused it permanently.
    SinkRejected,
    /// Transient failures persisted through every retry.
    RetriesExhausted,
    /// Refused by the ingest gateway before it reached a topic (the publisher was told why).
    RejectedAtIngest,
    /// A routing target's topic did not take it after every retry: stored with the target's
    /// topic, so a redrive delivers it there (docs/routing.md).
    DeliveryFailed,
}

impl DeadLetterReason {
    /// Every reason, in a stable order.
    pub const ALL: [DeadLetterReason; 11] = [
        Self::NotJson,
        Self::SchemaViolation,
        Self::UnknownEventType,
        Self::UnsupportedVersion,
        Self::Oversized,
        Self::Late,
        Self::TooLate,
        Self::SinkRejected,
        Self::RetriesExhausted,
        Self::RejectedAtIngest,
        Self::DeliveryFailed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::SchemaViolation => "schema_violation",
            Self::UnknownEventType => "unknown_event_type",
            Self::UnsupportedVersion => "unsupported_version",
            Self::Oversized => "oversized",
            Self::Late => "late",
            Self::TooLate => "too_late",
            Self::SinkRejected => "sink_rejected",
            Self::RetriesExhausted => "retries_exhausted",
            Self::RejectedAtIngest => "rejected_at_ingest",
            Self::DeliveryFailed => "delivery_failed",
        }
    }

    /// Whether a dead letter of this reason waits for a person (what the DLQ depth alert
    /// counts by default, docs/alerts.md): a broken event a service wrote straight to a topic
    /// (its team fixes the producer, then the entry is redriven or discarded), an event past
    /// the correction horizon (counted nowhere until someone decides), and a row our sink
    /// refused (fix, then redrive). Not: a late letter from before corrections (the next
    /// correction of its day counts it), a failed delivery (redriven by itself once the
    /// target answers; a target down alerts through its error rate) and an entry the gateway
    /// refused (the publisher was told at once, and retries or fixes it).
    pub fn needs_action(self) -> bool {
        !matches!(
            self,
            Self::Late | Self::DeliveryFailed | Self::RejectedAtIngest
        )
    }

    /// Whether the message failed as a publish: it never was a valid event on the bus. A late
    /// event was published fine (it came too late to count), and a sink's refusal is the
    /// pipeline's failure, not the publisher's; a failed delivery is the target's.
    pub fn is_publish_failure(self) -> bool {
        !matches!(
            self,
            Self::Late
                | Self::TooLate
                | Self::SinkRejected
                | Self::RetriesExhausted
                | Self::DeliveryFailed
        )
    }
}

/// What the DLQ depth alert calls a failure a downstream consumer reported on the dead-letter
/// topic (`consumer_failures`), beside the dead-letter reasons.
pub const CONSUMER_FAILED: &str = "consumer_failed";

/// The reasons the DLQ depth alert counts unless a rule names its own: those that need a
/// person ([`DeadLetterReason::needs_action`]) and consumers' reported failures.
pub fn actionable_reasons() -> Vec<&'static str> {
    DeadLetterReason::ALL
        .into_iter()
        .filter(|reason| reason.needs_action())
        .map(DeadLetterReason::as_str)
        .chain([CONSUMER_FAILED])
        .collect()
}

impl From<Reason> for DeadLetterReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::NotJson => Self::NotJson,
            Reason::Oversized => Self::Oversized,
            Reason::UnknownEventType => Self::UnknownEventType,
            Reason::UnsupportedVersion => Self::UnsupportedVersion,
            Reason::SchemaViolation => Self::SchemaViolation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alert_counts_what_needs_a_person() {
        let reasons = actionable_reasons();
        for wanted in [
            "schema_violation",
            "not_json",
            "too_late",
            "sink_rejected",
            "retries_exhausted",
            CONSUMER_FAILED,
        ] {
            assert!(reasons.contains(&wanted), "{wanted}");
        }
        for left_out in ["late", "delivery_failed", "rejected_at_ingest"] {
            assert!(!reasons.contains(&left_out), "{left_out}");
        }
    }

    #[test]
    fn contract_reasons_keep_their_names() {
        for reason in [
            Reason::NotJson,
            Reason::Oversized,
            Reason::UnknownEventType,
            Reason::UnsupportedVersion,
            Reason::SchemaViolation,
        ] {
            assert_eq!(DeadLetterReason::from(reason).as_str(), reason.as_str());
        }
    }
}
