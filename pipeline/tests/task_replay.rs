//! ADR 0004 in miniature: a task killed at random points and restored from what its flushes
//! made durable ends with exactly the metrics of a task that never stopped.
//!
//! "Durable" is modelled as ClickHouse behaves: side outputs (archive, dead letters) are
//! written first and idempotently; window rows and the checkpoint land together or not at
//! all; a reader takes each row's highest epoch. Latency rows are left out of the comparison:
//! they measure when things became durable, which a replay changes by design.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use salestalk_contracts::EventId;
use salestalk_generator::{DEFAULT_TENANT_SKEW, FaultRates, Generator, GeneratorOptions, Stop};
use salestalk_operators::RawMessage;
use salestalk_operators::aggregate::Family;
use salestalk_operators::dedup::CountedIds;
use salestalk_operators::flush::{Checkpoint, Flush, StateRow, TaskState};
use salestalk_operators::new_values::Admission;
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_operators::windows::{Span, WindowValue};

type RowKey = (Family, Span, i64, String, [String; 3]);

#[derive(Default)]
struct Store {
    rows: BTreeMap<RowKey, (u64, WindowValue)>,
    checkpoint: Checkpoint,
    /// Archived events by (tenant, id), as the archive's key is: (offset, window start in ms,
    /// late, content fingerprint).
    archive: BTreeMap<(String, EventId), (i64, i64, bool, u32)>,
    dead_letters: BTreeSet<i64>,
}

impl Store {
    fn side_outputs(&mut self, flush: &Flush) {
        for event in &flush.archive {
            let key = (event.tenant_id.clone(), event.event_id);
            // Remembered under its window's minute, as the restore query reads it.
            self.archive.insert(
                key,
                (
                    event.offset,
                    event.window_start * 1000,
                    event.late,
                    event.fingerprint,
                ),
            );
        }
        self.dead_letters
            .extend(flush.dead_letters.iter().map(|d| d.offset));
    }

    fn commit(&mut self, flush: Flush) {
        for row in flush.rows {
            let key = (
                row.family,
                row.span,
                row.window_start,
                row.tenant_id,
                row.dims,
            );
            self.rows.insert(key, (flush.checkpoint.epoch, row.value));
        }
        self.checkpoint = flush.checkpoint;
    }

    /// The task as a restart rebuilds it: from plain rows, like the ClickHouse restore.
    fn restore(&self, settings: TaskSettings) -> Task {
        let rows: Vec<StateRow> = self
            .rows
            .iter()
            .map(
                |((family, span, window_start, tenant, dims), (_, value))| StateRow {
                    family: *family,
                    span: *span,
                    window_start: *window_start,
                    tenant_id: tenant.clone(),
                    dims: dims.clone(),
                    value: value.clone(),
                },
            )
            .collect();
        let mut seen = CountedIds::default();
        for ((tenant, id), (_, at_ms, _, fingerprint)) in self
            .archive
            .iter()
            .filter(|(_, (offset, _, _, _))| *offset < self.checkpoint.next_offset)
        {
            seen.push(tenant, id.0, *at_ms, *fingerprint);
        }
        let admitted = rows
            .iter()
            .filter_map(|r| Admission::of_row(r.family, &r.tenant_id, &r.dims, r.window_start))
            .collect();
        let state = TaskState {
            checkpoint: self.checkpoint.clone(),
            rows,
            seen,
            refused: Vec::new(),
            generation: None,
            admitted,
        };
        Task::resume("topic", 0, settings, state)
    }

    fn metrics(&self) -> BTreeMap<RowKey, WindowValue> {
        self.rows
            .iter()
            .filter(|(key, _)| key.0 != Family::Latency)
            .map(|(key, (_, value))| (key.clone(), value.clone()))
            .collect()
    }
}

fn traffic() -> Vec<(i64, Vec<u8>)> {
    let start = DateTime::parse_from_rfc3339("2025-11-09T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid");
    let generator = Generator::new(GeneratorOptions {
        seed: 5,
        start,
        rate: 20.0,
        tenants: 12,
        tenant_skew: DEFAULT_TENANT_SKEW,
        stop: Stop::Count(12_000),
        faults: FaultRates {
            duplicates: 0.03,
            invalid: 0.02,
            out_of_order: 0.05,
            late: 0.02,
            future_skew: 0.005,
            shared_ids: 0.01,
            v2: 0.3,
            new_enum_values: 0.01,
        },
    });
    // Broker time advances steadily with delivery, as a producer publishing in real time would.
    generator
        .enumerate()
        .map(|(i, m)| (start.timestamp_millis() + i as i64 * 50, m.bytes))
        .collect()
}

/// Remembers every id of the traffic.
const NO_CAP: usize = 1_000_000;

fn settings(dedup_max_ids: usize, dedup_max_ids_per_tenant: usize) -> TaskSettings {
    TaskSettings {
        allowed_lateness_ms: 5 * 60_000,
        correction_horizon_ms: 7 * 86_400_000,
        max_future_skew_ms: 10 * 60_000,
        dedup_horizon_ms: 24 * 3_600_000,
        dedup_max_ids,
        dedup_max_ids_per_tenant,
        max_message_bytes: 1 << 20,
        max_new_enum_values: 1_000,
        max_sources_per_day: 1_000,
        version_ends: Default::default(),
    }
}

fn batch(messages: &[(i64, Vec<u8>)], from: usize, to: usize) -> Vec<RawMessage<'_>> {
    (from..to)
        .map(|i| RawMessage {
            topic: "topic",
            partition: 0,
            offset: i as i64,
            timestamp_ms: Some(messages[i].0),
            payload: Some(&messages[i].1),
            path: salestalk_operators::PublishPath::Direct,
            sequence: None,
        })
        .collect()
}

