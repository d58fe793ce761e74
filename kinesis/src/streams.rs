//! Streams: creating one (idempotent, waiting until it is active) and listing its shards, for
//! local set-up and tests; production streams are an operator's.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType, StreamStatus};

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

/// One record as read back: its shard, partition key, sequence number and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// The shard id.
    pub shard: String,
    /// The partition key.
    pub partition_key: String,
    /// The sequence number.
    pub sequence: String,
    /// The data.
    pub data: Vec<u8>,
}

/// Every record of every shard of `stream`, from the oldest kept, shard by shard: a shard is
/// read until a read returns nothing and `MillisBehindLatest` is 0.
pub async fn read_from_start(
    client: &Client,
    stream: &str,
) -> Result<Vec<ReadRecord>, KinesisError> {
    let mut out = Vec::new();
    for shard in shards(client, stream).await? {
        let shard_id = shard.shard_id().to_string();
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(KinesisError::of)?
            .shard_iterator()
            .map(str::to_string);
        while let Some(current) = iterator {
            let page = client
                .get_records()
                .shard_iterator(&current)
                .limit(10_000)
                .send()
                .await
                .map_err(KinesisError::of)?;
            for record in page.records() {
                out.push(ReadRecord {
                    shard: shard_id.clone(),
                    partition_key: record.partition_key().to_string(),
                    sequence: record.sequence_number().to_string(),
                    data: record.data().as_ref().to_vec(),
                });
            }
            let caught_up = page.records().is_empty() && page.millis_behind_latest() == Some(0);
            iterator = if caught_up {
                None
            } else {
                page.next_shard_iterator().map(str::to_string)
            };
        }
    }
    Ok(out)
}
