//! Sending generated traffic where services would publish it: Kafka topics ([`kafka`]) or
//! Kinesis streams ([`kinesis`]), one per event domain, keyed by tenant.

pub mod kafka;
pub mod kinesis;

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
