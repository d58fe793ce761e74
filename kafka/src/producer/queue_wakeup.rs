//! The one place that calls librdkafka directly: a callback on a producer's main event
//! queue that wakes [`super::awaited`]'s poller when the queue goes from empty to
//! non-empty, and that queue's length. rust-rdkafka exposes neither, and its own polling
//! loop spins on `poll(0)` for the sub-millisecond rest of every 100 ms wait (ADR 0021).
//!
//! The workspace denies `unsafe`; this module alone allows it, for four calls whose
//! contracts librdkafka documents (`rdkafka.h`): `rd_kafka_queue_get_main`,
//! `rd_kafka_queue_cb_event_enable`, `rd_kafka_queue_length`, `rd_kafka_queue_destroy`.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

/// Whether the queue has had something since the poller last looked, and the condition the
/// poller sleeps on.
#[derive(Default)]
pub(super) struct Signal {
    pending: Mutex<bool>,
    ready: Condvar,
    stopping: AtomicBool,
    /// How many times librdkafka's callback woke the poller.
    callbacks: AtomicU64,
}

impl Signal {
    /// Marks the queue as having something and wakes the poller.
    fn raise(&self) {
        // A poisoned lock only means a poller panicked: the flag is still a plain bool.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending = true;
        self.ready.notify_one();
    }

    /// Sleeps until raised, stopped or `timeout` passes; clears the flag and says whether to
    /// go on.
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (mut pending, _) = self
            .ready
            .wait_timeout_while(pending, timeout, |pending| {
                !*pending && !self.stopping.load(Ordering::Acquire)
            })
            .unwrap_or_else(|p| p.into_inner());
        *pending = false;
        !self.stopping.load(Ordering::Acquire)
    }

    /// How many times librdkafka's callback woke the poller.
    #[cfg(test)]
    pub(super) fn callbacks(&self) -> u64 {
        self.callbacks.load(Ordering::Relaxed)
    }

    /// Whether the poller has been told to finish.
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Tells the poller to finish.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.raise();
    }
}

/// A handle on a producer's main queue with the wake-up callback installed; uninstalls it
/// and releases the handle when dropped.
pub(super) struct MainQueue {
    queue: *mut rdsys::rd_kafka_queue_t,
    /// The `Arc<Signal>` the callback's opaque pointer holds, reclaimed on drop.
    opaque: *const Signal,
}

// SAFETY: librdkafka's queue handles may be used from any thread (its queues lock
// internally), and `opaque` is only turned back into its `Arc` once, in `drop`.
unsafe impl Send for MainQueue {}
unsafe impl Sync for MainQueue {}

impl MainQueue {
    /// Installs `signal` as the wake-up of `producer`'s main queue (where delivery reports and
    /// errors arrive). The producer must outlive the returned handle.
    pub(super) fn wake_on_events<C: ProducerContext>(
        producer: &BaseProducer<C>,
        signal: &Arc<Signal>,
    ) -> Self {
        let opaque = Arc::into_raw(Arc::clone(signal));
        // SAFETY: the client pointer is live (we borrow the producer); the returned handle
        // holds a reference on the queue until `rd_kafka_queue_destroy` in `drop`. The
        // callback gets `opaque`, which stays valid until `drop` has uninstalled the callback
        // (uninstalling takes the queue's lock, which librdkafka holds while it calls back,
        // so no call is in flight afterwards).
        unsafe {
            let queue = rdsys::rd_kafka_queue_get_main(producer.client().native_ptr());
            rdsys::rd_kafka_queue_cb_event_enable(
                queue,
                Some(on_first_event),
                opaque.cast_mut().cast::<c_void>(),
            );
            MainQueue { queue, opaque }
        }
    }

    /// How many events wait in the queue.
    pub(super) fn len(&self) -> usize {
        // SAFETY: `queue` is a live handle until `drop`.
        unsafe { rdsys::rd_kafka_queue_length(self.queue) }
    }
}

impl Drop for MainQueue {
    fn drop(&mut self) {
        // SAFETY: uninstalling first means librdkafka no longer holds `opaque`; then the
        // `Arc` it held is released exactly once, and the handle is destroyed exactly once.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue, None, std::ptr::null_mut());
            drop(Arc::from_raw(self.opaque));
            rdsys::rd_kafka_queue_destroy(self.queue);
        }
    }
}

/// Called by librdkafka, on one of its threads and under the queue's lock, when an event
/// lands on an empty queue: it must only note it, never call back into librdkafka.
unsafe extern "C" fn on_first_event(_: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Arc<Signal>` pointer `wake_on_events` installed, alive until
    // the callback is uninstalled.
    let signal = unsafe { &*opaque.cast::<Signal>() };
    signal.callbacks.fetch_add(1, Ordering::Relaxed);
    signal.raise();
}
