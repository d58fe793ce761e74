//! The Kinesis source: every shard of the configured streams that this instance owns
//! (`kinesis.instances`/`instance_index`, a static assignment) is a partition with a task of
//! its own, read by a [`reader`] task and handed to the runtime like a Kafka partition.
//!
//! Offsets are the task's own count of the shard's records (a Kinesis sequence number is up
//! to 129 digits and not dense); the checkpoint keeps the last sequence number beside it, so
//! a restarted task asks for the records right after it and numbers them from its next
//! offset: a shard's records never change, so the numbering is the same every time. A
//! background discovery lists the shards every `kinesis.shard_refresh_ms` and starts a child
//! of a split or merge only once its parents are finished ([`lineage`]). See
//! `docs/kinesis.md`.

pub mod lineage;
mod reader;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use salestalk_kinesis::read;
use salestalk_kinesis::streams::shards;
use salestalk_kinesis::{Client, KinesisSettings};
use salestalk_operators::PublishPath;
use salestalk_operators::flush::Checkpoint;
use salestalk_operators::time::{self, now_ms};
use salestalk_store::Endpoint;
use salestalk_store::tables::consumer_group_lag::LagSample;
use salestalk_store::tables::window_state::task_name;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::lineage::{Book, Shard, partition_key};
use self::reader::{Delivery, Start};
use super::{Batch, Changes, Source, SourcePartition};
use crate::{SourceError, SourceObserver};

/// Pages held between the readers and the runtime: with `records_per_read` records each,
/// this bounds the source's memory (64 x 1,000 records of up to 1 MiB at worst, far less in
/// practice).
const CHANNEL_PAGES: usize = 64;

/// One shard's reader and what the source knows of it.
struct Reading {
    handle: JoinHandle<()>,
    generation: u64,
    /// The offset after the last record handed to the runtime.
    read_to: i64,
    /// Whether its last page found it caught up (nothing to read, not behind).
    caught_up: bool,
}

/// Reads the owned shards of the configured streams.
pub struct KinesisSource {
    client: Client,
    settings: KinesisSettings,
    book: Arc<Mutex<Book>>,
    deliveries: mpsc::Receiver<Delivery>,
    sender: mpsc::Sender<Delivery>,
    readings: HashMap<SourcePartition, Reading>,
    /// A delivery taken while waiting for one, not yet put in a batch.
    stash: Option<Delivery>,
    generation: u64,
    observer: Arc<dyn SourceObserver>,
    discovery: JoinHandle<()>,
}

impl Drop for KinesisSource {
    fn drop(&mut self) {
        self.discovery.abort();
        for reading in self.readings.values() {
            reading.handle.abort();
        }
    }
}

