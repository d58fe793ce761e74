//! The dedup operator's state: which `(tenantId, eventId)` pairs a task has already counted,
//! forgotten after a horizon of event time, and capped, so memory stays bounded.
//!
//! An id is unique only within its tenant: one tenant reusing another's `eventId` (by bug or
//! on purpose) must not suppress the other's event, so a key is the pair. Tenants are
//! interned per set ([`SeenIds::key`]): a key is an index and the id's two halves, 24 bytes
//! with no padding, and the names are kept once each (a task's tenants, which its window rows
//! hold anyway).
//!
//! Memory: at most [`BYTES_PER_ID`] bytes per remembered id (a hash-set slot and a place in
//! its minute's list, both at their worst just after growing) plus [`BYTES_PER_MINUTE`] per
//! minute that holds ids (its list and index entry: under 190 KB for a 24 h horizon),
//! measured by `operators/tests/dedup_memory.rs`. The cap ([`SeenIds::with_cap`], `pipeline.dedup_max_ids`)
//! bounds a task's ids: past it, the oldest whole minutes are forgotten early, and an event of
//! a forgotten minute is counted without a check (see [`SeenIds::first_sighting`]). What is
//! kept is the newest minutes that fit under the cap, whatever the order the ids came in, so a
//! task restored from the archive remembers exactly what the live task did (ADR 0004), as long
//! as the restore gives each id the minute the live task used: its window, the broker's minute
//! for a clock-skewed event (`store::tables::events_raw::SEEN_QUERY`).
//!
//! Each tenant also has a share ([`SeenIds::with_caps`], `pipeline.dedup_max_ids_per_tenant`):
//! past it, that tenant's own oldest minutes are forgotten (its floor rises, nobody else's), so
//! one tenant's flood of distinct ids shortens its own horizon, not its neighbours'. The same
//! rule per tenant: its newest minutes that fit under its share are kept, whatever the order.
//! A share costs 16 bytes a tenant.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

/// The most heap bytes one remembered id takes.
pub const BYTES_PER_ID: usize = 108;

/// The most heap bytes a minute holding ids takes besides its ids.
pub const BYTES_PER_MINUTE: usize = 128;

/// What a sighting of an id means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Not seen before: remembered from now on.
    First,
    /// Already remembered: a resend.
    Repeat,
    /// Its minute was forgotten early because of the cap: counted, not remembered, not checked.
    Unchecked,
}

/// One event's identity within a task: its tenant (interned by the set that made the key)
/// and its `eventId`; and, not part of the identity, the fingerprint of the content first
/// seen under it, which a repeat is compared with (a conflicting duplicate: the contract says
/// events are immutable). The fingerprint lives in what was the key's padding: 24 bytes.
#[derive(Debug, Clone, Copy)]
pub struct SeenKey {
    tenant: u32,
    fingerprint: u32,
    id_high: u64,
    id_low: u64,
}

impl PartialEq for SeenKey {
    fn eq(&self, other: &Self) -> bool {
        (self.tenant, self.id_high, self.id_low) == (other.tenant, other.id_high, other.id_low)
    }
}

impl Eq for SeenKey {}

impl std::hash::Hash for SeenKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.tenant, self.id_high, self.id_low).hash(state);
    }
}

impl SeenKey {
    /// The key carrying `fingerprint` (of the content seen with it; 0: unknown).
    pub fn with_fingerprint(self, fingerprint: u32) -> Self {
        Self {
            fingerprint,
            ..self
        }
    }
}

/// The fingerprint of an event's bytes: XXH3, never 0 (0 means "unknown", as for events
/// archived before fingerprints were kept). Bytes, not parsed content: an immutable event is
/// resent as the bytes it was sent as.
pub fn content_fingerprint(bytes: &[u8]) -> u32 {
    (twox_hash::XxHash3_64::oneshot(bytes) as u32).max(1)
}

/// Remembers event ids per tenant and event-time minute and forgets whole minutes at once.
#[derive(Debug)]
pub struct SeenIds {
    ids: HashSet<SeenKey>,
    by_minute: BTreeMap<i64, Vec<SeenKey>>,
    tenants: HashMap<Box<str>, u32>,
    /// Most ids remembered.
    cap: usize,
    /// Minutes before this were forgotten because of the cap.
    floor_minute: i64,
    /// Ids forgotten early because of the cap.
    forgotten_early: u64,
    /// Sightings counted without a check (their minute was below the floor).
    unchecked: u64,
    /// Most ids one tenant may have remembered.
    tenant_cap: usize,
    /// Each tenant's ids and floor, by its index.
    shares: Vec<Share>,
}

