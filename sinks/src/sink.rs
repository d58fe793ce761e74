//! The sink contract, and a flush made durable by a configured list of sinks.
//!
//! A flush of every task ([`Flush`]) goes through the sinks in the configured order
//! (`sinks.flush_order`). Each sink makes its part durable and may refuse single events; a
//! refused event becomes a dead letter for the sinks after it, and its task is replayed
//! instead of committed (ADR 0006). The last sink is the commit point: the one atomic insert
//! of window rows and checkpoints (ADR 0004). [`FlushOrder`] checks at start-up that a list
//! keeps those promises.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use salestalk_operators::dead_letter::DeadLetterReason;
use salestalk_operators::flush::{DeadLetter, Flush, Rejection, consumers};
use salestalk_operators::{DeadLetterAddress, SourcePartition};

use crate::outcomes::Outcomes;
use crate::retry::{Refusal, Refused, RetryPolicy, Transient};

/// A boxed future: sinks are called through `dyn Sink`, in a list chosen at start-up.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Where a flush's outputs become durable.
///
/// A sink is called once per flush attempt with the whole [`FlushBatch`]; it writes what it
/// keeps, retrying per the batch's policy, and reports rows it refuses through the batch.
/// It fails only when it cannot go on: [`SinkError::Down`] holds the flush and pauses reading
/// until the service is back; [`SinkError::Fatal`] stops the run without committing.
pub trait Sink: Send + Sync {
    /// What it is: its one identity, from which its names follow.
    fn kind(&self) -> SinkKind;

    /// Its name in `sinks.flush_order`.
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The service it writes to, as health and telemetry name it.
    fn service(&self) -> &'static str {
        self.kind().service()
    }

    /// The consumer it is, as latency and the consumer error rate name it.
    fn consumer(&self) -> &'static str {
        self.kind().consumer()
    }

    /// Makes its part of `batch` durable.
    fn write<'a>(&'a self, batch: &'a mut FlushBatch<'_>) -> SinkFuture<'a>;
}

/// Why a sink could not make its part of a flush durable.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The service is down: hold everything, stop reading, try the flush again.
    #[error("{service} is down: {message}")]
    Down {
        /// The service (see [`Sink::service`]).
        service: &'static str,
        /// Its last error.
        message: String,
    },
    /// Nothing can make this flush durable (a refused commit, or a refused dead letter with
    /// nowhere else to go): stop without committing, so a restart reads the data again.
    #[error("{sink}: {message}")]
    Fatal {
        /// The sink.
        sink: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl Transient for SinkError {
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Down { .. })
    }
}

