//! Sequential small queries through one `Endpoint`, as the pipeline issues them (a restore's
//! reads, a flush's inserts, a panel's queries): prints queries per second and latency
//! percentiles. Against the local server: `deploy/services/up`, then
//! `cargo run --release -p salestalk-store --example round_trips [N]`; the URL comes from
//! `SALESTALK__CLICKHOUSE__URL` (default `http://127.0.0.1:8123`).

use std::time::Instant;

use salestalk_store::Endpoint;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let url = std::env::var("SALESTALK__CLICKHOUSE__URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let endpoint = Endpoint::new(&url, "default");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut latencies_us: Vec<u64> = Vec::with_capacity(count);
    let started = Instant::now();
    runtime.block_on(async {
        for _ in 0..count {
            let one = Instant::now();
            let answer: u8 = endpoint
                .query("SELECT 1")
                .fetch_one()
                .await
                .expect("the server answers (deploy/services/up)");
            assert_eq!(answer, 1);
            latencies_us.push(one.elapsed().as_micros() as u64);
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let at = |p: f64| latencies_us[((latencies_us.len() - 1) as f64 * p) as usize];
    println!(
        "{count} sequential queries: {:.0} queries/s, p50 {} us, p95 {} us, p99 {} us",
        count as f64 / elapsed,
        at(0.50),
        at(0.95),
        at(0.99)
    );
}
