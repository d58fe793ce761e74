//! The dedup set's documented memory bound (`dedup::BYTES_PER_ID` per id plus
//! `dedup::BYTES_PER_MINUTE` per minute holding ids and `dedup::BYTES_PER_TENANT` per
//! tenant), measured with a counting allocator (dhat's heap statistics): the heap bytes live
//! per remembered id, at many sizes, filling and in the steady state of a full horizon (ids
//! expiring as fast as they come), for few tenants and for many.

use salestalk_operators::dedup::{BYTES_PER_ID, BYTES_PER_MINUTE, BYTES_PER_TENANT, SeenIds};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn live_bytes() -> i64 {
    dhat::HeapStats::get().curr_bytes as i64
}

/// The documented bound for `seen`.
fn bound(seen: &SeenIds) -> i64 {
    (BYTES_PER_ID * seen.len()
        + BYTES_PER_MINUTE * seen.minutes()
        + BYTES_PER_TENANT * seen.tenants()) as i64
}

#[test]
fn every_remembered_id_costs_at_most_the_documented_bytes() {
    // One test in this binary, so nothing else allocates meanwhile.
    let _profiler = dhat::Profiler::builder().testing().build();
    let names: Vec<String> = (0..5_000).map(|t| format!("tenant-{t:05}")).collect();
    for (per_minute, tenants, horizon) in [
        (1, 4, None),
        (50, 4, None),
        (1_000, 4, None),
        (20_000, 4, None),
        (2_000, 4, Some(60)),
        (2_000, 5_000, Some(60)),
        (200, 5_000, Some(600)),
    ] {
        let before = live_bytes();
        let mut seen = SeenIds::default();
        let mut worst_excess = i64::MIN;
        let mut worst_per_id = 0f64;
        let total_ids = horizon.map_or(300_000u128, |h| per_minute * (h + 120) as u128);
        let mut minute_now = -1;
        for i in 0..total_ids {
            let minute = (i / per_minute) as i64;
            if let Some(horizon) = horizon
                && minute != minute_now
            {
                minute_now = minute;
                seen.forget_before((minute - horizon) * 60_000);
            }
            // Several tenants, as a partition carries (their names are interned once).
            let tenant = &names[(i % tenants as u128) as usize];
            let key = seen.key(tenant, i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            seen.first_sighting(key, minute * 60_000);
            let n = i + 1;
            // Sample often, and at every power of two (just past each growth).
            if n % 997 == 0 || n.is_power_of_two() || n == total_ids {
                let bytes = live_bytes() - before;
                worst_excess = worst_excess.max(bytes - bound(&seen));
                if seen.len() >= 100_000 {
                    worst_per_id = worst_per_id.max(bytes as f64 / seen.len() as f64);
                }
            }
        }
        let total = live_bytes() - before;
        println!(
            "{per_minute} ids a minute, {tenants} tenants, horizon {horizon:?} min: {:.1} bytes \
             per id at {} ids, all included (worst {worst_per_id:.1} past 100,000 ids)",
            total as f64 / seen.len() as f64,
            seen.len()
        );
        // A few hundred bytes of empty set and index are not per id or per minute.
        assert!(
            worst_excess <= 1_024,
            "{per_minute} ids a minute, {tenants} tenants: {worst_excess} bytes over the \
             documented bound"
        );
        drop(seen);
    }
}
