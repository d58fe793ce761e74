//! Each downstream consumer group's latency, from event time to the group's commit covering
//! the event: every [`POLL`] the groups' committed offsets on their targets' topics are read
//! and the records delivered there that a commit newly covers
//! ([`salestalk_sinks::kafka::AwaitingCommit`]) are measured, the commit taken as seen
//! halfway between this read of the group and the one before (so within half a poll of the
//! truth while the group commits). A group whose reads find nothing new is read half as often
//! each time, down to every [`SLOWEST`], and every [`POLL`] again once a commit covers
//! something: a stopped group costs the broker a quarter of the reads. The
//! histograms go to `delivery_latency` as consumer `group.<name>`, where the P95 and
//! latency-budget rules, the SRE page's latency panels and Grafana read every consumer's
//! latency, and to the `salestalk_consumer_group_commit_latency_seconds` histogram for the
//! Prometheus rule.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use salestalk_contracts::EventType;
use salestalk_kafka::admin::GroupOffsets;
use salestalk_operators::histogram::LogHistogram;
use salestalk_operators::time;
use salestalk_sinks::kafka::AwaitingCommit;
use salestalk_sinks::kafka::awaiting_commit::Covered;
use salestalk_sinks::kafka::delivery::group_consumer_name;
use salestalk_store::tables::delivery_latency::DeliveryLatencyRow;

use crate::settings::Settings;
use crate::telemetry::{GroupLabels, Telemetry};

/// How often the groups' commits are read while they commit: the latency's resolution is half
/// of it.
pub const POLL: Duration = Duration::from_secs(1);
/// How seldom a group whose commits cover nothing new is read: its first commit after a stop
/// is then measured within half of this (2 s), against the 5 s target and 30 s threshold.
pub const SLOWEST: Duration = Duration::from_secs(4);

/// When one group is read next, and what its previous read saw.
struct Pace {
    every: Duration,
    next_ms: i64,
    previous_ms: i64,
}

impl Pace {
    /// After a read at `now_ms` that covered something (`covered`): every [`POLL`] again, or
    /// half as often as before.
    fn after(&mut self, now_ms: i64, covered: bool) {
        self.every = if covered {
            POLL
        } else {
            (self.every * 2).min(SLOWEST)
        };
        self.previous_ms = now_ms;
        self.next_ms = now_ms + self.every.as_millis() as i64;
    }
}

/// Latencies per minute, group (its index among the readers), tenant and event type.
type Histograms = HashMap<(u32, usize, Arc<str>, EventType), (u64, LogHistogram)>;

/// Adds what `group`'s commit covered to `histograms` (by the minute of the commit) and the
/// Prometheus histogram.
fn add(
    histograms: &mut Histograms,
    telemetry: &Telemetry,
    (index, group, topic): (usize, &str, &str),
    commit_ms: i64,
    covered: Vec<Covered>,
) {
    if covered.is_empty() {
        return;
    }
    let minute = time::minute_datetime(commit_ms.max(0) as u64);
    let gauge = telemetry
        .consumer_group_commit_latency_seconds
        .get_or_create(&GroupLabels {
            group: group.to_string(),
            topic: topic.to_string(),
        });
    for record in covered {
        let (n, histogram) = histograms
            .entry((minute, index, record.tenant, record.event_type))
            .or_default();
        *n += record.weight;
        histogram.record_n(record.latency_ms, record.weight);
        // Once per record held: a thinned one is a fair sample of those it stands for.
        gauge.observe(record.latency_ms / 1000.0);
    }
}

/// Reads the commits of every (group, topic) of `groups` (each group with its offsets client)
/// every [`POLL`] while the run lasts, storing the latency of what each covered.
pub fn schedule(
    settings: &Settings,
    groups: &[(Arc<GroupOffsets>, String)],
    awaiting: Arc<AwaitingCommit>,
    telemetry: Arc<Telemetry>,
) {
    let readers: Vec<(Arc<GroupOffsets>, String)> = groups.to_vec();
    if readers.is_empty() {
        return;
    }
    // Each group's consumer name, made once: the rows name it.
    let consumers: Vec<String> = readers
        .iter()
        .map(|(reader, _)| group_consumer_name(reader.group()))
        .collect();
    let readers = Arc::new(readers);
    let endpoint = settings.clickhouse.clone();
    tokio::spawn(async move {
        let started_ms = time::now_ms() as i64;
        let mut paces: Vec<Pace> = readers
            .iter()
            .map(|_| Pace {
                every: POLL,
                next_ms: started_ms,
                previous_ms: started_ms,
            })
            .collect();
        loop {
            tokio::time::sleep(POLL).await;
            let now_ms = time::now_ms() as i64;
            let mut histograms = Histograms::new();
            for index in 0..readers.len() {
                let pace = &mut paces[index];
                if now_ms < pace.next_ms {
                    continue;
                }
                let commit_ms = pace.previous_ms + (now_ms - pace.previous_ms) / 2;
                let topic = readers[index].1.clone();
                let partitions = awaiting.partitions(&topic);
                if partitions.is_empty() {
                    pace.after(now_ms, false);
                    continue;
                }
                let asked = Arc::clone(&readers);
                let answer = tokio::task::spawn_blocking(move || {
                    asked[index].0.committed(&asked[index].1, &partitions)
                })
                .await;
                let group = readers[index].0.group();
                let committed = match answer {
                    Ok(Ok(committed)) => committed,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, group, "could not read the group's commits");
                        pace.after(now_ms, false);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, group, "reading the group's commits");
                        pace.after(now_ms, false);
                        continue;
                    }
                };
                let mut any = false;
                for (partition, offset) in committed {
                    let covered = awaiting.committed(group, &topic, partition, offset, commit_ms);
                    any |= !covered.is_empty();
                    add(
                        &mut histograms,
                        &telemetry,
                        (index, group, &topic),
                        commit_ms,
                        covered,
                    );
                }
                pace.after(now_ms, any);
            }
            awaiting.settle();
            if histograms.is_empty() {
                continue;
            }
            let rows: Vec<DeliveryLatencyRow<'_>> = histograms
                .iter()
                .map(|((minute, index, tenant, event_type), (n, histogram))| {
                    let (latency_buckets, latency_counts) = histogram.to_arrays();
                    DeliveryLatencyRow {
                        minute: *minute,
                        consumer: &consumers[*index],
                        tenant_id: tenant,
                        event_type: event_type.as_str(),
                        delivered: *n,
                        latency_buckets,
                        latency_counts,
                    }
                })
                .collect();
            // Operational, like the targets' own delivery latency: a failed insert loses
            // this poll's measurements, never a count the dashboards bill by.
            if let Err(error) = endpoint.insert_delivery_latency(&rows).await {
                tracing::warn!(%error, "could not store the consumer groups' commit latency");
            }
        }
    });
}
