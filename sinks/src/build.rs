//! Each sink of the flush order built from its own settings, as Vector's `SinkConfig::build`
//! does: [`SinkKind::build`] is the one place a kind becomes a sink, and [`FlushPlan::build`]
//! the one place the order becomes a plan.

use std::sync::Arc;

use rdkafka::error::KafkaError;
use salestalk_kafka::{KafkaSettings, admin};
use salestalk_operators::routing::{RoutingSettings, RoutingTable};
use salestalk_store::Endpoint;

use crate::clickhouse::{Archive, DeadLetterTable, WindowState};
use crate::kafka::{AwaitingCommit, DeadLetterTopic, Delivery, DlqSettings};
use crate::sink::{FlushOrder, FlushPlan, Sink, SinkKind};

/// What the sinks are built from: each kind takes its own part.
pub struct SinkBuild<'a> {
    /// `[clickhouse]`: the archive, the dead-letter table, the window state.
    pub endpoint: &'a Endpoint,
    /// `[kafka]`: the dead-letter topic's and the targets' producers.
    pub kafka: &'a KafkaSettings,
    /// `[dlq]`: the dead-letter topic.
    pub dlq: &'a DlqSettings,
    /// `[routing]`: the targets' delivery timeout.
    pub routing: &'a RoutingSettings,
    /// The compiled routing table: which targets exist.
    pub table: &'a RoutingTable,
    /// `pipeline.max_flush_rows`: most records one commit insert carries.
    pub max_flush_rows: usize,
    /// Where delivery notes records for the consumer groups' commit latency, if watched.
    pub awaiting_commit: Option<Arc<AwaitingCommit>>,
}

/// Why the flush order could not be built; none goes away by retrying (configuration).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A Kafka producer could not be created from `[kafka]`.
    #[error("creating the {sink} producer: {source}")]
    Producer {
        /// The sink.
        sink: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// `dlq.topic` names a topic the broker says does not exist.
    #[error(
        "the dead-letter topic '{0}' does not exist: create it (deploy/services/up does) or \
         set dlq.topic"
    )]
    MissingDeadLetterTopic(String),
    /// No sink keeps dead letters.
    #[error(
        "no dead-letter sink: sinks.flush_order lists only dead_letter_topic and dlq.topic is empty"
    )]
    NoDeadLetterSink,
}

impl BuildError {
    /// Whether building again may succeed: never (the settings must change).
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl SinkKind {
    /// The sink of this kind, built from its settings; `None` when they leave it out (no
    /// downstream target to deliver to, no `dlq.topic`). A missing target topic is the
    /// target's outage, not a reason to stop: its events become dead letters naming it.
    pub fn build(self, with: &SinkBuild<'_>) -> Result<Option<Box<dyn Sink>>, BuildError> {
        let endpoint = with.endpoint.clone();
        let sink: Box<dyn Sink> = match self {
            Self::Archive => Box::new(Archive::new(endpoint)),
            Self::DeadLetterTable => Box::new(DeadLetterTable::new(endpoint)),
            Self::WindowState => {
                Box::new(WindowState::new(endpoint).with_max_rows(with.max_flush_rows))
            }
            Self::Delivery => {
                let downstream: Vec<String> = with
                    .table
                    .downstream()
                    .map(|(_, _, t)| t.to_string())
                    .collect();
                if downstream.is_empty() {
                    tracing::info!("routing has no downstream targets: nothing is delivered");
                    return Ok(None);
                }
                match admin::missing_topics(with.kafka, &downstream) {
                    Ok(missing) if !missing.is_empty() => tracing::warn!(
                        topics = %missing.join(", "),
                        "routing targets' topics do not exist: their events will be dead \
                         letters naming them until the topics are created"
                    ),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "could not look up the routing targets' topics")
                    }
                }
                let sink = Delivery::new(with.kafka, with.routing, with.table.clone()).map_err(
                    |source| BuildError::Producer {
                        sink: self.name(),
                        source,
                    },
                )?;
                match &with.awaiting_commit {
                    Some(awaiting) => Box::new(sink.awaiting_commits(Arc::clone(awaiting))),
                    None => Box::new(sink),
                }
            }
            Self::DeadLetterTopic => {
                let Some(topic) = with.dlq.topic() else {
                    tracing::info!("dlq.topic is empty: dead letters go to the table only");
                    return Ok(None);
                };
                // A broker too busy to answer in time is not a reason to stop; only a topic the
                // broker says is missing is.
                let missing = admin::missing_topics(with.kafka, &[topic.to_string()])
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, %topic, "could not look up the dead-letter topic");
                        Vec::new()
                    });
                if !missing.is_empty() {
                    return Err(BuildError::MissingDeadLetterTopic(topic.to_string()));
                }
                let sink = DeadLetterTopic::new(with.kafka, topic).map_err(|source| {
                    BuildError::Producer {
                        sink: self.name(),
                        source,
                    }
                })?;
                Box::new(sink)
            }
        };
        Ok(Some(sink))
    }
}

impl FlushPlan {
    /// The sinks `order` names, each built from its settings, in that order.
    pub fn build(order: &FlushOrder, with: &SinkBuild<'_>) -> Result<Self, BuildError> {
        // Leaving `delivery` out of the flush order is how a deployment without downstream
        // consumers turns the default table's targets off; said once, loudly.
        let targets = with.table.downstream().count();
        if targets > 0 && !order.kinds().contains(&SinkKind::Delivery) {
            tracing::warn!(
                targets,
                "sinks.flush_order lacks 'delivery': the routing targets receive nothing"
            );
        }
        let mut sinks = Vec::new();
        for kind in order.kinds() {
            sinks.extend(kind.build(with)?);
        }
        if !sinks.iter().any(|sink| sink.kind().keeps_dead_letters()) {
            return Err(BuildError::NoDeadLetterSink);
        }
        Ok(Self::new(sinks))
    }
}