impl KinesisSource {
    /// Starts discovering the shards of `settings.streams`; `endpoint` holds the checkpoints
    /// of shards other instances read, and takes the lag samples, which name `instance`.
    pub async fn open(
        settings: &KinesisSettings,
        endpoint: Endpoint,
        observer: Arc<dyn SourceObserver>,
        instance: String,
    ) -> Result<Self, SourceError> {
        let client = salestalk_kinesis::client(settings).await;
        let book = Arc::new(Mutex::new(Book::default()));
        let discovery = tokio::spawn(discover(
            client.clone(),
            settings.clone(),
            endpoint,
            Arc::clone(&book),
            Arc::clone(&observer),
            instance,
        ));
        tracing::info!(
            streams = ?settings.streams,
            instance = settings.instance_index,
            of = settings.instances,
            "reading Kinesis"
        );
        let (sender, deliveries) = mpsc::channel(CHANNEL_PAGES);
        Ok(Self {
            client,
            settings: settings.clone(),
            book,
            deliveries,
            sender,
            readings: HashMap::new(),
            stash: None,
            generation: 0,
            observer,
            discovery,
        })
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    fn stop_reading(&mut self, key: &SourcePartition) {
        if let Some(reading) = self.readings.remove(key) {
            reading.handle.abort();
        }
    }

    /// Puts a delivery's records in `batch` (nothing of a reader that was stopped since).
    fn accept(&mut self, delivery: Delivery, batch: &mut Batch) {
        let Some(reading) = self.readings.get_mut(&delivery.key) else {
            return;
        };
        if reading.generation != delivery.generation {
            return;
        }
        let (topic, partition) = (delivery.key.topic(), delivery.key.number());
        let read_to = delivery.first_offset + delivery.records.len() as i64;
        for (i, record) in delivery.records.into_iter().enumerate() {
            // Each record's bytes are already a buffer of their own (the SDK decoded them from
            // base64): handed to the batch, not copied.
            batch.push_owned(
                topic,
                partition,
                delivery.first_offset + i as i64,
                record.arrival_ms,
                record.data,
                PublishPath::from_partition_key(&record.partition_key),
                Some(&record.sequence),
            );
        }
        reading.read_to = read_to;
        reading.caught_up = delivery.caught_up;
        if delivery.ended {
            let end = reading.read_to;
            let mut book = lock(&self.book);
            book.ended(&delivery.key, end);
            // The end may be durable already (its last records' flush landed before the
            // reader found the end): no later flush of the task would say so.
            book.settle();
        }
    }

    /// Waits for the next delivery (kept for [`KinesisSource::drain`]). Cancel-safe.
    pub async fn readable(&mut self) {
        if self.stash.is_none() {
            self.stash = self.deliveries.recv().await;
        }
    }

    /// Puts what the readers have delivered in `batch`, without waiting, until it holds `max`.
    pub fn drain(&mut self, batch: &mut Batch, max: usize) {
        while batch.len() < max {
            let next = match self.stash.take() {
                Some(delivery) => delivery,
                None => match self.deliveries.try_recv() {
                    Ok(delivery) => delivery,
                    Err(_) => return,
                },
            };
            self.accept(next, batch);
        }
    }
}

fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    // What is shared here (the book, a test's gauges) holds no invariant a panicking holder
    // could break halfway: keep using it.
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Source for KinesisSource {
    fn take_changes(&mut self) -> Changes {
        let changes = self.book().take_changes();
        for key in &changes.revoked {
            self.stop_reading(key);
        }
        changes
    }

    fn has_changes_pending(&self) -> bool {
        self.book().has_changes()
    }

    fn has_partitions(&self) -> bool {
        self.book().has_assigned()
    }

    async fn start(
        &mut self,
        partition: &SourcePartition,
        checkpoint: &Checkpoint,
    ) -> Result<bool, SourceError> {
        let Some(shard) = self.book().shard(partition).cloned() else {
            return Ok(false);
        };
        self.stop_reading(partition);
        self.generation += 1;
        let start = Start {
            key: partition.clone(),
            stream: shard.stream,
            shard_id: shard.shard_id,
            closed: shard.closed,
            next_offset: checkpoint.next_offset,
            after: Some(checkpoint.sequence.clone()).filter(|s| !s.is_empty()),
            generation: self.generation,
        };
        // The checkpoint is durable by definition: a shard whose end it already is settles
        // without a flush.
        self.book().durable(partition, checkpoint.next_offset);
        let handle = tokio::spawn(reader::run(
            self.client.clone(),
            self.settings.clone(),
            start,
            self.sender.clone(),
            Arc::clone(&self.observer),
        ));
        self.readings.insert(
            partition.clone(),
            Reading {
                handle,
                generation: self.generation,
                read_to: checkpoint.next_offset,
                caught_up: false,
            },
        );
        Ok(true)
    }

    fn predecessors(&self, partition: &SourcePartition) -> Vec<SourcePartition> {
        self.book().ancestors(partition)
    }

    /// Nothing to hold: no other instance takes a shard over while this one runs.
    type Hold = ();

    fn hold_partitions(&self) {}

    fn pause(&mut self, partitions: &[SourcePartition]) -> Result<(), SourceError> {
        for key in partitions {
            self.stop_reading(key);
        }
        Ok(())
    }

    /// Like Kafka's: until `max` records, the timeout, or a change of shards.
    async fn read(&mut self, batch: &mut Batch, max: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while batch.len() < max && !self.has_changes_pending() {
            self.drain(batch, max);
            if batch.len() >= max || self.has_changes_pending() {
                break;
            }
            if tokio::time::timeout_at(deadline, self.readable())
                .await
                .is_err()
            {
                break;
            }
        }
    }

    /// Nothing to tell the service (Kinesis keeps no consumer positions); a shard whose end
    /// is now durable is finished, and its task is taken back.
    fn commit(&mut self, positions: &[(SourcePartition, i64)]) {
        let mut book = self.book();
        for (key, position) in positions {
            book.durable(key, *position);
        }
        book.settle();
    }

    /// Records read so far: the lag gauge shows what is read and not yet durable (Kinesis
    /// does not say how many records a shard holds; `kinesis_millis_behind_latest` says how
    /// far behind its newest one the reader is).
    fn end(&self, partition: &SourcePartition) -> Option<i64> {
        self.readings.get(partition).map(|r| r.read_to)
    }

    fn caught_up(&self, positions: &[(SourcePartition, i64)]) -> bool {
        let book = self.book();
        book.has_listed()
            && !book.has_changes()
            && !book.has_waiting()
            && self.stash.is_none()
            && self.deliveries.is_empty()
            && self.readings.values().all(|r| r.caught_up)
            && positions.iter().all(|(key, position)| {
                self.readings
                    .get(key)
                    .is_none_or(|r| *position >= r.read_to)
            })
    }
}

/// Lists the shards every `shard_refresh_ms` and hands out the ones that may start; and
/// samples the shards being read into the lag table, for the SRE page.
async fn discover(
    client: Client,
    settings: KinesisSettings,
    endpoint: Endpoint,
    book: Arc<Mutex<Book>>,
    observer: Arc<dyn SourceObserver>,
    instance: String,
) {
    let every = Duration::from_millis(settings.shard_refresh_ms);
    let mut sampler = Sampler {
        instance,
        ..Sampler::default()
    };
    loop {
        if let Err(error) = discover_once(&client, &settings, &endpoint, &book).await {
            tracing::warn!(%error, "listing Kinesis shards; trying again");
        }
        let samples = sampler.sample(&lock(&book).assigned(), observer.as_ref(), now_ms());
        if let Err(error) = endpoint.record_lag(&samples).await {
            // A sample is a gauge: the next one says it again.
            tracing::debug!(%error, "storing Kinesis shard lag");
        }
        tokio::time::sleep(every).await;
    }
}

/// The consumer-group name Kinesis shards are sampled under in `consumer_group_lag`.
pub const LAG_GROUP: &str = "source.kinesis";

/// Turns the shards' gauges into lag samples: records read and not yet durable, how far
/// behind the newest record, and the reads throttled in the minute so far.
#[derive(Debug, Default)]
struct Sampler {
    /// Per shard: the minute, the throttle counter at its start, and at the last sample
    /// (reads throttled between two samples count in the second one's minute).
    minute_start: HashMap<SourcePartition, (u64, u64, u64)>,
    /// This instance, as the samples name it.
    instance: String,
}

impl Sampler {
    fn sample(
        &mut self,
        shards: &[SourcePartition],
        observer: &dyn SourceObserver,
        now_ms: u64,
    ) -> Vec<LagSample> {
        let minute = u64::from(time::minute_datetime(now_ms));
        shards
            .iter()
            .map(|key| {
                let gauges = observer.gauges(key);
                let throttled = gauges.throttled_reads;
                let start = self
                    .minute_start
                    .entry(key.clone())
                    .or_insert((minute, 0, 0));
                if start.0 != minute {
                    *start = (minute, start.2, start.2);
                }
                start.2 = throttled;
                LagSample {
                    minute: minute as u32,
                    consumer_group: LAG_GROUP.to_string(),
                    topic: key.topic().to_string(),
                    partition: key.number(),
                    lag_messages: gauges.unread.max(0) as u64,
                    lag_ms: gauges.millis_behind.max(0) as u64,
                    measured_at_ms: now_ms,
                    throttled: throttled - start.1,
                    instance: self.instance.clone(),
                }
            })
            .collect()
    }
}

async fn discover_once(
    client: &Client,
    settings: &KinesisSettings,
    endpoint: &Endpoint,
    book: &Mutex<Book>,
) -> Result<(), SourceError> {
    let mut listed = Vec::new();
    for (position, stream) in settings.streams.iter().enumerate() {
        for shard in shards(client, stream)
            .await
            .map_err(SourceError::kinesis(format!(
                "listing the shards of {stream}"
            )))?
        {
            let Some(key) = partition_key(stream, shard.shard_id()) else {
                tracing::warn!(shard = shard.shard_id(), %stream, "a shard id without a number: skipped");
                continue;
            };
            let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .filter_map(|id| partition_key(stream, id))
                .collect();
            let closed = shard
                .sequence_number_range()
                .is_some_and(|range| range.ending_sequence_number().is_some());
            let ours = settings.owns(position, key.number());
            listed.push((
                key,
                Shard {
                    stream: stream.clone(),
                    shard_id: shard.shard_id().to_string(),
                    parents,
                    closed,
                    ours,
                },
            ));
        }
    }
    lock(book).listed(listed);
    let to_probe = lock(book).to_probe();
    if !to_probe.is_empty() {
        let finished = probe(client, endpoint, book, &to_probe).await?;
        let mut book = lock(book);
        for key in finished {
            book.mark_finished(&key);
        }
    }
    let mut book = lock(book);
    let ready = book.ready();
    book.assign(ready);
    Ok(())
}

/// Which of the closed shards `keys` are finished: their durable checkpoint (anyone's) is
/// their end, as a read right after it shows.
async fn probe(
    client: &Client,
    endpoint: &Endpoint,
    book: &Mutex<Book>,
    keys: &BTreeSet<SourcePartition>,
) -> Result<Vec<SourcePartition>, SourceError> {
    let checkpoints: HashMap<String, Checkpoint> = endpoint
        .checkpoints()
        .await?
        .into_iter()
        .map(|(task, checkpoint, _)| (task, checkpoint))
        .collect();
    let mut finished = Vec::new();
    for key in keys {
        let Some(shard) = lock(book).shard(key).cloned() else {
            continue;
        };
        let after = checkpoints
            .get(&task_name(key.topic(), key.number()))
            .map(|c| c.sequence.clone())
            .filter(|s| !s.is_empty());
        let page = read::peek(client, &shard.stream, &shard.shard_id, after.as_deref())
            .await
            .map_err(SourceError::kinesis(format!(
                "probing {}/{}",
                shard.stream, shard.shard_id
            )))?;
        if page.records.is_empty() && page.at_end(shard.closed) {
            finished.push(key.clone());
        }
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PartitionGauges;

    /// Gauges set by hand.
    #[derive(Default)]
    struct Gauges(Mutex<PartitionGauges>);

    impl SourceObserver for Gauges {
        fn read_failed(&self) {}
        fn read_throttled(&self, _: &SourcePartition) {
            lock(&self.0).throttled_reads += 1;
        }
        fn millis_behind(&self, _: &SourcePartition, millis: i64) {
            lock(&self.0).millis_behind = millis;
        }
        fn gauges(&self, _: &SourcePartition) -> PartitionGauges {
            *lock(&self.0)
        }
    }

    #[test]
    fn samples_carry_the_minutes_throttled_reads_and_the_shards_lag() {
        let observer = Gauges(Mutex::new(PartitionGauges {
            throttled_reads: 4,
            unread: 20,
            millis_behind: 1_500,
        }));
        let key = SourcePartition::kinesis("s", 3);
        let mut sampler = Sampler::default();
        let minute = 1_796_050_800_000;
        let first = sampler.sample(std::slice::from_ref(&key), &observer, minute + 1_000);
        assert_eq!(
            (first[0].throttled, first[0].lag_ms, first[0].lag_messages),
            (4, 1_500, 20)
        );
        assert_eq!(first[0].consumer_group, LAG_GROUP);
        lock(&observer.0).throttled_reads += 2;
        let same_minute = sampler.sample(std::slice::from_ref(&key), &observer, minute + 30_000);
        assert_eq!(same_minute[0].throttled, 6, "the minute so far");
        observer.read_throttled(&key);
        let next_minute = sampler.sample(std::slice::from_ref(&key), &observer, minute + 61_000);
        assert_eq!(
            next_minute[0].throttled, 1,
            "a new minute counts from the last sample of the one before"
        );
        assert_eq!(next_minute[0].minute as u64 * 1000, minute + 60_000);
    }
}
