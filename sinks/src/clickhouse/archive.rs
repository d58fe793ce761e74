//! The raw archive (`events_raw`): every valid event with its raw bytes, keyed by `eventId`
//! so a replay's second copy is merged away. Events ClickHouse refuses are isolated and
//! handed back to the batch as dead letters.

use clickhouse::Row;
use salestalk_store::codec::datetime;
use serde::Serialize;

use super::insert::insert_isolating;
use crate::sink::{FlushBatch, Sink, SinkFuture, SinkKind};

#[derive(Debug, Clone, Row, Serialize)]
struct ArchiveRecord<'a> {
    tenant_id: &'a str,
    event_id: String,
    event_type: &'a str,
    event_version: &'a str,
    source: &'a str,
    timestamp: u32,
    timestamp_ms: i64,
    window_start: u32,
    clock_skewed: u8,
    user_id: &'a str,
    session_id: &'a str,
    correlation_id: &'a str,
    causation_id: String,
    topic: &'a str,
    partition: i32,
    offset: i64,
    broker_time: u32,
    durable_at_ms: u64,
    raw: &'a serde_bytes::Bytes,
    late: u8,
}

/// The raw archive sink.
pub struct Archive {
    endpoint: salestalk_store::Endpoint,
}

impl Archive {
    /// The archive in `endpoint`'s database.
    pub fn new(endpoint: salestalk_store::Endpoint) -> Self {
        Self { endpoint }
    }
}

impl Sink for Archive {
    fn kind(&self) -> SinkKind {
        SinkKind::Archive
    }

    fn write<'a>(&'a self, batch: &'a mut FlushBatch<'_>) -> SinkFuture<'a> {
        Box::pin(async move {
            let flushes = batch.flushes;
            let durable_at_ms = batch.durable_at_ms;
            let mut origin = Vec::new();
            let mut records = Vec::new();
            for (f, flush) in flushes.iter().enumerate() {
                for (e, event) in flush.archive.iter().enumerate() {
                    origin.push((f, e));
                    records.push(ArchiveRecord {
                        tenant_id: &event.tenant_id,
                        event_id: event.event_id.to_string(),
                        event_type: event.event_type.as_str(),
                        event_version: &event.event_version,
                        source: &event.source,
                        timestamp: datetime(event.timestamp_ms.div_euclid(1000)),
                        timestamp_ms: event.timestamp_ms,
                        window_start: datetime(event.window_start),
                        clock_skewed: u8::from(event.clock_skewed),
                        user_id: &event.user_id,
                        session_id: &event.session_id,
                        correlation_id: &event.correlation_id,
                        causation_id: event
                            .causation_id
                            .map(|id| id.to_string())
                            .unwrap_or_default(),
                        topic: &flush.topic,
                        partition: flush.partition,
                        offset: event.offset,
                        broker_time: datetime(event.broker_ms.div_euclid(1000)),
                        durable_at_ms,
                        raw: serde_bytes::Bytes::new(&event.raw),
                        late: u8::from(event.late),
                    });
                }
            }
            let isolated = insert_isolating::<ArchiveRecord<'_>>(
                &self.endpoint,
                "events_raw",
                &records,
                self,
                batch,
            )
            .await;
            batch
                .outcomes
                .attempts_failed(self.consumer(), isolated.failed_attempts);
            let refused = isolated.refused?;
            for record in &records {
                batch.outcomes.attempted(self.consumer(), record.tenant_id);
            }
            for refused in refused {
                let (flush, event) = origin[refused.index];
                batch
                    .outcomes
                    .failed(self.consumer(), records[refused.index].tenant_id);
                batch.refuse_event(flush, event, &refused);
            }
            Ok(())
        })
    }
}
