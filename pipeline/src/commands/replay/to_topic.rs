//! `salestalk replay --to-topic`: the selection produced to a topic, page by page.

use super::*;

/// Sends the selection to `topic`, page by page.
pub(super) async fn send(
    settings: &crate::settings::Settings,
    topic: &str,
    selection: &ReplaySelection,
    record: &mut ReplayRecord,
) -> anyhow::Result<()> {
    let endpoint = &settings.clickhouse;
    let producer =
        producer::acknowledged(&settings.kafka).context("creating the Kafka producer")?;
    let clock = Instant::now();
    let mut cursor = ArchiveCursor::default();
    loop {
        let page = endpoint.replay_page(selection, &cursor, PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor.past(&last.tenant_id, last.event_id);
        let records = page.iter().map(|event| {
            FutureRecord::to(topic)
                .key(event.tenant_id.as_str())
                .payload(&event.raw[..])
                .headers(OwnedHeaders::new().insert(Header {
                    key: REPLAY_OF_HEADER,
                    value: Some(record.replay_id.as_str()),
                }))
        });
        let failed: Vec<_> = deliver(&producer, records)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if let Some(error) = failed.first() {
            bail!(
                "{} events of a page were not taken ({error}); {} sent so far: run it again",
                failed.len(),
                record.sent
            );
        }
        record.sent += page.len() as u64;
        progress(record, clock, "sent");
    }
    Ok(())
}
