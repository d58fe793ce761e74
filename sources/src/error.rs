//! What stops a source, and whether trying again can help.

use rdkafka::error::KafkaError;
use salestalk_kinesis::KinesisError;
use salestalk_store::ClickHouseError;

/// Why a source could not open, start a partition, or pause.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Kafka consumer refused `what` (its configuration, a subscription, a seek).
    #[error("{what}: {source}")]
    Kafka {
        /// What the source was doing.
        what: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// A Kinesis call failed while `what`.
    #[error("{what}: {source}")]
    Kinesis {
        /// What the source was doing.
        what: String,
        /// The service's error.
        #[source]
        source: KinesisError,
    },
    /// Reading the checkpoints the source resumes from failed.
    #[error("reading checkpoints: {0}")]
    Store(#[source] ClickHouseError),
}

impl SourceError {
    /// Whether the same call may succeed later. A Kafka consumer error here is about the
    /// consumer's own state or settings (a refused seek, a bad subscription), so the run
    /// stops and a restart resumes from the checkpoints.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kafka { .. } => false,
            Self::Kinesis { source, .. } => source.is_retryable(),
            Self::Store(source) => source.is_retryable(),
        }
    }

    /// A Kafka error while `what`.
    pub(crate) fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let what = what.into();
        move |source| Self::Kafka { what, source }
    }

    /// A Kinesis error while `what`.
    pub(crate) fn kinesis(what: impl Into<String>) -> impl FnOnce(KinesisError) -> Self {
        let what = what.into();
        move |source| Self::Kinesis { what, source }
    }
}

impl From<ClickHouseError> for SourceError {
    fn from(error: ClickHouseError) -> Self {
        Self::Store(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinesis_outages_are_retryable_and_refusals_are_not() {
        let down = SourceError::kinesis("listing shards")(KinesisError::Unavailable("x".into()));
        let refused = SourceError::kinesis("listing shards")(KinesisError::Refused("x".into()));
        assert!(down.is_retryable());
        assert!(!refused.is_retryable());
        assert_eq!(down.to_string(), "listing shards: Kinesis unavailable: x");
    }
}
