//! Throughput of the operator graph, per core (criterion runs on one thread):
//! (a) the aggregate stage alone on decoded events: dedup check plus window updates (minute,
//!     hour and day rows);
//! (b) the whole task on raw JSON bytes: decode, validate, dedup, lateness, windows,
//!     archive and dead-letter outputs, and a flush every 5,000 messages;
//! (p) parsing alone into the borrowed document, by the tokenizer `parse` uses (sonic-rs) and
//!     by serde_json (the one it replaced), on the same bytes;
//! (d) (b) over four partitions, processed and flushed by one worker and by two (the
//!     runtime's `pipeline.workers`): events per second for the whole machine.
//! `deploy/bench` runs these and the end-to-end measurement; results go to docs/performance.md.

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use salestalk::run::workers::Workers;
use salestalk_contracts::{parse, validate};
use salestalk_generator::{DEFAULT_TENANT_SKEW, FaultRates, Generator, GeneratorOptions, Stop};
use salestalk_operators::RawMessage;
use salestalk_operators::aggregate::Aggregates;
use salestalk_operators::dedup::{SeenIds, Sighting};
use salestalk_operators::task::{Task, TaskSettings};
use salestalk_operators::windows::{WindowSet, window_start};

const EVENTS: u64 = 50_000;

fn traffic(faults: FaultRates) -> Vec<Vec<u8>> {
    let start = DateTime::parse_from_rfc3339("2025-11-09T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid");
    Generator::new(GeneratorOptions {
        seed: 1,
        start,
        rate: 500.0,
        tenants: 50,
        tenant_skew: DEFAULT_TENANT_SKEW,
        stop: Stop::Count(EVENTS),
        faults,
    })
    .map(|m| m.bytes)
    .collect()
}

fn settings() -> TaskSettings {
    TaskSettings {
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
    }
}

fn graph_on_decoded_events(c: &mut Criterion) {
    let bytes = traffic(FaultRates::default());
    let values: Vec<salestalk_contracts::Json<'_>> = bytes
        .iter()
        .map(|b| parse(b).expect("clean traffic"))
        .collect();
    let events: Vec<_> = values
        .iter()
        .map(|v| validate(v).expect("clean traffic"))
        .collect();
    let mut group = c.benchmark_group("a_graph_on_decoded_events");
    group.throughput(Throughput::Elements(events.len() as u64));
    let aggregates = Aggregates::default();
    group.bench_function("dedup_and_windows", |b| {
        b.iter_batched(
            || (WindowSet::default(), SeenIds::default()),
            |(mut windows, mut seen)| {
                for event in &events {
                    let at = event.envelope.timestamp.timestamp_millis();
                    let key = seen.key(event.envelope.tenant_id, event.envelope.event_id.0);
                    if seen.first_sighting(key, at) == Sighting::First {
                        // As a task does: every event counts in its minute, and the set rolls
                        // it up into its hour and its day.
                        aggregates.on_event(&mut windows, event, window_start(at));
                    }
                }
                (windows, seen)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn task_on_raw_bytes(c: &mut Criterion) {
    let faults = FaultRates {
        duplicates: 0.01,
        invalid: 0.005,
        out_of_order: 0.02,
        late: 0.005,
        future_skew: 0.001,
        shared_ids: 0.0,
        v2: 0.0,
        new_enum_values: 0.0,
    };
    let bytes = traffic(faults);
    let broker = 1_762_646_400_000 + 3_600_000;
    let messages: Vec<RawMessage<'_>> = bytes
        .iter()
        .enumerate()
        .map(|(i, b)| RawMessage {
            topic: "t",
            partition: 0,
            offset: i as i64,
            timestamp_ms: Some(broker),
            payload: Some(b),
            path: salestalk_operators::PublishPath::Direct,
            sequence: None,
        })
        .collect();
    let mut group = c.benchmark_group("b_decode_validate_graph_on_raw_json");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("task", |b| {
        b.iter_batched(
            || Task::new("t", 0, settings(), Default::default()),
            |mut task| {
                for chunk in messages.chunks(5_000) {
                    task.process(chunk);
                    std::hint::black_box(task.flush(broker));
                }
                task
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn parse_alone(c: &mut Criterion) {
    let bytes = traffic(FaultRates::default());
    let total: usize = bytes.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("p_parse_into_the_document");
    group.throughput(Throughput::Elements(bytes.len() as u64));
    group.bench_function("sonic_rs", |b| {
        b.iter(|| {
            for message in &bytes {
                std::hint::black_box(parse(message).expect("clean traffic"));
            }
        });
    });
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            for message in &bytes {
                let json: salestalk_contracts::Json<'_> =
                    serde_json::from_slice(message).expect("clean traffic");
                std::hint::black_box(json);
            }
        });
    });
    group.finish();
    println!(
        "(p) {} messages, {} bytes on average",
        bytes.len(),
        total / bytes.len()
    );
}

fn four_partitions_on_workers(c: &mut Criterion) {
    let bytes = traffic(FaultRates {
        duplicates: 0.01,
        invalid: 0.005,
        out_of_order: 0.02,
        late: 0.005,
        future_skew: 0.001,
        shared_ids: 0.0,
        v2: 0.0,
        new_enum_values: 0.0,
    });
    let broker = 1_762_646_400_000 + 3_600_000;
    // As a producer keyed by tenant spreads them, give or take: message i to partition i % 4,
    // offsets counted per partition.
    let batches: Vec<Vec<Vec<RawMessage<'_>>>> = bytes
        .chunks(5_000)
        .enumerate()
        .map(|(chunk, messages)| {
            let mut parts = vec![Vec::new(); 4];
            for (i, b) in messages.iter().enumerate() {
                let n = chunk * 5_000 + i;
                parts[n % 4].push(RawMessage {
                    topic: "t",
                    partition: (n % 4) as i32,
                    offset: (n / 4) as i64,
                    timestamp_ms: Some(broker),
                    payload: Some(b),
                    path: salestalk_operators::PublishPath::Direct,
                    sequence: None,
                });
            }
            parts
        })
        .collect();
    let mut group = c.benchmark_group("d_four_partitions_on_workers");
    group.throughput(Throughput::Elements(bytes.len() as u64));
    for count in [1, 2] {
        let workers = Workers::new(count);
        group.bench_function(format!("workers_{count}"), |b| {
            b.iter_batched(
                || {
                    (0..4)
                        .map(|p| Task::new("t", p, settings(), Default::default()))
                        .collect::<Vec<_>>()
                },
                |mut tasks| {
                    for batch in &batches {
                        let work = tasks.iter_mut().zip(batch.iter().cloned()).collect();
                        workers.process(work);
                        std::hint::black_box(workers.flush(tasks.iter_mut().collect(), broker));
                    }
                    tasks
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = graph_on_decoded_events, task_on_raw_bytes, parse_alone, four_partitions_on_workers
}
criterion_main!(benches);
