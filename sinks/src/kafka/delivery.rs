//! Delivery to the routing targets: every archived event of a flush goes to the topics of the
//! downstream targets its route names (`[routing]`, docs/routing.md), keyed by tenant, with the
//! `eventId`, event type and tenant in headers so a consumer deduplicates without parsing.
//!
//! Placed after the archive (it delivers only what the archive kept) and before the
//! dead-letter sinks (which keep what a target did not take), ahead of the commit point: a
//! crash before the commit delivers the flush again on replay, so delivery is at least once.
//! Targets are delivered concurrently, each retried on its own per `[retry]`; what one still
//! refuses becomes a dead letter naming it ([`FlushBatch::undelivered`]) and the flush goes
//! on, so a failing target holds no other and never the metrics. A target whose retries ran
//! out is paused for a while (its events dead-lettered at once), so an outage costs one
//! flush the retries' wait, not every flush.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use salestalk_kafka::KafkaSettings;
use salestalk_kafka::producer::{self, Acknowledged, deliver_acknowledged};
use salestalk_operators::flush::{ArchivedEvent, Flush};
use salestalk_operators::routing::{RoutingSettings, RoutingTable};

use super::awaiting_commit::AwaitingCommit;
use super::dead_letter_topic::header;
use crate::retry::RetryPolicy;
use crate::sink::{FlushBatch, Sink, SinkError, SinkFuture, SinkKind};

/// What health and telemetry call the targets' brokers.
pub use crate::sink::services::TARGETS as SERVICE;

/// The consumer name of target `name` (latency and the consumer error rate).
pub fn consumer_name(name: &str) -> String {
    format!("target.{name}")
}

/// The consumer name of downstream consumer group `group` (its error rate).
pub fn group_consumer_name(group: &str) -> String {
    format!("group.{group}")
}

/// Longest pause of an unavailable target, as a multiple of `routing.unavailable_pause_ms`.
const MAX_PAUSE_FACTOR: u32 = 32;

/// One downstream target.
struct Target {
    name: String,
    topic: String,
    consumer: &'static str,
    /// The consumer groups reading its topic, as consumers (`group.<name>`): what the target
    /// took, they were given (the attempts of their error rate).
    groups: Vec<&'static str>,
    /// Consecutive flushes its retries ran out in, and until when it is paused.
    pause: Mutex<(u32, Option<Instant>)>,
}

/// An event for a target: (flush, index in the flush's archive).
type EventRef = (usize, usize);

/// What became of one target's events in a flush.
#[derive(Default)]
struct TargetOutcome {
    /// Events acknowledged: where and when.
    acknowledged: Vec<(EventRef, Acknowledged)>,
    /// Events given up on: the error, and attempts made.
    undelivered: Vec<(EventRef, String, u32)>,
    /// Attempts that failed (for the consumer error rate's failed attempts).
    failed_attempts: u64,
}

/// The delivery sink.
pub struct Delivery {
    producer: producer::Awaited,
    table: RoutingTable,
    /// By the table's target index; `None` for `metrics`.
    targets: Vec<Option<Target>>,
    pause: Duration,
    /// What was delivered to the watched groups' topics, until they commit it.
    awaiting: Option<Arc<AwaitingCommit>>,
}

impl Delivery {
    /// A producer for the targets of `table` (compiled from `routing`).
    pub fn new(
        kafka: &KafkaSettings,
        routing: &RoutingSettings,
        table: RoutingTable,
    ) -> Result<Self, KafkaError> {
        let producer = producer::delivering(kafka, routing.delivery_timeout_ms)?;
        let mut targets: Vec<Option<Target>> = table.targets().iter().map(|_| None).collect();
        for (index, name, topic) in table.downstream() {
            targets[index] = Some(Target {
                name: name.to_string(),
                topic: topic.to_string(),
                // Names live as long as the process: a few, from configuration, once.
                consumer: Box::leak(consumer_name(name).into_boxed_str()),
                groups: routing
                    .targets
                    .get(name)
                    .map(|t| t.consumer_groups.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|g| &*Box::leak(group_consumer_name(g).into_boxed_str()))
                    .collect(),
                pause: Mutex::new((0, None)),
            });
        }
        Ok(Self {
            producer,
            table,
            targets,
            pause: Duration::from_millis(routing.unavailable_pause_ms),
            awaiting: None,
        })
    }

