//! What became of an entry given to the ingest gateway: the `outcome` column of
//! `ingest_outcomes` and the `errorCode` of the gateway's answer, one name for both, so the
//! view of publish success and the publishers read the same words.

/// An entry's fate at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IngestOutcome {
    /// On the bus, acknowledged by the broker.
    Accepted,
    /// Broke the contract (not retryable).
    ValidationError,
    /// For a tenant the key does not publish for (not retryable).
    TenantNotAllowed,
    /// Over the entry size limit (not retryable).
    TooLarge,
    /// Over the tenant's rate (retryable).
    Throttled,
    /// The broker did not take it (retryable).
    PublishFailed,
}

impl IngestOutcome {
    /// The outcomes that refuse an entry for good: each is a failed publish and a dead letter.
    pub const REJECTED: [IngestOutcome; 3] = [
        Self::ValidationError,
        Self::TenantNotAllowed,
        Self::TooLarge,
    ];

    /// The stored name, and the answer's `errorCode` for a failure.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::ValidationError => "ValidationError",
            Self::TenantNotAllowed => "TenantNotAllowed",
            Self::TooLarge => "TooLarge",
            Self::Throttled => "Throttled",
            Self::PublishFailed => "PublishFailed",
        }
    }

    /// Whether the publisher should send the entry again (after `Retry-After`).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::PublishFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_and_broker_failures_are_retryable() {
        for outcome in IngestOutcome::REJECTED {
            assert!(!outcome.is_retryable(), "{outcome:?}");
        }
        assert!(IngestOutcome::Throttled.is_retryable());
        assert!(IngestOutcome::PublishFailed.is_retryable());
        assert!(!IngestOutcome::Accepted.is_retryable());
    }
}