/// Told about every failed attempt and every refused row, for telemetry.
pub trait SinkObserver: Send + Sync {
    /// An attempt to write to `service` failed (it may be retried).
    fn write_failed(&self, service: &'static str);
    /// `service` refused `rows` rows for good.
    fn rows_refused(&self, service: &'static str, rows: u64);
}

/// Observes nothing (tools and tests).
#[derive(Debug, Default)]
pub struct Unobserved;

impl SinkObserver for Unobserved {
    fn write_failed(&self, _: &'static str) {}
    fn rows_refused(&self, _: &'static str, _: u64) {}
}

/// A dead letter with the partition it came from.
#[derive(Debug, Clone)]
pub struct SourcedLetter<'a> {
    /// The flush it came with (an index into the batch's flushes): its task's home shard
    /// keeps it (ADR 0022).
    pub flush: usize,
    /// Where it is filed.
    pub address: DeadLetterAddress,
    /// The letter.
    pub letter: &'a DeadLetter,
}

/// One attempt at making the flushes of every task durable, as the sinks see it.
pub struct FlushBatch<'a> {
    /// The flushes, one per task with something pending.
    pub flushes: &'a [Flush],
    /// When making them durable started (Unix ms): the moment latency is measured to.
    pub durable_at_ms: u64,
    /// How each write is retried.
    pub policy: RetryPolicy,
    /// Told about failures and refusals.
    pub observer: &'a dyn SinkObserver,
    /// Dead letters of events a sink refused, with the index of their flush.
    refused: Vec<(usize, DeadLetter)>,
    /// Dead letters of events a routing target did not take: (flush, target topic, letter).
    undelivered: Vec<(usize, DeadLetterAddress, DeadLetter)>,
    /// A sink that already keeps every dead letter durably, if any.
    letters_kept_by: Option<&'static str>,
    /// What each consumer was asked for, refused, and how many attempts failed.
    pub outcomes: Outcomes,
}

impl<'a> FlushBatch<'a> {
    /// A fresh attempt at `flushes`.
    pub fn new(
        flushes: &'a [Flush],
        durable_at_ms: u64,
        policy: RetryPolicy,
        observer: &'a dyn SinkObserver,
    ) -> Self {
        Self {
            flushes,
            durable_at_ms,
            policy,
            observer,
            refused: Vec::new(),
            undelivered: Vec::new(),
            letters_kept_by: None,
            outcomes: Outcomes::default(),
        }
    }

    /// Records that a sink refused event `event` of flush `flush` for good: it becomes a dead
    /// letter for the sinks after this one, and its task is replayed instead of committed.
    pub fn refuse_event(&mut self, flush: usize, event: usize, refused: &Refused) {
        let reason = match refused.refusal {
            Refusal::Rejected => DeadLetterReason::SinkRejected,
            Refusal::RetriesExhausted => DeadLetterReason::RetriesExhausted,
        };
        let rejection = Rejection {
            reason,
            error: refused.error.clone(),
            attempts: refused.attempts,
        };
        let letter = self.flushes[flush].archive[event].refused(rejection);
        self.refused.push((flush, letter));
    }

    /// Whether a sink refused the event at `offset` of flush `flush` (it is dead-lettered,
    /// and its task replayed, so it goes nowhere else).
    pub fn is_refused(&self, flush: usize, offset: i64) -> bool {
        self.refused
            .iter()
            .any(|(f, letter)| *f == flush && letter.offset == offset)
    }

    /// Records that routing target topic `topic` did not take event `event` of flush `flush`
    /// after every retry. Unlike [`FlushBatch::refuse_event`], the task is still committed
    /// (the event is counted and archived; only this target lacks it): the dead letter is
    /// addressed to the target's topic, so `salestalk dlq redrive` delivers it there, with
    /// partition -1 (the partitioner picks by tenant key, as delivery does) and an offset
    /// derived from the source address, the same on every replay of the flush and different
    /// for every event and target.
    pub fn undelivered(
        &mut self,
        flush: usize,
        event: usize,
        topic: &str,
        error: String,
        attempts: u32,
    ) {
        let source = &self.flushes[flush];
        let archived = &source.archive[event];
        let mut letter = archived.refused(Rejection {
            reason: DeadLetterReason::DeliveryFailed,
            error,
            attempts,
        });
        letter.offset = delivery_offset(&source.topic, source.partition, archived.offset);
        let address = DeadLetterAddress::Unassigned {
            topic: topic.to_string(),
            id: letter.offset,
        };
        self.undelivered.push((flush, address, letter));
    }

    /// Every dead letter of the batch: the tasks' own, then those of refused events, then
    /// those of undelivered events.
    pub fn dead_letters(&self) -> Vec<SourcedLetter<'_>> {
        fn sourced<'l>(index: usize, flush: &Flush, letter: &'l DeadLetter) -> SourcedLetter<'l> {
            SourcedLetter {
                flush: index,
                address: DeadLetterAddress::Read {
                    partition: SourcePartition::stored(&flush.topic, flush.partition),
                    offset: letter.offset,
                },
                letter,
            }
        }
        self.flushes
            .iter()
            .enumerate()
            .flat_map(|(i, flush)| flush.dead_letters.iter().map(move |l| sourced(i, flush, l)))
            .chain(
                self.refused
                    .iter()
                    .map(|(i, letter)| sourced(*i, &self.flushes[*i], letter)),
            )
            .chain(
                self.undelivered
                    .iter()
                    .map(|(flush, address, letter)| SourcedLetter {
                        flush: *flush,
                        address: address.clone(),
                        letter,
                    }),
            )
            .collect()
    }

    /// Records that `sink` has made every dead letter of the batch durable, so a later sink
    /// refusing one loses nothing.
    pub fn letters_kept_by(&mut self, sink: &'static str) {
        self.letters_kept_by = Some(sink);
    }

    /// The sink that keeps every dead letter already, if any.
    pub fn letters_kept(&self) -> Option<&'static str> {
        self.letters_kept_by
    }

    /// Indexes of the flushes whose tasks must be replayed (a sink refused one of their
    /// events), in order.
    pub fn to_replay(&self) -> BTreeSet<usize> {
        self.refused.iter().map(|(i, _)| *i).collect()
    }

    /// The flushes to commit: every one none of whose events was refused.
    pub fn to_commit(&self) -> Vec<&'a Flush> {
        let replay = self.to_replay();
        self.flushes
            .iter()
            .enumerate()
            .filter(|(i, _)| !replay.contains(i))
            .map(|(_, flush)| flush)
            .collect()
    }
}

