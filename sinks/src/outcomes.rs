//! What each consumer (a sink, named as latency names it) was asked to make durable in a flush,
//! what it refused for good, and how many of its write attempts failed: the consumer error
//! rate (DESIGN.md: failures over attempts, per consumer) and, apart, the transient errors a
//! retry dealt with. Sinks record into their [`FlushBatch`](crate::FlushBatch); the runtime
//! adds up a flush's attempts and stores them once the flush landed
//! ([`crate::clickhouse::record_outcomes`]).

use std::collections::BTreeMap;

use salestalk_operators::histogram::LogHistogram;

/// One consumer's counts for one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Items it was asked to make durable (events, or dead letters).
    pub attempted: u64,
    /// Items it refused for good (each sent to the DLQ, or kept only by another sink).
    pub failed: u64,
}

/// A flush's outcomes at every consumer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Per consumer, per tenant.
    pub counts: BTreeMap<&'static str, BTreeMap<String, Counts>>,
    /// Failed write attempts per consumer (a transient error: retried, or after the last
    /// attempt counted in `failed` too).
    pub failed_attempts: BTreeMap<&'static str, u64>,
    /// Delivery latency (event time to acknowledged, ms) per (consumer, event type), then
    /// tenant, for consumers whose latency is not part of the window state (the routing
    /// targets). Tenants are the inner key so a lookup borrows the tenant (see `entry`).
    pub latency: BTreeMap<(&'static str, &'static str), BTreeMap<String, LogHistogram>>,
}

impl Outcomes {
    /// `consumer` was asked to make an item of `tenant` durable.
    pub fn attempted(&mut self, consumer: &'static str, tenant: &str) {
        self.entry(consumer, tenant).attempted += 1;
    }

    /// `consumer` refused an item of `tenant` for good.
    pub fn failed(&mut self, consumer: &'static str, tenant: &str) {
        self.entry(consumer, tenant).failed += 1;
    }

    /// A write attempt of `consumer` failed.
    pub fn attempt_failed(&mut self, consumer: &'static str) {
        self.attempts_failed(consumer, 1);
    }

    /// `n` write attempts of `consumer` failed.
    pub fn attempts_failed(&mut self, consumer: &'static str, n: u64) {
        if n > 0 {
            *self.failed_attempts.entry(consumer).or_default() += n;
        }
    }

    /// `consumer` acknowledged an event of `tenant` and `event_type` `latency_ms` after its
    /// event time.
    pub fn acknowledged(
        &mut self,
        consumer: &'static str,
        tenant: &str,
        event_type: &'static str,
        latency_ms: f64,
    ) {
        let tenants = self.latency.entry((consumer, event_type)).or_default();
        // Once per acknowledged record: allocate a key only for a new tenant.
        if !tenants.contains_key(tenant) {
            tenants.insert(tenant.to_string(), LogHistogram::default());
        }
        if let Some(histogram) = tenants.get_mut(tenant) {
            histogram.record(latency_ms);
        }
    }

    /// Adds the failed attempts of an earlier try at the same flush (held by an outage).
    pub fn add_failed_attempts(&mut self, earlier: &Outcomes) {
        for (consumer, n) in &earlier.failed_attempts {
            *self.failed_attempts.entry(consumer).or_default() += n;
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.failed_attempts.is_empty() && self.latency.is_empty()
    }

    fn entry(&mut self, consumer: &'static str, tenant: &str) -> &mut Counts {
        let tenants = self.counts.entry(consumer).or_default();
        // Tenants repeat within a flush: allocate a key only for a new one.
        if !tenants.contains_key(tenant) {
            tenants.insert(tenant.to_string(), Counts::default());
        }
        tenants.get_mut(tenant).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_consumer_and_tenant_and_attempts_carry_over() {
        let mut first = Outcomes::default();
        first.attempt_failed("clickhouse.archive");
        let mut outcomes = Outcomes::default();
        outcomes.attempted("clickhouse.archive", "a");
        outcomes.attempted("clickhouse.archive", "a");
        outcomes.failed("clickhouse.archive", "a");
        outcomes.attempted("kafka.dlq", "b");
        outcomes.attempt_failed("clickhouse.archive");
        outcomes.add_failed_attempts(&first);
        assert_eq!(
            outcomes.counts["clickhouse.archive"]["a"],
            Counts {
                attempted: 2,
                failed: 1
            }
        );
        assert_eq!(outcomes.counts.len(), 2);
        assert_eq!(outcomes.failed_attempts["clickhouse.archive"], 2);
    }
}