/// One tenant's part of the set.
#[derive(Debug, Clone, Copy)]
struct Share {
    /// Ids of the tenant remembered.
    ids: usize,
    /// The tenant's minutes before this were forgotten because of its share.
    floor_minute: i64,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self::with_cap(usize::MAX)
    }
}

impl SeenIds {
    /// Remembers at most `cap` ids.
    pub fn with_cap(cap: usize) -> Self {
        Self::with_caps(cap, cap)
    }

    /// Remembers at most `cap` ids, at most `tenant_cap` of them of one tenant.
    pub fn with_caps(cap: usize, tenant_cap: usize) -> Self {
        Self {
            ids: HashSet::default(),
            by_minute: BTreeMap::new(),
            tenants: HashMap::default(),
            cap: cap.max(1),
            floor_minute: i64::MIN,
            forgotten_early: 0,
            unchecked: 0,
            tenant_cap: tenant_cap.max(1),
            shares: Vec::new(),
        }
    }

    /// The key of `id` of `tenant` in this set (interning the tenant on first use).
    pub fn key(&mut self, tenant: &str, id: u128) -> SeenKey {
        let next = u32::try_from(self.tenants.len()).unwrap_or(u32::MAX);
        let tenant = match self.tenants.get(tenant) {
            Some(index) => *index,
            None => {
                self.shares.push(Share {
                    ids: 0,
                    floor_minute: i64::MIN,
                });
                *self.tenants.entry(tenant.into()).or_insert(next)
            }
        };
        SeenKey {
            tenant,
            fingerprint: 0,
            id_high: (id >> 64) as u64,
            id_low: id as u64,
        }
    }

    /// Records `key` (made by [`SeenIds::key`] of this set), seen at event time `at_ms`.
    pub fn first_sighting(&mut self, id: SeenKey, at_ms: i64) -> Sighting {
        if self.ids.contains(&id) {
            return Sighting::Repeat;
        }
        let minute = crate::time::minute_index(at_ms);
        let tenant = id.tenant as usize;
        let below = |seen: &Self| {
            minute < seen.floor_minute
                || seen
                    .shares
                    .get(tenant)
                    .is_some_and(|share| minute < share.floor_minute)
        };
        if below(self) {
            self.unchecked += 1;
            return Sighting::Unchecked;
        }
        self.ids.insert(id);
        self.by_minute.entry(minute).or_default().push(id);
        if let Some(share) = self.shares.get_mut(tenant) {
            share.ids += 1;
        }
        while self
            .shares
            .get(tenant)
            .is_some_and(|s| s.ids > self.tenant_cap)
        {
            if !self.forget_oldest_minute_of(id.tenant) {
                break;
            }
        }
        while self.ids.len() > self.cap {
            let Some((oldest, ids)) = self.by_minute.pop_first() else {
                break;
            };
            self.forget(&ids);
            self.forgotten_early += ids.len() as u64;
            self.floor_minute = oldest + 1;
        }
        if below(self) {
            // Its own minute was the oldest: forgotten with it.
            self.unchecked += 1;
            return Sighting::Unchecked;
        }
        Sighting::First
    }

    /// Forgets `ids` (a minute's list, taken out of `by_minute`).
    fn forget(&mut self, ids: &[SeenKey]) {
        for id in ids {
            self.ids.remove(id);
            if let Some(share) = self.shares.get_mut(id.tenant as usize) {
                share.ids -= 1;
            }
        }
    }

