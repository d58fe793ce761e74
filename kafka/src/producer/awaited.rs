//! [`Awaited`]: a producer whose every record's outcome can be awaited, like rust-rdkafka's
//! `FutureProducer`, but whose poller sleeps until librdkafka has an event for it instead of
//! waking every 100 ms and spinning on `poll(0)` for the rest of each wait (about 0.8 % of a
//! core per producer, idle or not: ADR 0021).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, FutureRecord, ProducerContext};
use tokio::sync::oneshot;

use super::queue_wakeup::{MainQueue, Signal};

/// Where a delivered record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    /// Its partition.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// What a record's delivery comes to: where it landed, or why not.
pub type Outcome = Result<Landed, KafkaError>;

/// A record the producer could not take (its queue full, say), with the reason: the caller
/// may send it again.
pub type Refused<'a> = (KafkaError, FutureRecord<'a, str, [u8]>);

/// Hands each delivery report to the sender its record carried.
pub struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Outcome>>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(message) => Ok(Landed {
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((error, _)) => Err(error.clone()),
        };
        // The caller may have stopped waiting (its task was cancelled): nothing to tell.
        let _ = reply.send(outcome);
    }
}

/// How long the poller sleeps when nothing wakes it: only a safety net (the queue's
/// callback wakes it for every event), and what bounds a drop's wait for it.
const IDLE_WAKE: Duration = Duration::from_millis(250);

/// At most this many events are served between two looks at the stop flag; a pass that
/// reaches it goes round again at once (the queue never went empty, so no callback comes).
const EVENTS_PER_PASS: usize = 10_000;

/// A producer whose records' outcomes are awaited ([`Awaited::send`]), served by a thread
/// that sleeps until the producer's event queue has something.
pub struct Awaited {
    producer: Arc<BaseProducer<Reports>>,
    signal: Arc<Signal>,
    poller: Option<JoinHandle<()>>,
}

impl FromClientConfigAndContext<Reports> for Awaited {
    fn from_config_and_context(config: &ClientConfig, context: Reports) -> KafkaResult<Self> {
        let producer = Arc::new(BaseProducer::from_config_and_context(config, context)?);
        let signal = Arc::new(Signal::default());
        let queue = MainQueue::wake_on_events(&producer, &signal);
        let poller = {
            let producer = Arc::clone(&producer);
            let signal = Arc::clone(&signal);
            std::thread::Builder::new()
                .name("salestalk producer events".into())
                .spawn(move || serve(&producer, &signal, queue))
                .map_err(|_| KafkaError::ClientCreation("starting the producer's poller".into()))?
        };
        Ok(Awaited {
            producer,
            signal,
            poller: Some(poller),
        })
    }
}

/// The poller: sleeps until woken, then serves every waiting event (each `poll` with a zero
/// timeout serves at most one and never waits).
fn serve(producer: &BaseProducer<Reports>, signal: &Signal, queue: MainQueue) {
    let mut more = false;
    loop {
        let go_on = if more {
            !signal.stopping()
        } else {
            signal.wait(IDLE_WAKE)
        };
        let mut served = 0;
        while served < EVENTS_PER_PASS && queue.len() > 0 {
            producer.poll(Duration::ZERO);
            served += 1;
        }
        more = served == EVENTS_PER_PASS;
        if !go_on {
            break;
        }
    }
    // The queue's handle (and its callback) goes before the producer can.
    drop(queue);
}

impl Awaited {
    /// Enqueues `record`; the receiver yields its outcome once the broker answers or the
    /// producer gives up (`message.timeout.ms`). A full queue returns the record with the
    /// error, for the caller to retry.
    #[allow(clippy::result_large_err)]
    pub fn send<'a>(
        &self,
        record: FutureRecord<'a, str, [u8]>,
    ) -> Result<oneshot::Receiver<Outcome>, Refused<'a>> {
        let (reply, outcome) = oneshot::channel();
        let FutureRecord {
            topic,
            partition,
            payload,
            key,
            timestamp,
            headers,
        } = record;
        let base = BaseRecord {
            topic,
            partition,
            payload,
            key,
            timestamp,
            headers,
            delivery_opaque: Box::new(reply),
        };
        match self.producer.send(base) {
            Ok(()) => Ok(outcome),
            Err((error, base)) => Err((
                error,
                FutureRecord {
                    topic: base.topic,
                    partition: base.partition,
                    payload: base.payload,
                    key: base.key,
                    timestamp: base.timestamp,
                    headers: base.headers,
                },
            )),
        }
    }
}

impl Drop for Awaited {
    fn drop(&mut self) {
        self.signal.stop();
        if let Some(poller) = self.poller.take() {
            // A panicked poller has nothing left to release.
            let _ = poller.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer pointed at a port nobody listens on, giving up on a record after `timeout_ms`.
    fn unreachable(timeout_ms: u32) -> Awaited {
        ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.timeout.ms", timeout_ms.to_string())
            .set("log_level", "0")
            .create_with_context(Reports)
            .expect("a valid configuration")
    }

    fn record(payload: &[u8]) -> FutureRecord<'_, str, [u8]> {
        FutureRecord::to("t").payload(payload).key("k")
    }

    #[tokio::test]
    async fn a_report_wakes_the_poller_and_reaches_its_record() {
        let producer = unreachable(300);
        let outcomes: Vec<_> = (0..3)
            .map(|_| {
                producer
                    .send(record(b"x"))
                    .map_err(|(e, _)| e)
                    .expect("queued")
            })
            .collect();
        for outcome in outcomes {
            // The timeout's report is the only event: it must wake the sleeping poller well
            // before the test's own limit.
            let outcome = tokio::time::timeout(Duration::from_secs(10), outcome)
                .await
                .expect("the report arrives")
                .expect("the sender is not dropped");
            assert!(
                matches!(&outcome, Err(KafkaError::MessageProduction(_))),
                "{outcome:?}"
            );
        }
        // Woken by librdkafka, not only by the idle timeout's safety net.
        assert!(producer.signal.callbacks() > 0);
    }

    #[tokio::test]
    async fn dropping_the_producer_answers_every_waiting_record() {
        let producer = unreachable(600_000);
        let outcome = producer
            .send(record(b"x"))
            .map_err(|(e, _)| e)
            .expect("queued");
        drop(producer);
        // Purged on drop: the record hears it failed instead of waiting forever.
        let outcome = tokio::time::timeout(Duration::from_secs(10), outcome)
            .await
            .expect("answered on drop")
            .expect("the sender is not dropped unanswered");
        assert!(outcome.is_err(), "{outcome:?}");
    }
}
