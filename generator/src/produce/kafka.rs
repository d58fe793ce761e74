//! Sending generated traffic to Kafka, one topic per event domain, keyed by tenant.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};

use super::{ProduceError, ProduceReport};
use crate::{Emitted, Generator};
use salestalk_kafka::{KafkaSettings, producer};

/// Produces every message of `generator`. With `realtime_from` (the generator's start, Unix
/// ms), each message waits until its event time comes round on the wall clock, counted from
/// the moment producing began, as live services would send it.
pub fn produce(
    settings: &KafkaSettings,
    generator: &mut Generator,
    realtime_from: Option<i64>,
) -> Result<ProduceReport, ProduceError> {
    let producer = producer::counted(settings).map_err(|source| ProduceError::Kafka {
        what: "creating the Kafka producer",
        source,
    })?;
    let started = Instant::now();
    let mut report = ProduceReport::default();
    let mut topics: Vec<(salestalk_contracts::EventType, String)> = Vec::new();
    for Emitted {
        at_ms,
        event_type,
        tenant_id,
        bytes,
        ..
    } in generator.by_ref()
    {
        let topic = match topics.iter().find(|(t, _)| *t == event_type) {
            Some((_, topic)) => topic.clone(),
            None => {
                let topic = settings.topic_for(event_type.domain());
                topics.push((event_type, topic.clone()));
                topic
            }
        };
        let mut record = BaseRecord::to(&topic).key(&tenant_id).payload(&bytes);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(50));
                }
                Err((source, _)) => {
                    return Err(ProduceError::Kafka {
                        what: "producing a message",
                        source,
                    });
                }
            }
        }
        report.submitted += 1;
        producer.poll(Duration::ZERO);
        if let Some(start_ms) = realtime_from {
            let due = Duration::from_millis(u64::try_from(at_ms - start_ms).unwrap_or(0));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                producer.poll(Duration::ZERO);
                std::thread::sleep(wait);
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|source| ProduceError::Kafka {
            what: "flushing the producer",
            source,
        })?;
    report.delivered = producer.context().delivered.load(Ordering::Relaxed);
    report.failed = producer.context().failed.load(Ordering::Relaxed);
    Ok(report)
}