/// The store after processing `messages` (crashing at random points with a seed), the
/// crashes, and the events the last task counted without a dedup check.
fn run_capped(
    messages: &[(i64, Vec<u8>)],
    crash_seed: Option<u64>,
    (dedup_max_ids, dedup_max_ids_per_tenant): (usize, usize),
) -> (Store, usize, u64) {
    let settings = || settings(dedup_max_ids, dedup_max_ids_per_tenant);
    let mut store = Store::default();
    let mut task = store.restore(settings());
    let mut rng = ChaCha8Rng::seed_from_u64(crash_seed.unwrap_or(0));
    let mut crashes = 0;
    loop {
        let from = task.checkpoint().next_offset as usize;
        if from >= messages.len() {
            break;
        }
        let to = (from + rng.random_range(20..300)).min(messages.len());
        task.process(&batch(messages, from, to));
        let flush = task.flush(messages[to - 1].0);
        let crash = crash_seed.is_some() && rng.random_bool(0.25);
        if crash && rng.random_bool(0.5) {
            // Killed after processing, before anything was written.
        } else {
            store.side_outputs(&flush);
            if !crash {
                store.commit(flush);
                continue;
            }
            // Killed between the side outputs and the state insert.
        }
        crashes += 1;
        task = store.restore(settings());
    }
    (store, crashes, task.dedup_capped().1)
}

fn run(messages: &[(i64, Vec<u8>)], crash_seed: Option<u64>) -> (Store, usize) {
    let (store, crashes, _) = run_capped(messages, crash_seed, (NO_CAP, NO_CAP));
    (store, crashes)
}

#[test]
fn crashes_at_random_points_do_not_change_any_metric() {
    let messages = traffic();
    let (straight, _) = run(&messages, None);
    assert!(
        straight.metrics().len() > 1_000,
        "enough windows to mean something"
    );
    for seed in 1..=4 {
        let (crashed, crashes) = run(&messages, Some(seed));
        assert!(crashes > 5, "seed {seed} crashed only {crashes} times");
        assert_eq!(crashed.metrics(), straight.metrics(), "seed {seed}");
        assert_eq!(crashed.archive, straight.archive, "seed {seed}");
        assert_eq!(crashed.dead_letters, straight.dead_letters, "seed {seed}");
    }
}

/// With a dedup cap far below the traffic, a restored task remembers exactly the ids the live
/// one did, so crashes still change nothing; what the cap lets through is counted.
#[test]
fn under_a_dedup_cap_crashes_do_not_change_any_metric_either() {
    let messages = traffic();
    let cap = 2_000;
    let (straight, _, unchecked) = run_capped(&messages, None, (cap, cap));
    let (uncapped, _) = run(&messages, None);
    assert!(unchecked > 0, "the cap was reached and let events through");
    assert!(
        straight.archive.len() >= uncapped.archive.len(),
        "a cap never drops an event: at worst it counts a resend"
    );
    for seed in 1..=3 {
        let (crashed, crashes, _) = run_capped(&messages, Some(seed), (cap, cap));
        assert!(crashes > 5, "seed {seed} crashed only {crashes} times");
        assert_eq!(crashed.metrics(), straight.metrics(), "seed {seed}");
        assert_eq!(crashed.archive, straight.archive, "seed {seed}");
    }
}

/// With a per-tenant dedup share far below the traffic (and no overall cap), a restored task
/// remembers exactly what the live one did, tenant by tenant, so crashes change nothing.
#[test]
fn under_a_per_tenant_dedup_share_crashes_do_not_change_any_metric_either() {
    let messages = traffic();
    let share = (NO_CAP, 300);
    let (straight, _, unchecked) = run_capped(&messages, None, share);
    assert!(
        unchecked > 0,
        "the share was reached and let events through"
    );
    for seed in 1..=3 {
        let (crashed, crashes, _) = run_capped(&messages, Some(seed), share);
        assert!(crashes > 5, "seed {seed} crashed only {crashes} times");
        assert_eq!(crashed.metrics(), straight.metrics(), "seed {seed}");
        assert_eq!(crashed.archive, straight.archive, "seed {seed}");
    }
}

#[test]
fn the_straight_run_counts_every_distinct_valid_event_once() {
    let messages = traffic();
    let (store, _) = run(&messages, None);
    let counted: i64 = store
        .metrics()
        .iter()
        .filter(|(key, _)| key.0 == Family::Volume && key.1 == Span::Minute)
        .map(|(_, value)| value.ints[0])
        .sum();
    // Late events are archived for the correction of their day, not counted live.
    let late_archived = store
        .archive
        .values()
        .filter(|(_, _, late, _)| *late)
        .count();
    assert_eq!(counted as usize, store.archive.len() - late_archived);
    let read: i64 = store
        .metrics()
        .iter()
        .filter(|(k, _)| k.0 == Family::Publish && k.1 == Span::Minute)
        .map(|(_, v)| v.ints[0])
        .sum();
    assert_eq!(
        read as usize,
        messages.len(),
        "every message read is accounted for"
    );
    let late: i64 = store
        .metrics()
        .iter()
        .filter(|(k, _)| k.0 == Family::LateArrivals && k.1 == Span::Minute)
        .map(|(_, v)| v.ints[0])
        .sum();
    assert!(late > 0, "the traffic has events past the allowed lateness");
    assert_eq!(
        late as usize, late_archived,
        "each late arrival is archived"
    );
}
