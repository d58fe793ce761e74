//! Redriving dead letters: `salestalk dlq redrive`, and routing targets that heal by
//! themselves (`downstream::heal`).
//!
//! Redrive produces each entry's raw bytes back to the partition it was read from (keyed by
//! tenant, as producers do), so it takes the normal path through the same task: validated
//! again, deduplicated by `(tenantId, eventId)` against what that partition counted (an event
//! redriven twice, or redriven after it was counted, counts once), and counted or
//! dead-lettered again with its new offset. The default partitioner would choose by key,
//! which need not be the partition the message came from (a producer may pick partitions
//! itself, or the topic may have grown), and another partition's task would count it again.
//! An entry the ingest gateway refused never had a partition (it is stored as partition -1):
//! it goes where its tenant key leads, as the gateway would have sent it; one that routes
//! nowhere it may go (`ingest.refused`: no known type, or another tenant's event) is never
//! produced. Entries are marked `redriven` only once the broker has them; a redrive cut short
//! can be run again. An entry read from a Kinesis shard (topic `kinesis:<stream>`) is put
//! back to its stream with its tenant as partition key, as producers put it: it lands in the
//! shard that holds the tenant now, the same one or a child of it, whose task's dedup
//! continues its parents' (docs/kinesis.md).

use anyhow::Context;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use salestalk_kafka::producer::{self, deliver};
use salestalk_kinesis::put::{Outcome as KinesisOutcome, Record as KinesisRecord, put_records};
use salestalk_operators::time::now_ms;
use salestalk_operators::{SourceKind, SourcePartition};
use salestalk_sinks::clickhouse::ingest_ledger::NO_TOPIC;
use salestalk_sinks::kafka::dead_letter_topic::header;
use salestalk_store::dead_letter_queue::{DlqEntry, DlqFilter};

use crate::settings::Settings;

/// Header a redriven message carries: the id of the entry it came from.
pub const REDRIVE_OF_HEADER: &str = "salestalk.redrive-of";

/// What a redrive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Entries produced back to their topics and marked `redriven`.
    pub produced: usize,
    /// Entries the broker did not take (still pending).
    pub failed: usize,
}

/// Produces the pending entries matching `filter` back to their source topics.
pub async fn redrive(
    settings: &Settings,
    filter: &DlqFilter,
    dry_run: bool,
) -> anyhow::Result<(Vec<DlqEntry>, Redriven)> {
    redrive_noting(settings, filter, dry_run, "salestalk dlq redrive").await
}

/// [`redrive`], with `note` stored beside each entry marked redriven (who or what did it).
pub async fn redrive_noting(
    settings: &Settings,
    filter: &DlqFilter,
    dry_run: bool,
    note: &str,
) -> anyhow::Result<(Vec<DlqEntry>, Redriven)> {
    let endpoint = settings.clickhouse.clone();
    let filter = DlqFilter {
        status: Some("unresolved".into()),
        ..filter.clone()
    };
    let (entries, unroutable): (Vec<DlqEntry>, Vec<DlqEntry>) = endpoint
        .dlq_entries(&filter)
        .await?
        .into_iter()
        .partition(|entry| entry.topic != NO_TOPIC);
    if !unroutable.is_empty() {
        tracing::warn!(
            entries = unroutable.len(),
            "left pending: refused at ingest with no topic they may go to (discard them)"
        );
    }
    if dry_run || entries.is_empty() {
        return Ok((
            entries,
            Redriven {
                produced: 0,
                failed: 0,
            },
        ));
    }
    let mut raws = Vec::with_capacity(entries.len());
    for entry in &entries {
        let raw = endpoint
            .dlq_raw(&entry.address())
            .await?
            .unwrap_or_default();
        raws.push(raw);
    }
    let selected = entries.clone();
    let (kinesis, kafka): (Vec<usize>, Vec<usize>) = (0..entries.len())
        .partition(|i| entries[*i].address().source_kind() == Some(SourceKind::Kinesis));
    let mut delivered = redrive_to_kinesis(settings, &entries, &raws, &kinesis).await?;
    let (entries, raws): (Vec<DlqEntry>, Vec<Vec<u8>>) = kafka
        .iter()
        .map(|i| (entries[*i].clone(), raws[*i].clone()))
        .unzip();
    let mut failed = kinesis.len() - delivered.len();
    if entries.is_empty() {
        return finish_redrive(&endpoint, selected, delivered, failed, note).await;
    }
    let producer =
        producer::acknowledged(&settings.kafka).context("creating the Kafka producer")?;
    let ids: Vec<String> = entries.iter().map(DlqEntry::id).collect();
    // Collected before the await: a lazy iterator of borrowing closures held across it would
    // keep the future from being `Send` (the healing runs it on a spawned task).
    let records: Vec<FutureRecord<'_, str, [u8]>> = entries
        .iter()
        .zip(&raws)
        .zip(&ids)
        .map(|((entry, raw), id)| {
            let record = FutureRecord::to(&entry.topic)
                .partition(entry.partition)
                .payload(&raw[..])
                .headers(redrive_headers(id, entry));
            if entry.tenant_id.is_empty() {
                record
            } else {
                record.key(entry.tenant_id.as_str())
            }
        })
        .collect();
    let outcomes = deliver(&producer, records).await;
    for (entry, outcome) in entries.iter().zip(outcomes) {
        match outcome {
            Ok(()) => delivered.push(entry.clone()),
            Err(error) => {
                failed += 1;
                tracing::warn!(id = %entry.id(), %error, "not redriven");
            }
        }
    }
    finish_redrive(&endpoint, selected, delivered, failed, note).await
}