/// The offset of the dead letter of the event at `topic`/`partition`@`offset` that a target
/// did not take: the first 63 bits of the SHA-256 of the source address, stable across
/// builds (a replayed flush writes the same address, which replaces the first) and unique per
/// event (two source topics' events at the same partition and offset do not collide).
pub fn delivery_offset(topic: &str, partition: i32, offset: i64) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{topic}/{partition}/{offset}"));
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 1) as i64
}

/// The sinks a flush goes through, in order.
pub struct FlushPlan {
    sinks: Vec<Box<dyn Sink>>,
}

impl FlushPlan {
    /// The plan of `sinks`, in the order given (checked beforehand by [`FlushOrder::parse`]).
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { sinks }
    }

    /// One attempt at making `batch` durable, sink after sink.
    pub async fn make_durable(&self, batch: &mut FlushBatch<'_>) -> Result<(), SinkError> {
        for sink in &self.sinks {
            sink.write(batch).await?;
        }
        Ok(())
    }
}

/// What health and telemetry call the services the sinks write to: defined with the sinks'
/// identities, so the sink modules take them from here and nothing here imports a sink.
pub mod services {
    /// ClickHouse (the archive, the dead-letter table, the window state).
    pub const CLICKHOUSE: &str = "clickhouse";
    /// The dead-letter topic.
    pub const DLQ_TOPIC: &str = "dlq_topic";
    /// The routing targets' brokers.
    pub const TARGETS: &str = "targets";
}

/// A built-in sink, as `sinks.flush_order` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// The raw event archive (ClickHouse `events_raw`); refuses single events.
    Archive,
    /// Every archived event to its routing targets' topics; an event a target does not take
    /// becomes a dead letter naming the target.
    Delivery,
    /// Every dead letter also as a Kafka record (`dlq.topic`).
    DeadLetterTopic,
    /// The dead-letter queue (ClickHouse `dead_letters`).
    DeadLetterTable,
    /// Window rows and checkpoints in one atomic insert (ClickHouse `window_state`).
    WindowState,
}

impl SinkKind {
    /// Every built-in sink, in the default order.
    pub const ALL: [SinkKind; 5] = [
        Self::Archive,
        Self::Delivery,
        Self::DeadLetterTopic,
        Self::DeadLetterTable,
        Self::WindowState,
    ];

    /// Its name in configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Archive => "archive",
            Self::Delivery => "delivery",
            Self::DeadLetterTopic => "dead_letter_topic",
            Self::DeadLetterTable => "dead_letter_table",
            Self::WindowState => "window_state",
        }
    }

    /// The service it writes to, as health and telemetry name it (`clickhouse`, `dlq_topic`,
    /// `targets`).
    pub const fn service(self) -> &'static str {
        match self {
            Self::Archive | Self::DeadLetterTable | Self::WindowState => services::CLICKHOUSE,
            Self::Delivery => services::TARGETS,
            Self::DeadLetterTopic => services::DLQ_TOPIC,
        }
    }

    /// The consumer it is, as latency and the consumer error rate name it
    /// (`salestalk_operators::flush::consumers`; each target is `target.<name>`).
    pub const fn consumer(self) -> &'static str {
        match self {
            Self::Archive => consumers::ARCHIVE,
            Self::Delivery => "target",
            Self::DeadLetterTopic => consumers::DLQ_TOPIC,
            Self::DeadLetterTable => consumers::DEAD_LETTERS,
            Self::WindowState => consumers::METRICS,
        }
    }

    /// Whether it keeps every dead letter (a flush order needs one such sink).
    pub fn keeps_dead_letters(self) -> bool {
        matches!(self, Self::DeadLetterTopic | Self::DeadLetterTable)
    }
}

/// `[sinks]`: the order a flush goes through the sinks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SinkSettings {
    /// The sinks, checked: the archive before the dead-letter sinks, the commit point last.
    pub flush_order: FlushOrder,
}

