//! Making every task's pending results durable: the flushes go through the configured sinks
//! (ADR 0006 for what a refusal or an outage does), then the source hears which positions
//! are durable, and tasks with a refused event are replayed from their checkpoints.

use std::time::Instant;

use salestalk_operators::flush::Flush;
use salestalk_sinks::{FlushBatch, SinkError};

use super::{Runtime, now_ms};
use crate::sources::Source;
use crate::telemetry;

impl<S: Source> Runtime<'_, S> {
    /// Makes every task's pending results durable, then commits their positions. While a sink
    /// is down this holds everything and keeps trying (reading stays paused: backpressure);
    /// a signal then ends the run without committing, and a restart reads the data again.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        let durable_at = now_ms();
        let flushes: Vec<Flush> = self
            .workers
            .flush(self.tasks.values_mut().collect(), durable_at as i64);
        if flushes.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let policy = self.settings.retry.policy();
        let mut outage: Option<Instant> = None;
        let replay = loop {
            let mut batch = FlushBatch::new(&flushes, durable_at, policy, &*self.telemetry);
            match self.plan.make_durable(&mut batch).await {
                Ok(()) => break batch.to_replay(),
                Err(error @ SinkError::Fatal { .. }) => return Err(error.into()),
                Err(SinkError::Down { service, message }) => {
                    let since = *outage.get_or_insert_with(Instant::now);
                    self.telemetry.set_sink_up(service, false);
                    self.telemetry
                        .outage_seconds
                        .set(since.elapsed().as_secs_f64());
                    tracing::error!(
                        sink = service,
                        error = %message,
                        outage_s = since.elapsed().as_secs(),
                        "a sink is down: reading is paused until it is back"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(policy.jittered_backoff(u32::MAX)) => {}
                        name = self.signals.recv() => {
                            anyhow::bail!(
                                "{name} while {service} is down: stopping without committing; \
                                 the unflushed messages will be read again"
                            );
                        }
                    }
                }
            }
        };
        for sink in telemetry::SINKS {
            self.telemetry.set_sink_up(sink, true);
        }
        self.telemetry.outage_seconds.set(0.0);
        if let Some(since) = outage {
            tracing::info!(outage_s = since.elapsed().as_secs(), "sinks are back");
        }
        self.telemetry
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut durable = Vec::new();
        let mut to_replay = Vec::new();
        for (i, flush) in flushes.iter().enumerate() {
            let key = (flush.topic.clone(), flush.partition);
            if replay.contains(&i) {
                to_replay.push(key);
                continue;
            }
            self.tally.add(flush);
            self.observe(flush);
            durable.push((key, flush.checkpoint.next_offset));
        }
        self.source.commit(&durable);
        if !to_replay.is_empty() {
            self.replay(to_replay).await?;
        }
        let rows: usize = flushes.iter().map(|f| f.rows.len()).sum();
        tracing::debug!(
            tasks = flushes.len(),
            rows,
            ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
        Ok(())
    }
}