    /// Notes what each target's broker acknowledged in `awaiting`, for the groups' commit
    /// latency.
    pub fn awaiting_commits(mut self, awaiting: Arc<AwaitingCommit>) -> Self {
        self.awaiting = Some(awaiting);
        self
    }

    /// Delivers `events` to `target`, retrying what failed per `policy`.
    async fn deliver(
        &self,
        target: &Target,
        flushes: &[Flush],
        events: Vec<EventRef>,
        policy: RetryPolicy,
    ) -> TargetOutcome {
        let mut outcome = TargetOutcome::default();
        if let Some(until) = self.paused(target) {
            let error = format!(
                "target {} ({}) not tried: paused for {} ms after its retries ran out",
                target.name,
                target.topic,
                until.saturating_duration_since(Instant::now()).as_millis()
            );
            outcome.undelivered = events.into_iter().map(|e| (e, error.clone(), 0)).collect();
            return outcome;
        }
        let mut pending = events;
        let mut attempt = 0;
        let mut last_error = String::new();
        while !pending.is_empty() {
            attempt += 1;
            let records: Vec<FutureRecord<'_, str, [u8]>> = pending
                .iter()
                .map(|&(f, e)| record(&target.topic, &flushes[f].archive[e]))
                .collect();
            let results = deliver_acknowledged(&self.producer, records).await;
            let mut failed = Vec::new();
            for (event, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(acknowledged) => outcome.acknowledged.push((event, acknowledged)),
                    Err(error) if producer::is_bad_record(&error) => {
                        let error = describe(target, &error);
                        outcome.undelivered.push((event, error, attempt));
                    }
                    Err(error) => {
                        last_error = describe(target, &error);
                        failed.push(event);
                    }
                }
            }
            if !failed.is_empty() {
                outcome.failed_attempts += 1;
                if attempt >= policy.max_attempts {
                    outcome.undelivered.extend(
                        failed
                            .into_iter()
                            .map(|event| (event, last_error.clone(), attempt)),
                    );
                    self.rest(target);
                    return outcome;
                }
                tokio::time::sleep(policy.jittered_backoff(attempt)).await;
            }
            pending = failed;
        }
        self.resume(target);
        outcome
    }

    /// Until when `target` is paused, if it is.
    fn paused(&self, target: &Target) -> Option<Instant> {
        let pause = target.pause.lock().unwrap_or_else(|p| p.into_inner());
        pause.1.filter(|until| *until > Instant::now())
    }

    /// Pauses `target` after its retries ran out: longer each time in a row.
    fn rest(&self, target: &Target) {
        let mut pause = target.pause.lock().unwrap_or_else(|p| p.into_inner());
        let factor = 2u32.saturating_pow(pause.0).min(MAX_PAUSE_FACTOR);
        pause.0 = pause.0.saturating_add(1);
        pause.1 = Some(Instant::now() + self.pause * factor);
        tracing::warn!(
            target = %target.name,
            topic = %target.topic,
            pause_ms = (self.pause * factor).as_millis() as u64,
            "a routing target did not take its events after every retry: they are dead letters \
             naming it (redrive them once it is back); paused"
        );
    }

    /// Ends `target`'s pause streak once it took a flush.
    fn resume(&self, target: &Target) {
        let mut pause = target.pause.lock().unwrap_or_else(|p| p.into_inner());
        if pause.0 > 0 {
            tracing::info!(target = %target.name, "a paused routing target takes events again");
        }
        *pause = (0, None);
    }
}

