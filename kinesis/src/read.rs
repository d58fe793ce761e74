//! Reading one shard: an iterator from where a reader stands, then pages of records. The
//! caller (the pipeline's Kinesis source) decides what a page means; this module only speaks
//! the service's protocol and says when a shard has nothing more to give.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;

use crate::KinesisError;

/// One record of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its partition key.
    pub partition_key: String,
    /// Its sequence number (decimal text, up to 129 digits).
    pub sequence: String,
    /// When the service took it (Unix ms), the broker time of the pipeline.
    pub arrival_ms: Option<i64>,
    /// The record's bytes.
    pub data: Vec<u8>,
}

/// What one GetRecords call gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The records, in shard order.
    pub records: Vec<Record>,
    /// How far the reader is behind the shard's newest record (ms), when the service says.
    pub millis_behind_latest: Option<i64>,
    /// Where the next read continues; `None` once a closed shard is read to its end.
    pub next_iterator: Option<String>,
}

impl Page {
    /// Whether the shard has nothing more for this reader now: its end when `closed` (a
    /// closed shard takes no records, so a read that is not behind and found nothing is at
    /// the end; some emulators never answer a null iterator there).
    pub fn at_end(&self, closed: bool) -> bool {
        self.next_iterator.is_none()
            || (closed && self.records.is_empty() && self.millis_behind_latest == Some(0))
    }
}

/// An iterator of `shard` right after the record `after` (its sequence number), or at the
/// oldest record kept when `after` is `None`.
pub async fn iterator(
    client: &Client,
    stream: &str,
    shard: &str,
    after: Option<&str>,
) -> Result<String, KinesisError> {
    let request = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard);
    let request = match after {
        Some(sequence) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(sequence),
        None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
    };
    let answer = request.send().await.map_err(KinesisError::of)?;
    answer
        .shard_iterator()
        .map(str::to_string)
        .ok_or_else(|| KinesisError::Refused(format!("no iterator for {stream}/{shard}")))
}

/// Why a read failed, as far as the reader cares.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The shard's read limit was exceeded: back off and read the same iterator again.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The iterator is older than five minutes: ask for a new one where the reader stands.
    #[error("iterator expired: {0}")]
    Expired(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] KinesisError),
}

/// One page of at most `limit` records from `iterator`.
pub async fn page(client: &Client, iterator: &str, limit: i32) -> Result<Page, ReadError> {
    let answer = client
        .get_records()
        .shard_iterator(iterator)
        .limit(limit)
        .send()
        .await
        .map_err(|error| {
            let code = error
                .as_service_error()
                .and_then(aws_sdk_kinesis::error::ProvideErrorMetadata::code)
                .map(str::to_string);
            let judged = KinesisError::of(error);
            match code.as_deref() {
                Some("ProvisionedThroughputExceededException") => {
                    ReadError::Throttled(judged.to_string())
                }
                Some("ExpiredIteratorException") => ReadError::Expired(judged.to_string()),
                _ => ReadError::Other(judged),
            }
        })?;
    let millis_behind_latest = answer.millis_behind_latest();
    let next_iterator = answer.next_shard_iterator().map(str::to_string);
    let records = answer
        .records
        .into_iter()
        .map(|record| Record {
            arrival_ms: record
                .approximate_arrival_timestamp
                .and_then(|at| at.to_millis().ok()),
            sequence: record.sequence_number,
            partition_key: record.partition_key,
            data: record.data.into_inner(),
        })
        .collect();
    Ok(Page {
        records,
        millis_behind_latest,
        next_iterator,
    })
}

/// At most one record of `shard` right after `after` (or its oldest, for `None`): whether a
/// reader standing there has anything to read, and whether a closed shard is at its end.
pub async fn peek(
    client: &Client,
    stream: &str,
    shard: &str,
    after: Option<&str>,
) -> Result<Page, KinesisError> {
    let iterator = iterator(client, stream, shard, after).await?;
    page(client, &iterator, 1)
        .await
        .map_err(|error| match error {
            ReadError::Other(error) => error,
            // Both pass with time: the caller asks again at its next round.
            ReadError::Throttled(text) | ReadError::Expired(text) => {
                KinesisError::Unavailable(format!("reading {stream}/{shard}: {text}"))
            }
        })
}
