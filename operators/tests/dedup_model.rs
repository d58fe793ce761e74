//! The dedup set against a plain model of its rules (a map of every remembered id, floors
//! raised by scanning it): the same verdict for every sighting, the same ids remembered, the
//! same first content, under random sightings, horizon passes, a cap and a per-tenant share
//! small enough to bite and changed on the way (an instance's budget shared again among its
//! tasks), and enough ids per tenant that its newest are merged into its sorted ids many times.

use std::collections::HashMap;

use proptest::prelude::*;
use salestalk_operators::dedup::{FirstContent, SeenIds, Sighting};

const TENANTS: [&str; 3] = ["tenant-a", "tenant-b", "tenant-c"];

/// The rules, written plainly.
struct Model {
    /// (tenant, id) -> (minute, fingerprint).
    ids: HashMap<(usize, u128), (i64, u32)>,
    floor: i64,
    tenant_floor: [i64; 3],
    expired_below: i64,
    cap: usize,
    tenant_cap: usize,
}

impl Model {
    fn new(cap: usize, tenant_cap: usize) -> Self {
        Self {
            ids: HashMap::new(),
            floor: i64::MIN,
            tenant_floor: [i64::MIN; 3],
            expired_below: i64::MIN,
            cap,
            tenant_cap,
        }
    }

    fn below(&self, tenant: usize, minute: i64) -> bool {
        minute < self.floor || minute < self.tenant_floor[tenant]
    }

    fn sight(&mut self, tenant: usize, id: u128, minute: i64, fingerprint: u32) -> Sighting {
        if self.ids.contains_key(&(tenant, id)) {
            return Sighting::Repeat;
        }
        if self.below(tenant, minute) {
            return Sighting::Unchecked;
        }
        if minute < self.expired_below {
            return Sighting::First;
        }
        self.ids.insert((tenant, id), (minute, fingerprint));
        self.keep_share(tenant);
        self.keep_cap();
        if self.below(tenant, minute) {
            return Sighting::Unchecked;
        }
        Sighting::First
    }

    fn set_caps(&mut self, cap: usize, tenant_cap: usize) {
        self.cap = cap;
        self.tenant_cap = tenant_cap;
        for tenant in 0..TENANTS.len() {
            self.keep_share(tenant);
        }
        self.keep_cap();
    }

    fn keep_share(&mut self, tenant: usize) {
        while self.ids.keys().filter(|(t, _)| *t == tenant).count() > self.tenant_cap {
            let Some(oldest) = self
                .ids
                .iter()
                .filter(|((t, _), _)| *t == tenant)
                .map(|(_, (m, _))| *m)
                .min()
            else {
                break;
            };
            self.ids
                .retain(|(t, _), (m, _)| *t != tenant || *m != oldest);
            self.tenant_floor[tenant] = oldest + 1;
        }
    }

    fn keep_cap(&mut self) {
        while self.ids.len() > self.cap {
            let Some(oldest) = self.ids.values().map(|(m, _)| *m).min() else {
                break;
            };
            self.ids.retain(|_, (m, _)| *m != oldest);
            self.floor = oldest + 1;
        }
    }

    fn forget_before(&mut self, minute: i64) {
        self.expired_below = self.expired_below.max(minute);
        self.ids.retain(|_, (m, _)| *m >= minute);
    }
}

#[derive(Debug, Clone)]
enum Step {
    Sight {
        tenant: usize,
        id: u128,
        minute: i64,
        fingerprint: u32,
    },
    Forget(i64),
    /// The caps change (the instance's budget shared again among its tasks).
    Caps(usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => (0..3usize, 0..2_000u128, 0..12i64, 1..4u32).prop_map(
            |(tenant, id, minute, fingerprint)| Step::Sight {
                tenant,
                // Spread over the id space, as UUIDs are, with some ids shared by tenants.
                id: id.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                minute,
                fingerprint,
            }
        ),
        1 => (0..12i64).prop_map(Step::Forget),
        1 => (100..1_500usize, 30..1_000usize).prop_map(|(cap, share)| Step::Caps(cap, share)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_set_follows_the_plain_rules(
        steps in prop::collection::vec(step(), 1..3_000),
        (cap, tenant_cap) in prop_oneof![
            Just((usize::MAX, usize::MAX)),
            (200..1_500usize, 50..1_000usize),
        ],
    ) {
        let mut seen = SeenIds::with_caps(cap, tenant_cap);
        let mut model = Model::new(cap, tenant_cap);
        for (i, step) in steps.iter().enumerate() {
            // Event time moves on a minute every 100 steps, with events up to 12 minutes late
            // and horizon passes up to 12 minutes behind.
            let now = (i / 100) as i64;
            match *step {
                Step::Sight { tenant, id, minute, fingerprint } => {
                    let minute = now + minute - 11;
                    let key = seen.key(TENANTS[tenant], id).with_fingerprint(fingerprint);
                    let first = model.ids.get(&(tenant, id)).map(|(_, f)| {
                        if *f == fingerprint { FirstContent::Same } else { FirstContent::Other }
                    });
                    prop_assert_eq!(seen.first_content(key), first);
                    let expected = model.sight(tenant, id, minute, fingerprint);
                    prop_assert_eq!(seen.first_sighting(key, minute * 60_000 + 59_999), expected);
                }
                Step::Forget(behind) => {
                    let minute = now - behind;
                    model.forget_before(minute);
                    seen.forget_before(minute * 60_000);
                }
                Step::Caps(cap, tenant_cap) => {
                    model.set_caps(cap, tenant_cap);
                    seen.set_caps(cap, tenant_cap);
                }
            }
            prop_assert_eq!(seen.len(), model.ids.len());
        }
        for (tenant, id) in (0..3).flat_map(|t| (0..2_000u128).map(move |i| (t, i))) {
            let id = id.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
            let key = seen.key(TENANTS[tenant], id);
            prop_assert_eq!(seen.contains(key), model.ids.contains_key(&(tenant, id)));
        }
    }
}

/// Event time moving on by more than a slot's minutes can tell apart (45 days): the set
/// moves its epoch with the horizon and still tells every id apart.
#[test]
fn ids_are_kept_across_months_of_event_time() {
    let mut seen = SeenIds::default();
    let day = 24 * 60;
    for d in 0..200i64 {
        let minute = d * day;
        seen.forget_before((minute - day) * 60_000);
        for i in 0..50u128 {
            let key = seen.key("tenant-a", (d as u128) << 64 | i);
            assert_eq!(seen.first_sighting(key, minute * 60_000), Sighting::First);
            assert_eq!(seen.first_sighting(key, minute * 60_000), Sighting::Repeat);
        }
        if d > 0 {
            // Yesterday's ids are still remembered, the day before's are not.
            let yesterday = seen.key("tenant-a", ((d - 1) as u128) << 64);
            assert!(seen.contains(yesterday), "day {d}");
        }
        if d > 1 {
            let before = seen.key("tenant-a", ((d - 2) as u128) << 64);
            assert!(!seen.contains(before), "day {d}");
        }
        assert!(seen.len() <= 100, "day {d}: {}", seen.len());
    }
}
