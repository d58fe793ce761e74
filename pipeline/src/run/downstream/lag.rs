//! Consumer-group lag of the routing targets' readers: every `routing.consumer_watch_interval_ms`
//! each configured group's committed offsets on its target's topic are compared with the
//! partitions' ends (messages behind) and the oldest uncommitted message's broker time (time
//! behind), and stored as one sample per partition (`consumer_group_lag`).

use std::sync::Arc;
use std::time::Duration;

use salestalk_kafka::admin::{GroupOffsets, LagProbe};
use salestalk_operators::time;
use salestalk_store::Endpoint;
use salestalk_store::tables::consumer_group_lag::LagSample;

use crate::settings::Settings;
use crate::telemetry::{GroupLabels, Telemetry};

/// The samples `probe` takes as of `now_ms`.
pub async fn sample(probe: &Arc<LagProbe>, now_ms: u64) -> anyhow::Result<Vec<LagSample>> {
    let owned = Arc::clone(probe);
    let lags = tokio::task::spawn_blocking(move || owned.sample()).await??;
    Ok(lags
        .into_iter()
        .map(|lag| LagSample {
            minute: time::minute_datetime(now_ms),
            consumer_group: probe.group().to_string(),
            topic: probe.topic().to_string(),
            partition: lag.partition,
            lag_messages: lag.messages.max(0) as u64,
            lag_ms: lag
                .oldest_unread_ms
                .map_or(0, |at| (now_ms as i64 - at).max(0) as u64),
            measured_at_ms: now_ms,
            throttled: 0,
            instance: String::new(),
        })
        .collect())
}

/// Samples every (group, topic) of `groups` (each group with its offsets client) every
/// `interval_ms`, storing what it finds and showing it as gauges (for the Prometheus rule,
/// which needs no ClickHouse). Each pair's probe is made once (`LagProbe`: its clients live
/// as long as the run).
pub fn schedule(
    settings: &Settings,
    groups: &[(Arc<GroupOffsets>, String)],
    interval_ms: u64,
    telemetry: Arc<Telemetry>,
) {
    let probes: Vec<Arc<LagProbe>> = groups
        .iter()
        .filter_map(|(offsets, topic)| {
            match LagProbe::new(&settings.kafka, Arc::clone(offsets), topic) {
                Ok(probe) => Some(Arc::new(probe)),
                Err(error) => {
                    tracing::warn!(%error, group = offsets.group(), topic, "cannot sample the group's lag");
                    None
                }
            }
        })
        .collect();
    if probes.is_empty() {
        return;
    }
    let endpoint: Endpoint = settings.clickhouse.clone();
    tokio::spawn(async move {
        loop {
            let now_ms = time::now_ms();
            let mut samples = Vec::new();
            for probe in &probes {
                match sample(probe, now_ms).await {
                    Ok(found) => {
                        show(&telemetry, probe.group(), probe.topic(), &found);
                        samples.extend(found);
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        group = probe.group(),
                        topic = probe.topic(),
                        "could not sample a group's lag"
                    ),
                }
            }
            if let Err(error) = endpoint.record_lag(&samples).await {
                // Samples are a gauge: the next one replaces what this one would have said.
                tracing::warn!(%error, "could not store consumer-group lag");
            }
            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        }
    });
}

/// Sets the group's gauges from one round of samples: messages summed over the partitions,
/// the oldest uncommitted message's age the largest of them.
fn show(telemetry: &Telemetry, group: &str, topic: &str, samples: &[LagSample]) {
    let labels = GroupLabels {
        group: group.to_string(),
        topic: topic.to_string(),
    };
    let messages: u64 = samples.iter().map(|s| s.lag_messages).sum();
    let oldest_ms = samples.iter().map(|s| s.lag_ms).max().unwrap_or(0);
    telemetry
        .consumer_group_lag_messages
        .get_or_create(&labels)
        .set(i64::try_from(messages).unwrap_or(i64::MAX));
    telemetry
        .consumer_group_lag_seconds
        .get_or_create(&labels)
        .set(oldest_ms as f64 / 1000.0);
}
