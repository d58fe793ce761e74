//! The configured sources as one (`pipeline.sources`): Kafka, Kinesis, or both feeding one
//! run. Partitions name their source (a Kinesis shard's topic is `kinesis:<stream>`, which
//! no Kafka topic can be), so each call goes to the source that owns the partition.

use std::sync::Arc;
use std::time::Duration;

use salestalk_kafka::fence::FenceHold;
use salestalk_operators::SourceKind;
use salestalk_operators::flush::Checkpoint;

use salestalk_kafka::KafkaSettings;
use salestalk_kinesis::KinesisSettings;
use salestalk_store::Endpoint;

use super::kafka::KafkaSource;
use super::kinesis::KinesisSource;
use super::{Batch, Changes, Source, SourcePartition};
use crate::{SourceError, SourceObserver};

/// What the sources are built from: their kinds (`pipeline.sources`), each kind's own
/// settings, and what they share.
pub struct SourceSettings<'a> {
    /// The kinds to read.
    pub kinds: &'a [SourceKind],
    /// `[kafka]`.
    pub kafka: &'a KafkaSettings,
    /// `[kinesis]`.
    pub kinesis: &'a KinesisSettings,
    /// Where the checkpoints are (Kinesis probes other instances' shards) and lag samples go.
    pub endpoint: &'a Endpoint,
    /// This process, as lag samples name it.
    pub instance: String,
}

/// Every configured source.
pub struct Sources {
    kafka: Option<KafkaSource>,
    kinesis: Option<KinesisSource>,
}

fn is_kinesis(partition: &SourcePartition) -> bool {
    partition.kind() == SourceKind::Kinesis
}

impl Sources {
    /// Opens each kind of source `settings.kinds` lists, from its own settings.
    pub async fn open(
        settings: SourceSettings<'_>,
        observer: &Arc<dyn SourceObserver>,
    ) -> Result<Self, SourceError> {
        let mut sources = Self {
            kafka: None,
            kinesis: None,
        };
        for kind in settings.kinds {
            match kind {
                SourceKind::Kafka => {
                    let source = KafkaSource::subscribe(settings.kafka, Arc::clone(observer))?;
                    sources.kafka = Some(source);
                }
                SourceKind::Kinesis => {
                    let source = KinesisSource::open(
                        settings.kinesis,
                        settings.endpoint.clone(),
                        Arc::clone(observer),
                        settings.instance.clone(),
                    )
                    .await?;
                    sources.kinesis = Some(source);
                }
            }
        }
        Ok(sources)
    }
}

/// Positions, split by source: (Kafka's, Kinesis').
type Split = (Vec<(SourcePartition, i64)>, Vec<(SourcePartition, i64)>);

fn split(positions: &[(SourcePartition, i64)]) -> Split {
    positions
        .iter()
        .cloned()
        .partition(|(key, _)| !is_kinesis(key))
}

impl Source for Sources {
    fn take_changes(&mut self) -> Changes {
        let mut changes = self
            .kafka
            .as_mut()
            .map(Source::take_changes)
            .unwrap_or_default();
        if let Some(kinesis) = self.kinesis.as_mut() {
            let more = kinesis.take_changes();
            changes.assigned.extend(more.assigned);
            changes.revoked.extend(more.revoked);
        }
        changes
    }

    fn has_changes_pending(&self) -> bool {
        self.kafka.as_ref().is_some_and(Source::has_changes_pending)
            || self
                .kinesis
                .as_ref()
                .is_some_and(Source::has_changes_pending)
    }

    fn has_partitions(&self) -> bool {
        self.kafka.as_ref().is_some_and(Source::has_partitions)
            || self.kinesis.as_ref().is_some_and(Source::has_partitions)
    }

    async fn start(
        &mut self,
        partition: &SourcePartition,
        checkpoint: &Checkpoint,
    ) -> Result<bool, SourceError> {
        match (is_kinesis(partition), &mut self.kafka, &mut self.kinesis) {
            (false, Some(kafka), _) => kafka.start(partition, checkpoint).await,
            (true, _, Some(kinesis)) => kinesis.start(partition, checkpoint).await,
            _ => Ok(false),
        }
    }