/// A checked `sinks.flush_order`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct FlushOrder(Vec<SinkKind>);

impl TryFrom<Vec<String>> for FlushOrder {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<Self, String> {
        Self::parse(&names).map_err(|problems| problems.join("; "))
    }
}

impl FlushOrder {
    /// The sinks named, in that order; or every problem with the list: unknown or repeated
    /// names, no dead-letter sink, an archive after a dead-letter sink (its refusals would
    /// have nowhere to go), or a list that does not end with `window_state` (the commit point
    /// must come after everything it commits).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, Vec<String>> {
        let mut kinds = Vec::new();
        let mut problems = Vec::new();
        for name in names {
            let name = name.as_ref();
            match SinkKind::ALL.into_iter().find(|k| k.name() == name) {
                None => problems.push(format!(
                    "unknown sink '{name}' (known: {})",
                    SinkKind::ALL.map(SinkKind::name).join(", ")
                )),
                Some(kind) if kinds.contains(&kind) => {
                    problems.push(format!("sink '{name}' is listed twice"));
                }
                Some(kind) => kinds.push(kind),
            }
        }
        if kinds.last() != Some(&SinkKind::WindowState) {
            problems.push("the last sink must be window_state (the commit point)".into());
        }
        match kinds.iter().position(|k| *k == SinkKind::Archive) {
            None => problems.push("archive is missing: valid events must be archived".into()),
            Some(archive) if kinds[..archive].iter().any(|k| k.keeps_dead_letters()) => {
                problems.push(
                    "archive must come before the dead-letter sinks, which take what it refuses"
                        .into(),
                );
            }
            Some(_) => {}
        }
        if let Some(delivery) = kinds.iter().position(|k| *k == SinkKind::Delivery) {
            let archive = kinds.iter().position(|k| *k == SinkKind::Archive);
            if archive.is_some_and(|archive| archive > delivery) {
                problems.push(
                    "delivery must come after archive: it delivers what the archive kept".into(),
                );
            }
            if kinds[..delivery].iter().any(|k| k.keeps_dead_letters()) {
                problems.push(
                    "delivery must come before the dead-letter sinks, which keep what a target \
                     did not take"
                        .into(),
                );
            }
        }
        if !kinds.iter().any(|k| k.keeps_dead_letters()) {
            problems.push(
                "no dead-letter sink: list dead_letter_table, dead_letter_topic or both".into(),
            );
        }
        if problems.is_empty() {
            Ok(Self(kinds))
        } else {
            Err(problems)
        }
    }

    /// The sinks, in order.
    pub fn kinds(&self) -> &[SinkKind] {
        &self.0
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|k| k.name()).collect()
    }
}

impl Default for FlushOrder {
    fn default() -> Self {
        Self(SinkKind::ALL.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_order_passes_its_own_checks() {
        let names = FlushOrder::default().names();
        assert_eq!(FlushOrder::parse(&names), Ok(FlushOrder::default()));
        assert_eq!(
            names,
            [
                "archive",
                "delivery",
                "dead_letter_topic",
                "dead_letter_table",
                "window_state"
            ]
        );
    }

    #[test]
    fn every_problem_with_an_order_is_listed() {
        let problems = FlushOrder::parse(&["window_state", "dead_letters", "window_state"])
            .expect_err("bad order");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("unknown sink 'dead_letters'"));
        assert!(problems[1].contains("listed twice"));
        assert!(problems[2].contains("archive is missing"));
        assert!(problems[3].contains("no dead-letter sink"));
        let problems = FlushOrder::parse(&["dead_letter_table", "archive", "window_state"])
            .expect_err("archive too late");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problems = FlushOrder::parse(&["archive", "window_state", "dead_letter_table"])
            .expect_err("commit too early");
        assert!(problems[0].contains("must be window_state"), "{problems:?}");
        assert!(FlushOrder::parse(&["archive", "dead_letter_table", "window_state"]).is_ok());
        let problems =
            FlushOrder::parse(&["delivery", "archive", "dead_letter_table", "window_state"])
                .expect_err("delivery before the archive");
        assert!(problems[0].contains("after archive"), "{problems:?}");
        let problems =
            FlushOrder::parse(&["archive", "dead_letter_table", "delivery", "window_state"])
                .expect_err("delivery after a dead-letter sink");
        assert!(
            problems[0].contains("before the dead-letter sinks"),
            "{problems:?}"
        );
    }
}
