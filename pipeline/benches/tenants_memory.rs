//! (f) Memory with many active tenants: generated traffic from `BENCH_TENANTS` (100,000)
//! tenants, every one alike (no skew, so nearly all are active), `BENCH_TENANT_EVENTS`
//! (3,000,000) events at 5,000 events/s of event time, keyed by tenant over four partitions'
//! tasks as a producer would, each task flushed after every second of traffic (the runtime's
//! default interval). Prints the process's peak RSS (mimalloc, as in `salestalk run`), the open
//! window rows and remembered ids at the end, and the dedup bound for those ids.
//!
//! What this leaves out is bounded by configuration whatever the tenants: the broker client's
//! prefetch, one batch, and the flush being written (see (c1) for a whole run's peak RSS).
//! Run with `MIMALLOC_PURGE_DELAY=0 cargo bench -p salestalk --bench tenants_memory` (as
//! `deploy/bench` does: without it the allocator keeps freed pages a while, and dropping the
//! tasks seems to give nothing back); results in docs/performance.md.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Instant;

use chrono::{DateTime, Utc};
use salestalk_generator::{FaultRates, Generator, GeneratorOptions, Stop};
use salestalk_operators::RawMessage;
use salestalk_operators::dedup::{BYTES_PER_ID, BYTES_PER_MINUTE, BYTES_PER_TENANT};
use salestalk_operators::task::{Task, TaskSettings};

const PARTITIONS: usize = 4;
const RATE: f64 = 5_000.0;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/self/status` field in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Where a keyed producer would put the message (any stable hash will do: std's default
/// hasher is SipHash with fixed keys).
fn partition_of(key: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % PARTITIONS as u64) as usize
}

fn main() {
    let tenants = setting("BENCH_TENANTS", 100_000) as usize;
    let events = setting("BENCH_TENANT_EVENTS", 3_000_000);
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2025-11-09T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid");
    let settings = TaskSettings {
        allowed_lateness_ms: 300_000,
        correction_horizon_ms: 7 * 86_400_000,
        max_future_skew_ms: 600_000,
        dedup_horizon_ms: 86_400_000,
        dedup_max_ids: 2_000_000,
        dedup_max_ids_per_tenant: 2_000_000,
        max_message_bytes: 1 << 20,
        max_new_enum_values: 1_000,
        max_sources_per_day: 1_000,
        version_ends: Default::default(),
    };
    let mut tasks: Vec<Task> = (0..PARTITIONS)
        .map(|p| Task::new("t", p as i32, settings, Default::default()))
        .collect();
    let generator = Generator::new(GeneratorOptions {
        seed: 1,
        start,
        rate: RATE,
        tenants,
        tenant_skew: 0.0,
        stop: Stop::Count(events),
        faults: FaultRates::default(),
    });
    let baseline_kb = status_kb("VmRSS:");
    let began = Instant::now();
    let mut active: HashSet<String> = HashSet::with_capacity(tenants);
    let mut offsets = [0_i64; PARTITIONS];
    let mut second: Vec<_> = Vec::with_capacity(RATE as usize);
    let mut generator = generator.peekable();
    let mut processed = 0_u64;
    while generator.peek().is_some() {
        // One second of traffic, as the runtime would gather it between two flushes.
        second.clear();
        second.extend(generator.by_ref().take(RATE as usize));
        let mut parts: Vec<Vec<RawMessage<'_>>> = vec![Vec::new(); PARTITIONS];
        let mut broker_ms = 0;
        for message in &second {
            let p = partition_of(&message.tenant_id);
            broker_ms = message.at_ms + 400;
            parts[p].push(RawMessage {
                topic: "t",
                partition: p as i32,
                offset: offsets[p],
                timestamp_ms: Some(broker_ms),
                payload: Some(&message.bytes),
                path: salestalk_operators::PublishPath::Direct,
                sequence: None,
            });
            offsets[p] += 1;
        }
        for message in &second {
            if !active.contains(&message.tenant_id) {
                active.insert(message.tenant_id.clone());
            }
        }
        for (task, part) in tasks.iter_mut().zip(&parts) {
            task.process(part);
            std::hint::black_box(task.flush(broker_ms + 600));
        }
        processed += second.len() as u64;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let (rows, ids) = tasks.iter().fold((0, 0), |(rows, ids), task| {
        let (r, i) = task.state_size();
        (rows + r, ids + i)
    });
    let minutes = (events as f64 / RATE / 60.0).ceil() as usize + 1;
    // Each active tenant at most once per partition's set.
    let dedup_bound = ids * BYTES_PER_ID
        + PARTITIONS * minutes * BYTES_PER_MINUTE
        + PARTITIONS * active.len() * BYTES_PER_TENANT;
    let mib = |kb: u64| kb as f64 / 1024.0;

    println!(
        "(f) {processed} events from {} active tenants ({tenants} configured) in {elapsed:.1} s",
        active.len()
    );
    println!(
        "(f) peak RSS {:.0} MiB (at the end {:.0} MiB, at start {:.0} MiB); open window rows {rows}; remembered ids {ids} \
         (dedup bound {:.0} MiB); the tenant-id set this harness keeps is included",
        mib(status_kb("VmHWM:")),
        mib(status_kb("VmRSS:")),
        mib(baseline_kb),
        dedup_bound as f64 / (1024.0 * 1024.0)
    );
    // What the tasks themselves hold: the memory dropping them gives back (a lower bound,
    // since the allocator keeps pages that other live blocks share).
    let before_drop = status_kb("VmRSS:");
    drop(tasks);
    println!(
        "(f) dropping the tasks gives back {:.0} MiB",
        mib(before_drop.saturating_sub(status_kb("VmRSS:")))
    );
}
