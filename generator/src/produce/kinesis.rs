//! Sending generated traffic to Kinesis: one stream per event domain, partition key = tenant,
//! in `PutRecords` requests of up to 500 records, each record's result counted.

use std::collections::BTreeMap;

use salestalk_kinesis::KinesisSettings;
use salestalk_kinesis::put::{MAX_RECORDS, Outcome, Record, put_records};
use salestalk_kinesis::streams::create;

use super::{ProduceError, ProduceReport};
use crate::{Emitted, Generator};

/// Puts every message of `generator` to its domain's stream; a stream that does not exist
/// yet is created with `shards` shards (local traffic needs no set-up step).
pub async fn put(
    settings: &KinesisSettings,
    shards: i32,
    generator: &mut Generator,
) -> Result<ProduceReport, ProduceError> {
    let client = salestalk_kinesis::client(settings).await;
    let mut created = std::collections::BTreeSet::new();
    let mut report = ProduceReport::default();
    // Per stream, the records not sent yet: (tenant, bytes).
    let mut pending: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for Emitted {
        event_type,
        tenant_id,
        bytes,
        ..
    } in generator.by_ref()
    {
        let stream = settings.stream_for(event_type.domain());
        if created.insert(stream.clone()) {
            create(&client, &stream, shards)
                .await
                .map_err(|source| ProduceError::Kinesis {
                    what: format!("creating the stream {stream}"),
                    source,
                })?;
        }
        let records = pending.entry(stream.clone()).or_default();
        records.push((tenant_id, bytes));
        report.submitted += 1;
        if records.len() >= MAX_RECORDS {
            let full = std::mem::take(records);
            send(&client, &stream, &full, &mut report).await?;
        }
    }
    for (stream, records) in pending {
        send(&client, &stream, &records, &mut report).await?;
    }
    Ok(report)
}

async fn send(
    client: &salestalk_kinesis::Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
    report: &mut ProduceReport,
) -> Result<(), ProduceError> {
    if records.is_empty() {
        return Ok(());
    }
    let batch: Vec<Record<'_>> = records
        .iter()
        .map(|(tenant, bytes)| Record {
            partition_key: tenant,
            data: bytes,
        })
        .collect();
    let outcomes = put_records(client, stream, &batch)
        .await
        .map_err(|source| ProduceError::Kinesis {
            what: format!("putting records to {stream}"),
            source,
        })?;
    for outcome in outcomes {
        match outcome {
            Outcome::Stored { .. } => report.delivered += 1,
            Outcome::Failed(error) | Outcome::Throttled(error) => {
                report.failed += 1;
                tracing::warn!(stream, %error, "a record was not stored");
            }
        }
    }
    Ok(())
}
