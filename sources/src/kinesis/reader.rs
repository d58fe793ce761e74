//! One shard's reader: a tokio task that pages through the shard from where its task's
//! checkpoint stands and hands each page, numbered with the task's own offsets, to the
//! source's channel. A full channel stops it (memory stays bounded); throttling and expired
//! iterators are handled here, so the source only sees records, ends and lag.

use std::sync::Arc;
use std::time::Duration;

use salestalk_kinesis::read::{self, ReadError, Record};
use salestalk_kinesis::{Client, KinesisSettings};
use tokio::sync::mpsc;

use crate::SourceObserver;
use crate::SourcePartition;

/// What a reader hands the source.
#[derive(Debug)]
pub struct Delivery {
    /// The shard.
    pub key: SourcePartition,
    /// Which start of the shard's reader sent it (older ones' pages are dropped).
    pub generation: u64,
    /// The offset of the first record.
    pub first_offset: i64,
    /// The records, in shard order.
    pub records: Vec<Record>,
    /// Whether the reader was caught up with the shard after this page.
    pub caught_up: bool,
    /// Whether the shard is closed and read to its end (the last delivery of the reader).
    pub ended: bool,
}

/// Where a reader starts, and what it knows of its shard.
#[derive(Debug, Clone)]
pub struct Start {
    /// The shard's task key.
    pub key: SourcePartition,
    /// Its stream and shard id.
    pub stream: String,
    /// The shard id.
    pub shard_id: String,
    /// Whether the shard is closed.
    pub closed: bool,
    /// The task's next offset.
    pub next_offset: i64,
    /// The sequence number of the last record the task read, if any.
    pub after: Option<String>,
    /// This start's generation.
    pub generation: u64,
}

/// Reads the shard until it ends or the source goes away.
pub async fn run(
    client: Client,
    settings: KinesisSettings,
    start: Start,
    out: mpsc::Sender<Delivery>,
    observer: Arc<dyn SourceObserver>,
) {
    let mut next_offset = start.next_offset;
    let mut after = start.after.clone();
    let mut iterator: Option<String> = None;
    let mut backoff = Backoff::default();
    // What the source was last told: an idle shard sends nothing more until that changes, so
    // a caught-up source's channel stays empty (what "caught up" checks).
    let mut reported_caught_up = false;
    let idle = Duration::from_millis(settings.idle_poll_ms);
    loop {
        let current = match &iterator {
            Some(current) => current.clone(),
            None => {
                match read::iterator(&client, &start.stream, &start.shard_id, after.as_deref())
                    .await
                {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::warn!(%error, shard = %start.shard_id, stream = %start.stream, "no shard iterator; retrying");
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                }
            }
        };
        let page = match read::page(&client, &current, settings.records_per_read).await {
            Ok(page) => page,
            Err(ReadError::Throttled(_)) => {
                observer.read_throttled(&start.key);
                iterator = Some(current);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
            Err(ReadError::Expired(_)) => {
                iterator = None;
                continue;
            }
            Err(ReadError::Other(error)) => {
                tracing::warn!(%error, shard = %start.shard_id, stream = %start.stream, "reading a shard; retrying");
                iterator = Some(current);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        backoff = Backoff::default();
        if let Some(behind) = page.millis_behind_latest {
            observer.millis_behind(&start.key, behind);
        }
        let ended = page.at_end(start.closed);
        let empty = page.records.is_empty();
        let caught_up = empty && page.millis_behind_latest.is_none_or(|behind| behind == 0);
        if let Some(last) = page.records.last() {
            after = Some(last.sequence.clone());
        }
        let delivery = Delivery {
            key: start.key.clone(),
            generation: start.generation,
            first_offset: next_offset,
            caught_up,
            ended,
            records: page.records,
        };
        next_offset += delivery.records.len() as i64;
        if !empty || ended || caught_up != reported_caught_up {
            reported_caught_up = caught_up;
            if out.send(delivery).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
        iterator = page.next_iterator;
        if empty {
            tokio::time::sleep(idle).await;
        }
    }
}

/// Exponential backoff from 100 ms to 5 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        now
    }
}
