//! Streams: creating one (idempotent, waiting until it is active), listing its shards,
//! splitting one, reading one back whole: for local set-up and tests; production streams are
//! an operator's.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{Shard, StreamStatus};

use crate::KinesisError;

/// Creates `stream` with `shards` shards unless it exists, and waits until it is active.
pub async fn create(client: &Client, stream: &str, shards: i32) -> Result<(), KinesisError> {
    match client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
    {
        Ok(_) => {}
        Err(error) => {
            let exists = error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception());
            if !exists {
                return Err(KinesisError::of(error));
            }
        }
    }
    wait_active(client, stream).await
}

/// Waits until `stream` is active (30 s at most).
async fn wait_active(client: &Client, stream: &str) -> Result<(), KinesisError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(KinesisError::of)?;
        let active = described
            .stream_description_summary()
            .is_some_and(|s| *s.stream_status() == StreamStatus::Active);
        if active {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(KinesisError::Unavailable(format!(
                "stream {stream} is not active after 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every shard of `stream`, open and closed, in the order the service lists them.
pub async fn shards(client: &Client, stream: &str) -> Result<Vec<Shard>, KinesisError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let request = match &next {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await.map_err(KinesisError::of)?;
        out.extend(page.shards().iter().cloned());
        match page.next_token() {
            Some(token) => next = Some(token.to_string()),
            None => return Ok(out),
        }
    }
}

/// One record as read back: its shard, partition key, sequence number, arrival and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// The shard id.
    pub shard: String,
    /// The partition key.
    pub partition_key: String,
    /// The sequence number.
    pub sequence: String,
    /// When the service took it (Unix ms).
    pub arrival_ms: Option<i64>,
    /// The data.
    pub data: Vec<u8>,
}

/// Every record of every shard of `stream`, from the oldest kept, shard by shard in the
/// order listed (parents before their children): a shard is read until a read returns
/// nothing and `MillisBehindLatest` is 0, or its end.
pub async fn read_from_start(
    client: &Client,
    stream: &str,
) -> Result<Vec<ReadRecord>, KinesisError> {
    let mut out = Vec::new();
    for shard in shards(client, stream).await? {
        let shard_id = shard.shard_id().to_string();
        let mut iterator = Some(crate::read::iterator(client, stream, &shard_id, None).await?);
        while let Some(current) = iterator {
            let page = crate::read::page(client, &current, 10_000)
                .await
                .map_err(|e| KinesisError::Unavailable(e.to_string()))?;
            let caught_up = page.records.is_empty() && page.millis_behind_latest == Some(0);
            iterator = if caught_up { None } else { page.next_iterator };
            out.extend(page.records.into_iter().map(|record| ReadRecord {
                shard: shard_id.clone(),
                partition_key: record.partition_key,
                sequence: record.sequence,
                arrival_ms: record.arrival_ms,
                data: record.data,
            }));
        }
    }
    Ok(out)
}

/// Splits `shard` of `stream` at the middle of its hash-key range (two children; the shard
/// closes), and waits until the stream is active again.
pub async fn split(client: &Client, stream: &str, shard: &str) -> Result<(), KinesisError> {
    let listed = shards(client, stream).await?;
    let range = listed
        .iter()
        .find(|s| s.shard_id() == shard)
        .and_then(|s| s.hash_key_range())
        .ok_or_else(|| KinesisError::Refused(format!("no shard {shard} in {stream}")))?;
    let parse = |text: &str| {
        text.parse::<u128>()
            .map_err(|_| KinesisError::Refused(format!("hash key {text} is not a number")))
    };
    let (low, high) = (
        parse(range.starting_hash_key())?,
        parse(range.ending_hash_key())?,
    );
    let middle = low + (high - low) / 2 + 1;
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard)
        .new_starting_hash_key(middle.to_string())
        .send()
        .await
        .map_err(KinesisError::of)?;
    wait_active(client, stream).await
}