    fn predecessors(&self, partition: &SourcePartition) -> Vec<SourcePartition> {
        match &self.kinesis {
            Some(kinesis) if is_kinesis(partition) => kinesis.predecessors(partition),
            _ => Vec::new(),
        }
    }

    /// Kafka's: only a consumer group moves partitions between instances.
    type Hold = Option<FenceHold>;

    fn hold_partitions(&self) -> Option<FenceHold> {
        self.kafka.as_ref().map(Source::hold_partitions)
    }

    fn pause(&mut self, partitions: &[SourcePartition]) -> Result<(), SourceError> {
        let (kafka, kinesis): (Vec<SourcePartition>, Vec<SourcePartition>) =
            partitions.iter().cloned().partition(|key| !is_kinesis(key));
        if let Some(source) = self.kafka.as_mut() {
            source.pause(&kafka)?;
        }
        if let Some(source) = self.kinesis.as_mut() {
            source.pause(&kinesis)?;
        }
        Ok(())
    }

    /// Both at once: Kafka's read is cut short when Kinesis has records, and picked up
    /// again (what it had read is in the batch).
    async fn read(&mut self, batch: &mut Batch, max: usize, timeout: Duration) {
        match (&mut self.kafka, &mut self.kinesis) {
            (Some(kafka), None) => kafka.read(batch, max, timeout).await,
            (None, Some(kinesis)) => kinesis.read(batch, max, timeout).await,
            (Some(kafka), Some(kinesis)) => {
                let deadline = tokio::time::Instant::now() + timeout;
                loop {
                    kinesis.drain(batch, max);
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if batch.len() >= max || left.is_zero() || kinesis.has_changes_pending() {
                        return;
                    }
                    tokio::select! {
                        () = kafka.read(batch, max, left) => {
                            kinesis.drain(batch, max);
                            return;
                        }
                        () = kinesis.readable() => {}
                    }
                }
            }
            (None, None) => tokio::time::sleep(timeout).await,
        }
    }

    fn commit(&mut self, positions: &[(SourcePartition, i64)]) {
        let (kafka, kinesis) = split(positions);
        if let Some(source) = self.kafka.as_mut() {
            source.commit(&kafka);
        }
        if let Some(source) = self.kinesis.as_mut() {
            source.commit(&kinesis);
        }
    }

    fn end(&self, partition: &SourcePartition) -> Option<i64> {
        if is_kinesis(partition) {
            self.kinesis.as_ref()?.end(partition)
        } else {
            self.kafka.as_ref()?.end(partition)
        }
    }

    /// Each source answers for its own partitions, in `positions`' order; Kinesis answers
    /// from what it holds, so Kafka has the whole of `within`.
    fn read_to_end(&self, positions: &[(SourcePartition, i64)], within: Duration) -> Vec<bool> {
        let (kafka, kinesis) = split(positions);
        let mut kafka = (self.kafka.as_ref())
            .map_or_else(Vec::new, |s| s.read_to_end(&kafka, within))
            .into_iter();
        let mut kinesis = (self.kinesis.as_ref())
            .map_or_else(Vec::new, |s| s.read_to_end(&kinesis, within))
            .into_iter();
        positions
            .iter()
            .map(|(key, _)| {
                let next = if is_kinesis(key) {
                    kinesis.next()
                } else {
                    kafka.next()
                };
                next.unwrap_or(false)
            })
            .collect()
    }

    fn caught_up(&self, positions: &[(SourcePartition, i64)]) -> bool {
        let (kafka, kinesis) = split(positions);
        self.kafka.as_ref().is_none_or(|s| s.caught_up(&kafka))
            && self.kinesis.as_ref().is_none_or(|s| s.caught_up(&kinesis))
    }
}