    /// Forgets the ids of `tenant`'s oldest minute, raising its floor past it; false when it
    /// has none. The minutes scanned start at its floor, which only moves forward, so each
    /// minute is scanned about once per tenant over its share.
    fn forget_oldest_minute_of(&mut self, tenant: u32) -> bool {
        let Some(share) = self.shares.get(tenant as usize).copied() else {
            return false;
        };
        let oldest = self
            .by_minute
            .range(share.floor_minute..)
            .find(|(_, ids)| ids.iter().any(|id| id.tenant == tenant))
            .map(|(minute, _)| *minute);
        let Some(minute) = oldest else {
            return false;
        };
        let mut removed = 0;
        let ids = &mut self.ids;
        if let Some(list) = self.by_minute.get_mut(&minute) {
            list.retain(|id| {
                let theirs = id.tenant == tenant;
                if theirs {
                    ids.remove(id);
                    removed += 1;
                }
                !theirs
            });
            if list.is_empty() {
                self.by_minute.remove(&minute);
            }
        }
        if let Some(share) = self.shares.get_mut(tenant as usize) {
            share.ids -= removed;
            share.floor_minute = minute + 1;
        }
        self.forgotten_early += removed as u64;
        true
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: SeenKey) -> bool {
        self.ids.contains(&key)
    }

    /// The fingerprint remembered with `key`'s first sighting, if it is remembered (0 when
    /// that sighting's content was unknown).
    pub fn fingerprint_of(&self, key: SeenKey) -> Option<u32> {
        self.ids.get(&key).map(|first| first.fingerprint)
    }

