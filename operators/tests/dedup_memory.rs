//! The dedup set's documented memory bound (`dedup::BYTES_PER_ID` per id plus
//! `dedup::BYTES_PER_MINUTE` per minute holding ids), measured with a counting
//! allocator (dhat's heap statistics): the heap bytes live per remembered id, at many sizes
//! (a hash set is at its worst just after it grows, a minute's list just after it doubles).

use salestalk_operators::dedup::{BYTES_PER_ID, BYTES_PER_MINUTE, SeenIds};

const TENANTS: [&str; 4] = ["tenant-a", "tenant-b", "tenant-c", "tenant-d"];

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn live_bytes() -> i64 {
    dhat::HeapStats::get().curr_bytes as i64
}

#[test]
fn every_remembered_id_costs_at_most_the_documented_bytes() {
    // One test in this binary, so nothing else allocates meanwhile.
    let _profiler = dhat::Profiler::builder().testing().build();
    for per_minute in [1, 50, 1_000, 20_000] {
        let before = live_bytes();
        let mut seen = SeenIds::default();
        let mut worst_excess = i64::MIN;
        for i in 0..300_000u128 {
            let minute = (i / per_minute) as i64;
            // Several tenants, as a partition carries (their names are interned once).
            let tenant = TENANTS[(i % TENANTS.len() as u128) as usize];
            let key = seen.key(tenant, i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            seen.first_sighting(key, minute * 60_000);
            let n = i + 1;
            // Sample often, and at every power of two (just past each growth).
            if n % 997 == 0 || n.is_power_of_two() || n == 300_000 {
                let bytes = live_bytes() - before;
                let bound = (BYTES_PER_ID * seen.len() + BYTES_PER_MINUTE * seen.minutes()) as i64;
                worst_excess = worst_excess.max(bytes - bound);
            }
        }
        let total = live_bytes() - before;
        println!(
            "{per_minute} ids a minute: {:.1} bytes per id at {} ids, all included",
            total as f64 / seen.len() as f64,
            seen.len()
        );
        // A few hundred bytes of empty set and index are not per id or per minute.
        assert!(
            worst_excess <= 1_024,
            "{per_minute} ids a minute: {worst_excess} bytes over the documented bound"
        );
        drop(seen);
    }
}
