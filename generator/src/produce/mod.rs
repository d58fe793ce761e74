//! Sending generated traffic where services would publish it: Kafka topics ([`kafka`]) or
//! Kinesis streams ([`kinesis`]), one per event domain, keyed by tenant.

pub mod kafka;
pub mod kinesis;

/// Why producing generated traffic stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The Kafka producer failed while `what`.
    #[error("{what}: {source}")]
    Kafka {
        /// What it was doing.
        what: &'static str,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A Kinesis call failed while `what`.
    #[error("{what}: {source}")]
    Kinesis {
        /// What it was doing.
        what: String,
        /// The service's error.
        #[source]
        source: salestalk_kinesis::KinesisError,
    },
}

impl ProduceError {
    /// Whether running it again may succeed (a broker or stream that was down).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kafka { .. } => true,
            Self::Kinesis { source, .. } => source.is_retryable(),
        }
    }
}

/// What a produce run achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProduceReport {
    /// Messages handed to the producer.
    pub submitted: u64,
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Messages that failed for good.
    pub failed: u64,
}