    /// Forgets ids whose event time is before `cutoff_ms` (whole minutes only, so an id is
    /// kept for at least the horizon).
    pub fn forget_before(&mut self, cutoff_ms: i64) {
        let cutoff_minute = crate::time::minute_index(cutoff_ms);
        while let Some(entry) = self.by_minute.first_entry() {
            if *entry.key() >= cutoff_minute {
                break;
            }
            let ids = entry.remove();
            self.forget(&ids);
        }
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Minutes holding remembered ids.
    pub fn minutes(&self) -> usize {
        self.by_minute.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Ids forgotten early because of the cap, and sightings counted without a check, since
    /// this set was made.
    pub fn capped(&self) -> (u64, u64) {
        (self.forgotten_early, self.unchecked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sighting_s_fingerprint_is_kept_in_the_key_s_24_bytes() {
        assert_eq!(std::mem::size_of::<SeenKey>(), 24);
        let mut seen = SeenIds::default();
        let first = content_fingerprint(b"{\"a\":1}");
        let key = seen.key("t", 7).with_fingerprint(first);
        assert_eq!(seen.fingerprint_of(key), None);
        assert_eq!(seen.first_sighting(key, 0), Sighting::First);
        // The same id with other content finds the first content's fingerprint.
        let other = seen
            .key("t", 7)
            .with_fingerprint(content_fingerprint(b"{\"a\":2}"));
        assert_eq!(seen.fingerprint_of(other), Some(first));
        assert_ne!(content_fingerprint(b"{\"a\":2}"), first);
        assert_ne!(content_fingerprint(b""), 0, "0 means unknown");
    }

    /// Sights `id` of one tenant.
    fn sight(seen: &mut SeenIds, id: u128, at_ms: i64) -> Sighting {
        let key = seen.key("tenant-a", id);
        seen.first_sighting(key, at_ms)
    }

    #[test]
    fn one_tenant_s_flood_shortens_its_own_horizon_only_whatever_the_order() {
        let remembered = |order: &[(u128, i64)]| {
            let mut seen = SeenIds::with_caps(1_000, 100);
            for id in 0..10u128 {
                let key = seen.key("honest", id);
                assert_eq!(seen.first_sighting(key, 0), Sighting::First);
            }
            for (id, at_ms) in order {
                let key = seen.key("flood", *id);
                seen.first_sighting(key, *at_ms);
            }
            // The honest tenant keeps its minute: a resend is recognised, a new id checked.
            let again = seen.key("honest", 3);
            assert_eq!(seen.first_sighting(again, 0), Sighting::Repeat);
            let new = seen.key("honest", 11);
            assert_eq!(seen.first_sighting(new, 0), Sighting::First);
            // The flooding tenant kept at most its share, its newest minutes.
            let kept: Vec<u128> = (0..500u128)
                .filter(|id| {
                    let key = seen.key("flood", *id);
                    seen.contains(key)
                })
                .collect();
            let old = seen.key("flood", 0);
            assert_eq!(seen.first_sighting(old, 0), Sighting::Unchecked);
            kept
        };
        // 500 ids, 10 a minute over 50 minutes, in order and backwards.
        let forward: Vec<(u128, i64)> = (0..500u128)
            .map(|i| (i, (i / 10) as i64 * 60_000))
            .collect();
        let backward: Vec<(u128, i64)> = forward.iter().rev().copied().collect();
        let kept = remembered(&forward);
        assert_eq!(kept, (400..500).collect::<Vec<_>>());
        assert_eq!(remembered(&backward), kept);
    }

    #[test]
    fn tenants_sharing_an_id_are_told_apart() {
        let mut seen = SeenIds::default();
        let a = seen.key("tenant-a", 7);
        let b = seen.key("tenant-b", 7);
        assert_ne!(a, b);
        assert_eq!(seen.first_sighting(a, 1_000), Sighting::First);
        assert_eq!(seen.first_sighting(b, 1_000), Sighting::First);
        let again = seen.key("tenant-b", 7);
        assert_eq!(seen.first_sighting(again, 1_000), Sighting::Repeat);
        assert_eq!(seen.key("tenant-a", 7), a, "a tenant keeps its index");
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn a_resend_is_recognised() {
        let mut seen = SeenIds::default();
        assert_eq!(sight(&mut seen, 7, 1_000), Sighting::First);
        assert_eq!(sight(&mut seen, 7, 1_000), Sighting::Repeat);
        assert_eq!(
            sight(&mut seen, 7, 90_000),
            Sighting::Repeat,
            "even with another timestamp"
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn ids_older_than_the_horizon_are_forgotten() {
        let mut seen = SeenIds::default();
        sight(&mut seen, 1, 0);
        sight(&mut seen, 2, 61_000);
        seen.forget_before(60_000);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            sight(&mut seen, 1, 0),
            Sighting::First,
            "forgotten, so counted again"
        );
        assert_eq!(sight(&mut seen, 2, 61_000), Sighting::Repeat);
        seen.forget_before(59_999);
        assert_eq!(seen.len(), 2, "a partial minute is kept");
    }

    #[test]
    fn past_the_cap_the_oldest_minutes_go_and_their_events_are_unchecked() {
        let mut seen = SeenIds::with_cap(4);
        for (id, minute) in [(1, 0), (2, 0), (3, 1), (4, 2)] {
            assert_eq!(sight(&mut seen, id, minute * 60_000), Sighting::First);
        }
        assert_eq!(sight(&mut seen, 5, 2 * 60_000), Sighting::First);
        assert_eq!(seen.len(), 3, "minute 0 (two ids) forgotten");
        assert_eq!(seen.capped(), (2, 0));
        assert_eq!(sight(&mut seen, 1, 0), Sighting::Unchecked);
        assert_eq!(sight(&mut seen, 9, 30_000), Sighting::Unchecked);
        assert_eq!(sight(&mut seen, 3, 60_000), Sighting::Repeat);
        assert_eq!(seen.capped(), (2, 2));
        let (one, nine) = (seen.key("tenant-a", 1), seen.key("tenant-a", 9));
        assert!(!seen.contains(one) && !seen.contains(nine));
    }

    /// What a restored task remembers must not depend on the order the archive returns ids in.
    #[test]
    fn what_is_kept_does_not_depend_on_the_order_of_arrival() {
        let ids: Vec<(u128, i64)> = (0..200u128)
            .map(|i| {
                (
                    i,
                    ((i * 7919) % 23) as i64 * 60_000 + (i as i64 % 60) * 1_000,
                )
            })
            .collect();
        let kept = |order: &[(u128, i64)]| {
            let mut seen = SeenIds::with_cap(50);
            for (id, at) in order {
                sight(&mut seen, *id, *at);
            }
            let mut kept: Vec<u128> = seen
                .ids
                .iter()
                .map(|k| u128::from(k.id_high) << 64 | u128::from(k.id_low))
                .collect();
            kept.sort_unstable();
            kept
        };
        let forward = kept(&ids);
        let mut reversed = ids.clone();
        reversed.reverse();
        let mut by_minute = ids.clone();
        by_minute.sort_by_key(|(id, at)| (*at / 60_000, *id));
        assert!(!forward.is_empty() && forward.len() <= 50);
        assert_eq!(kept(&reversed), forward);
        assert_eq!(kept(&by_minute), forward);
    }
}
