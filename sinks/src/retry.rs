//! How a sink write is retried, and how a batch the sink refuses is narrowed down to the rows
//! it refuses, so that one bad row cannot sink its neighbours.
//!
//! Three outcomes, three different actions (ADR 0006):
//! - a transient failure (the sink unreachable, timing out, overloaded) is retried with
//!   exponential backoff and jitter, up to `max_attempts` attempts;
//! - if it persists and the sink no longer answers a probe, the sink is *down*: the write
//!   fails with the transient error and the caller stops reading until the sink is back
//!   (an outage is not the data's fault, so nothing goes to the DLQ for it);
//! - a permanent refusal, or a transient one that persists while the sink otherwise answers,
//!   splits the batch in halves until single rows remain: those are refused, with the reason
//!   `sink_rejected` or `retries_exhausted`, and every other row is written.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

/// An error that says whether the same request may succeed later.
pub trait Transient: std::fmt::Display {
    /// Whether retrying the same request may help.
    fn is_retryable(&self) -> bool;
}

/// `[retry]`: how failed writes are retried (ADR 0006).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct RetrySettings {
    /// Attempts per write, the first included.
    pub max_attempts: u32,
    /// Pause before the first retry, ms.
    pub initial_backoff_ms: u64,
    /// Longest pause, ms; also the pause between probes while a sink is down.
    pub max_backoff_ms: u64,
}

impl RetrySettings {
    /// The policy the sinks apply.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
        }
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=100).contains(&self.max_attempts) {
            problems.push(format!(
                "retry.max_attempts: {} is outside 1..=100",
                self.max_attempts
            ));
        }
        if !(1..=60_000).contains(&self.initial_backoff_ms) {
            problems.push(format!(
                "retry.initial_backoff_ms: {} is outside 1..=60000",
                self.initial_backoff_ms
            ));
        }
        if !(self.initial_backoff_ms..=600_000).contains(&self.max_backoff_ms) {
            problems.push(format!(
                "retry.max_backoff_ms: {} is outside initial_backoff_ms..=600000",
                self.max_backoff_ms
            ));
        }
        problems
    }
}

/// Bounded retries with exponential backoff and jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per write, the first included (at least 1).
    pub max_attempts: u32,
    /// Pause before the first retry.
    pub initial_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1 for the first), given `unit` drawn uniformly
    /// from [0, 1): the exponential step, capped, of which half is fixed and half random
    /// ("equal jitter"), so that instances that failed together do not retry together and no
    /// pause collapses to nothing.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let step = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        step / 2 + step.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }

    /// [`RetryPolicy::backoff`] with fresh randomness.
    pub fn jittered_backoff(&self, retry: u32) -> Duration {
        self.backoff(retry, rand::random::<f64>())
    }

    /// Runs `write` until it succeeds, fails permanently, or has failed `max_attempts` times;
    /// `on_failure` sees every failed attempt (for metrics and logs).
    pub async fn run<T, E, W, F>(
        &self,
        mut write: W,
        mut on_failure: impl FnMut(&E),
    ) -> Result<T, E>
    where
        E: Transient,
        W: FnMut() -> F,
        F: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match write().await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    on_failure(&error);
                    if !error.is_retryable() || attempt >= self.max_attempts {
                        return Err(error);
                    }
                    tokio::time::sleep(self.jittered_backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Why a sink would not take a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The sink answered that it will not take it.
    Rejected,
    /// It kept failing transiently while the sink otherwise answered.
    RetriesExhausted,
}

/// One row the sink would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its index in the batch.
    pub index: usize,
    /// Why.
    pub refusal: Refusal,
    /// The sink's last error for it.
    pub error: String,
    /// Attempts made on the row alone.
    pub attempts: u32,
}