/// Marks the `delivered` entries (of those `selected`) redriven.
async fn finish_redrive(
    endpoint: &salestalk_store::Endpoint,
    selected: Vec<DlqEntry>,
    delivered: Vec<DlqEntry>,
    failed: usize,
    note: &str,
) -> anyhow::Result<(Vec<DlqEntry>, Redriven)> {
    endpoint
        .dlq_resolve(&delivered, "redriven", note, now_ms())
        .await
        .context("marking entries redriven")?;
    let produced = delivered.len();
    Ok((selected, Redriven { produced, failed }))
}

/// Puts the entries at `which` (read from Kinesis shards) back to their streams; returns
/// the ones the service stored.
async fn redrive_to_kinesis(
    settings: &Settings,
    entries: &[DlqEntry],
    raws: &[Vec<u8>],
    which: &[usize],
) -> anyhow::Result<Vec<DlqEntry>> {
    let mut delivered = Vec::new();
    if which.is_empty() {
        return Ok(delivered);
    }
    let client = salestalk_kinesis::client(&settings.kinesis).await;
    let mut by_stream: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for i in which {
        if let Some(stream) = SourcePartition::stream_of(&entries[*i].topic) {
            by_stream.entry(stream).or_default().push(*i);
        }
    }
    for (stream, members) in by_stream {
        let records: Vec<KinesisRecord<'_>> = members
            .iter()
            .map(|i| KinesisRecord {
                // A letter with no readable tenant has no key of its own (a key may not be
                // empty); one shared key keeps them in one shard.
                partition_key: [&entries[*i].tenant_id, &entries[*i].event_id]
                    .into_iter()
                    .find(|key| !key.is_empty())
                    .map_or("unreadable", String::as_str),
                data: &raws[*i],
            })
            .collect();
        let outcomes = put_records(&client, stream, &records)
            .await
            .with_context(|| format!("putting to {stream}"))?;
        for (i, outcome) in members.iter().zip(outcomes) {
            match outcome {
                KinesisOutcome::Stored { .. } => delivered.push(entries[*i].clone()),
                KinesisOutcome::Failed(error) | KinesisOutcome::Throttled(error) => {
                    tracing::warn!(id = %entries[*i].id(), %error, "not redriven");
                }
            }
        }
    }
    Ok(delivered)
}

/// A redriven record's headers: the entry it redrives and, when known, the event's id, type
/// and tenant, as delivery to a routing target sets them (an undelivered event's redrive is
/// its delivery).
fn redrive_headers(id: &str, entry: &DlqEntry) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(4).insert(Header {
        key: REDRIVE_OF_HEADER,
        value: Some(id),
    });
    for (key, value) in [
        (header::EVENT_ID, &entry.event_id),
        (header::EVENT_TYPE, &entry.event_type),
        (header::TENANT, &entry.tenant_id),
    ] {
        if !value.is_empty() {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
    }
    headers
}
