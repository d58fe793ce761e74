//! Request budgets: a token bucket per name (a tenant at the gateway, a key at `serve`),
//! refilled at the configured rate up to one second's worth (so a name may burst that much at
//! once). What is over it is answered `Throttled` or 429, which the client retries; nothing
//! falls over. Limits are per process: N gateways behind a balancer allow N times the rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// One tenant's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Every tenant's bucket. Tenants are those a key publishes for, so the map stays small.
#[derive(Debug)]
pub struct TenantRates {
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TenantRates {
    /// Buckets of `per_second` entries a second.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `tenant` may publish one more entry at `now` (taking it if so).
    pub fn allow(&self, tenant: &str, now: Instant) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        // Tenants repeat: allocate a key only for a new one.
        if !buckets.contains_key(tenant) {
            buckets.insert(
                tenant.to_string(),
                Bucket {
                    tokens: self.per_second,
                    at: now,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(tenant) else {
            return true;
        };
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.per_second);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_tenant_bursts_one_seconds_worth_then_refills_at_the_rate_alone() {
        let rates = TenantRates::new(10);
        let start = Instant::now();
        let allowed = (0..15).filter(|_| rates.allow("a", start)).count();
        assert_eq!(allowed, 10);
        // Another tenant has its own bucket.
        assert!(rates.allow("b", start));
        // Half a second refills five, never more than a second's worth.
        let later = start + Duration::from_millis(500);
        assert_eq!((0..15).filter(|_| rates.allow("a", later)).count(), 5);
        let much_later = start + Duration::from_secs(60);
        assert_eq!((0..15).filter(|_| rates.allow("a", much_later)).count(), 10);
    }
}