/// Writes rows `0..len` with `write` (which takes a range of them), isolating refused rows:
/// returns the rows refused, sorted by index, with every other row written. Fails with the
/// transient error when the sink is down (`probe` fails after the retries ran out).
pub async fn write_isolating<E, W, WF, P, PF>(
    policy: &RetryPolicy,
    len: usize,
    mut write: W,
    mut probe: P,
    mut on_failure: impl FnMut(&E),
) -> Result<Vec<Refused>, E>
where
    E: Transient,
    W: FnMut(Range<usize>) -> WF,
    WF: Future<Output = Result<(), E>>,
    P: FnMut() -> PF,
    PF: Future<Output = Result<(), E>>,
{
    let mut refused = Vec::new();
    // Ranges still to write; the halves of a refused range go back on the stack.
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..len);
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        let Err(error) = policy.run(|| write(range.clone()), &mut on_failure).await else {
            continue;
        };
        let transient = error.is_retryable();
        if transient && probe().await.is_err() {
            return Err(error);
        }
        if range.len() == 1 {
            refused.push(Refused {
                index: range.start,
                refusal: if transient {
                    Refusal::RetriesExhausted
                } else {
                    Refusal::Rejected
                },
                error: error.to_string(),
                attempts: if transient { policy.max_attempts } else { 1 },
            });
        } else {
            let middle = range.start + range.len() / 2;
            pending.push(middle..range.end);
            pending.push(range.start..middle);
        }
    }
    refused.sort_by_key(|r| r.index);
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Fake {
        Down,
        Refuses(usize),
        Flaky(usize),
    }

    impl std::fmt::Display for Fake {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl Transient for Fake {
        fn is_retryable(&self) -> bool {
            !matches!(self, Fake::Refuses(_))
        }
    }

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    /// A sink that takes every row except `refuses` (permanently) and `flaky` (always a
    /// transient error), or nothing at all while `down`.
    struct Sink {
        refuses: BTreeSet<usize>,
        flaky: BTreeSet<usize>,
        down: bool,
        written: RefCell<BTreeSet<usize>>,
        calls: RefCell<u32>,
    }

    impl Sink {
        fn new(refuses: &[usize], flaky: &[usize], down: bool) -> Self {
            Self {
                refuses: refuses.iter().copied().collect(),
                flaky: flaky.iter().copied().collect(),
                down,
                written: RefCell::default(),
                calls: RefCell::default(),
            }
        }

        async fn write(&self, range: Range<usize>) -> Result<(), Fake> {
            *self.calls.borrow_mut() += 1;
            if self.down {
                return Err(Fake::Down);
            }
            if let Some(bad) = range.clone().find(|i| self.refuses.contains(i)) {
                return Err(Fake::Refuses(bad));
            }
            if let Some(bad) = range.clone().find(|i| self.flaky.contains(i)) {
                return Err(Fake::Flaky(bad));
            }
            self.written.borrow_mut().extend(range);
            Ok(())
        }

        async fn probe(&self) -> Result<(), Fake> {
            if self.down { Err(Fake::Down) } else { Ok(()) }
        }

        async fn run(&self, policy: RetryPolicy, len: usize) -> Result<Vec<Refused>, Fake> {
            write_isolating(&policy, len, |r| self.write(r), || self.probe(), |_| {}).await
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_within_half_a_step() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(3, 0.0), Duration::from_millis(200));
        assert_eq!(policy.backoff(30, 1.0), Duration::from_secs(5));
        assert_eq!(policy.backoff(u32::MAX, 0.5), Duration::from_millis(3750));
    }

    #[test]
    fn one_refused_row_does_not_sink_its_neighbours() {
        let sink = Sink::new(&[37], &[], false);
        let refused = block_on(sink.run(quick(3), 100)).expect("sink is up");
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0].index, refused[0].refusal),
            (37, Refusal::Rejected)
        );
        let written = sink.written.borrow();
        assert_eq!(written.len(), 99);
        assert!(!written.contains(&37));
        // Bisection: about two writes per halving, not one per row.
        assert!(*sink.calls.borrow() <= 2 * 7 + 1, "{}", sink.calls.borrow());
    }

    #[test]
    fn a_row_failing_transiently_while_the_sink_answers_exhausts_its_retries() {
        let sink = Sink::new(&[3], &[5], false);
        let refused = block_on(sink.run(quick(3), 8)).expect("sink is up");
        let got: Vec<_> = refused.iter().map(|r| (r.index, r.refusal)).collect();
        assert_eq!(
            got,
            [(3, Refusal::Rejected), (5, Refusal::RetriesExhausted)]
        );
        assert_eq!(refused[1].attempts, 3);
        assert_eq!(sink.written.borrow().len(), 6);
    }

    #[test]
    fn a_sink_that_is_down_fails_the_write_after_the_attempts_and_refuses_nothing() {
        let sink = Sink::new(&[], &[], true);
        let result = block_on(sink.run(quick(4), 10));
        assert_eq!(result, Err(Fake::Down));
        assert_eq!(*sink.calls.borrow(), 4, "exactly max_attempts attempts");
    }

    #[test]
    fn every_row_is_either_written_or_refused() {
        for bad in [vec![], vec![0], vec![0, 1, 2, 3], vec![9], vec![1, 4, 8]] {
            let sink = Sink::new(&bad, &[], false);
            let refused = block_on(sink.run(quick(1), 10)).expect("up");
            let refused: BTreeSet<usize> = refused.iter().map(|r| r.index).collect();
            let written = sink.written.borrow();
            assert_eq!(refused, bad.iter().copied().collect());
            assert!(written.is_disjoint(&refused));
            assert_eq!(written.len() + refused.len(), 10);
        }
    }
}
