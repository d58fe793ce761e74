//! Putting records, answered per record as `PutRecords` answers: a request holds at most 500
//! records and 5 MiB, and the records it could not take (throttled, an internal failure) are
//! sent again with backoff; whatever still fails is reported, record by record.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::KinesisError;

/// Most records in one `PutRecords`.
pub const MAX_RECORDS: usize = 500;
/// Most bytes (data and partition keys) in one `PutRecords`.
pub const MAX_BYTES: usize = 5 << 20;
/// Attempts per record, the first included.
const ATTEMPTS: u32 = 5;

/// One record to put.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Its partition key (the tenant): one tenant's records go to one shard, in order.
    pub partition_key: &'a str,
    /// Its data.
    pub data: &'a [u8],
}

/// Where a record landed, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored: its shard and sequence number.
    Stored {
        /// The shard id.
        shard: String,
        /// The sequence number.
        sequence: String,
    },
    /// Not stored after every attempt: the last error.
    Failed(String),
    /// Not stored after every attempt because the shard was over its throughput every time
    /// (`ProvisionedThroughputExceededException`, `KMSThrottlingException`): the last error.
    /// A capacity limit, not a fault: the same record later will be taken.
    Throttled(String),
}

/// The per-record error codes that mean "too fast", not "broken".
const THROTTLING_CODES: [&str; 2] = [
    "ProvisionedThroughputExceededException",
    "KMSThrottlingException",
];

/// Puts `records` to `stream`; one outcome per record, in order. Fails only when a request as
/// a whole is refused for good, or the service stays unavailable through every attempt.
pub async fn put_records(
    client: &Client,
    stream: &str,
    records: &[Record<'_>],
) -> Result<Vec<Outcome>, KinesisError> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < records.len() && end - start < MAX_RECORDS {
            let size = records[end].data.len() + records[end].partition_key.len();
            if end > start && bytes + size > MAX_BYTES {
                break;
            }
            bytes += size;
            end += 1;
        }
        put_chunk(client, stream, records, start..end, &mut outcomes).await?;
        start = end;
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("not attempted".into())))
        .collect())
}

async fn put_chunk(
    client: &Client,
    stream: &str,
    records: &[Record<'_>],
    range: std::ops::Range<usize>,
    outcomes: &mut [Option<Outcome>],
) -> Result<(), KinesisError> {
    let mut pending: Vec<usize> = range.collect();
    for attempt in 1..=ATTEMPTS {
        let entries = pending
            .iter()
            .map(|&i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(records[i].partition_key)
                    .data(Blob::new(records[i].data))
                    .build()
                    .map_err(|e| KinesisError::Refused(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answer = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(KinesisError::of);
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) if error.is_retryable() && attempt < ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let mut again = Vec::new();
        for (&i, result) in pending.iter().zip(answer.records()) {
            match (
                result.shard_id(),
                result.sequence_number(),
                result.error_code(),
            ) {
                (Some(shard), Some(sequence), None) => {
                    outcomes[i] = Some(Outcome::Stored {
                        shard: shard.to_string(),
                        sequence: sequence.to_string(),
                    });
                }
                (_, _, code) => {
                    let message = format!(
                        "{}: {}",
                        code.unwrap_or("no result"),
                        result.error_message().unwrap_or_default()
                    );
                    outcomes[i] = Some(if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
                        Outcome::Throttled(message)
                    } else {
                        Outcome::Failed(message)
                    });
                    again.push(i);
                }
            }
        }
        if again.is_empty() {
            return Ok(());
        }
        pending = again;
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
    Ok(())
}

/// The pause before retry `attempt`: 100 ms doubling, at most 3.2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(5))
}
