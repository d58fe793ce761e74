//! A rate limit on one repeated log line, for the errors a source hears on every poll.

use std::time::{Duration, Instant};

/// Lets one log line through per period and counts the ones held back, so an error that
/// repeats per partition per poll (a broker that is down) does not flood the log.
pub struct LogThrottle {
    period: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl LogThrottle {
    /// At most one line per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged at `now`.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.period)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.admit(start), Some(0));
        for second in 1..10 {
            assert_eq!(throttle.admit(start + Duration::from_secs(second)), None);
        }
        assert_eq!(throttle.admit(start + Duration::from_secs(10)), Some(9));
        assert_eq!(throttle.admit(start + Duration::from_secs(11)), None);
        assert_eq!(throttle.admit(start + Duration::from_secs(25)), Some(1));
    }
}
