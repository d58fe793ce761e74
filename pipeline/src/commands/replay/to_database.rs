//! `salestalk replay --to-database`: the selection's metrics recomputed into another database.

use super::*;

/// Recomputes the selection's metrics into `target`, page by page (each page one flush).
pub(super) async fn recompute(
    settings: &crate::settings::Settings,
    target: &Endpoint,
    selection: &ReplaySelection,
    record: &mut ReplayRecord,
) -> anyhow::Result<()> {
    let endpoint = &settings.clickhouse;
    let mut recomputation = Recomputation::new(&settings.corrector(), Purpose::Database)?;
    let clock = Instant::now();
    let mut cursor = ArchiveCursor::default();
    loop {
        let page = endpoint.replay_copies(selection, &cursor, PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor.past(&last.tenant_id, last.event_id);
        for event in &page {
            recomputation.feed(event);
        }
        let durable_at = salestalk_operators::time::now_ms();
        let flushes = recomputation.flush(durable_at as i64);
        write_flushes(target, &flushes, durable_at)
            .await
            .context("writing the recomputed metrics")?;
        record.sent = recomputation.events;
        progress(record, clock, "recomputed");
    }
    Ok(())
}