/// The record of `event` for `topic`.
fn record<'a>(topic: &'a str, event: &'a ArchivedEvent) -> FutureRecord<'a, str, [u8]> {
    let event_id = event.event_id.text();
    let mut headers = OwnedHeaders::new_with_capacity(5)
        .insert(Header {
            key: header::EVENT_ID,
            value: Some(event_id.as_str()),
        })
        .insert(Header {
            key: header::EVENT_TYPE,
            value: Some(event.event_type.as_str()),
        })
        .insert(Header {
            key: header::TENANT,
            value: Some(event.tenant_id.as_str()),
        })
        .insert(Header {
            key: header::CORRELATION_ID,
            value: Some(event.correlation_id.as_str()),
        });
    // Tracing follows the event into the target's consumers.
    if !event.trace_id.is_empty() {
        headers = headers.insert(Header {
            key: header::TRACE_ID,
            value: Some(event.trace_id.as_str()),
        });
    }
    FutureRecord::to(topic)
        .key(event.tenant_id.as_str())
        .payload(&event.raw[..])
        .headers(headers)
}

/// The time an event's latency runs from: its own stamp, or the broker's when the stamp was
/// skewed past the tolerance.
fn event_time_ms(event: &ArchivedEvent) -> i64 {
    if event.clock_skewed {
        event.broker_ms
    } else {
        event.timestamp_ms
    }
}

fn describe(target: &Target, error: &KafkaError) -> String {
    format!(
        "target {} (topic {}) did not take it: {error}",
        target.name, target.topic
    )
}

impl Sink for Delivery {
    fn kind(&self) -> SinkKind {
        SinkKind::Delivery
    }

    fn write<'a>(&'a self, batch: &'a mut FlushBatch<'_>) -> SinkFuture<'a> {
        Box::pin(async move {
            let flushes = batch.flushes;
            let mut routed: Vec<Vec<EventRef>> = vec![Vec::new(); self.targets.len()];
            for (f, flush) in flushes.iter().enumerate() {
                for (e, event) in flush.archive.iter().enumerate() {
                    if batch.is_refused(f, event.offset) {
                        continue;
                    }
                    let (_, targets) = self.table.route(
                        event.event_type.as_str(),
                        &event.tenant_id,
                        &event.source,
                    );
                    for &target in targets {
                        if self.targets[target].is_some() {
                            routed[target].push((f, e));
                        }
                    }
                }
            }
            let policy = batch.policy;
            let deliveries = self
                .targets
                .iter()
                .zip(routed)
                .filter_map(|(target, events)| Some((target.as_ref()?, events)))
                .filter(|(_, events)| !events.is_empty())
                .map(|(target, events)| async move {
                    (target, self.deliver(target, flushes, events, policy).await)
                });
            for (target, outcome) in join_all(deliveries).await {
                let consumer = target.consumer;
                batch
                    .outcomes
                    .attempts_failed(consumer, outcome.failed_attempts);
                for _ in 0..outcome.failed_attempts {
                    batch.observer.write_failed(SERVICE);
                }
                if let Some(awaiting) = &self.awaiting {
                    awaiting.delivered(
                        &target.topic,
                        outcome.acknowledged.iter().map(|&((f, e), acknowledged)| {
                            let event = &flushes[f].archive[e];
                            (
                                acknowledged.partition,
                                acknowledged.offset,
                                event_time_ms(event),
                                event.tenant_id.as_str(),
                                event.event_type,
                            )
                        }),
                    );
                }
                for ((f, e), acknowledged) in outcome.acknowledged {
                    let event = &flushes[f].archive[e];
                    let latency_ms =
                        (acknowledged.at_ms as i64 - event_time_ms(event)).max(0) as f64;
                    let outcomes = &mut batch.outcomes;
                    outcomes.attempted(consumer, &event.tenant_id);
                    for group in &target.groups {
                        outcomes.attempted(group, &event.tenant_id);
                    }
                    outcomes.acknowledged(
                        consumer,
                        &event.tenant_id,
                        event.event_type.as_str(),
                        latency_ms,
                    );
                }
                if !outcome.undelivered.is_empty() {
                    batch
                        .observer
                        .rows_refused(SERVICE, outcome.undelivered.len() as u64);
                }
                for ((f, e), error, attempts) in outcome.undelivered {
                    let tenant = &flushes[f].archive[e].tenant_id;
                    batch.outcomes.attempted(consumer, tenant);
                    batch.outcomes.failed(consumer, tenant);
                    batch.undelivered(f, e, &target.topic, error, attempts);
                }
            }
            Ok::<(), SinkError>(())
        })
    }
}
