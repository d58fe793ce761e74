//! Holding partitions while a flush is in flight.
//!
//! The runtime writes a flush while it goes on reading. A partition revoked in that time must
//! not reach its next owner before the flush lands: the new owner restores the task from the
//! last durable checkpoint, and a flush of the old owner landing after that would give one
//! task two different states under the same epoch (ADR 0004). So the group member's
//! revocation callback waits here until no flush is held; librdkafka rejoins the group, and
//! the partition moves, only once the callback returns. This is what Kafka Streams does by
//! committing in `onPartitionsRevoked`.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Counts the flushes in flight; a revocation waits until there are none.
#[derive(Debug, Default)]
pub struct RevocationFence {
    in_flight: Mutex<usize>,
    released: Condvar,
}

/// Keeps the owner's partitions from moving while it lives (one per flush in flight).
#[derive(Debug)]
pub struct FenceHold {
    fence: Arc<RevocationFence>,
}

impl RevocationFence {
    /// A hold for one flush; dropping it (the flush landed, failed or was cancelled) lets a
    /// waiting revocation go on.
    pub fn hold(self: &Arc<Self>) -> FenceHold {
        if let Ok(mut count) = self.in_flight.lock() {
            *count += 1;
        }
        FenceHold {
            fence: Arc::clone(self),
        }
    }

    /// How many holds are alive.
    pub fn held(&self) -> usize {
        self.in_flight.lock().map_or(0, |count| *count)
    }

    /// Blocks until no hold is alive, logging every `report` while it waits.
    ///
    /// Called from the rebalance callback, which runs inside a poll on a runtime thread:
    /// inside a multi-threaded tokio runtime the wait hands that thread's other tasks (the
    /// flush among them) to another thread first, so the flush it waits for can finish.
    pub fn wait_released(&self, report: Duration) {
        let wait = || {
            let started = Instant::now();
            let Ok(mut count) = self.in_flight.lock() else {
                return;
            };
            while *count > 0 {
                match self.released.wait_timeout(count, report) {
                    Ok((guard, timeout)) => {
                        count = guard;
                        if timeout.timed_out() && *count > 0 {
                            tracing::warn!(
                                waited_s = started.elapsed().as_secs(),
                                "a revocation waits for the flush in flight to land"
                            );
                        }
                    }
                    Err(_) => return,
                }
            }
        };
        let multi_threaded = tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        if multi_threaded {
            tokio::task::block_in_place(wait);
        } else {
            wait();
        }
    }
}

impl Drop for FenceHold {
    fn drop(&mut self) {
        if let Ok(mut count) = self.fence.in_flight.lock() {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.fence.released.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_the_last_hold_is_dropped() {
        let fence = Arc::new(RevocationFence::default());
        let first = fence.hold();
        let second = fence.hold();
        assert_eq!(fence.held(), 2);
        let waiter = {
            let fence = Arc::clone(&fence);
            std::thread::spawn(move || {
                fence.wait_released(Duration::from_millis(10));
                Instant::now()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "one hold is still alive");
        let dropped = Instant::now();
        drop(second);
        let woke = waiter.join().expect("the waiter ends");
        assert!(woke >= dropped);
        assert_eq!(fence.held(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn inside_the_runtime_the_flush_it_waits_for_still_runs() {
        // One worker thread: without handing it over, the flush task could never run.
        let fence = Arc::new(RevocationFence::default());
        let hold = fence.hold();
        let flush = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(hold);
        });
        fence.wait_released(Duration::from_millis(100));
        assert_eq!(fence.held(), 0);
        flush.await.expect("the flush task ends");
    }
}
