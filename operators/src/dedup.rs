//! The dedup operator's state: which `eventId`s a task has already counted, forgotten after a
//! horizon of event time, and capped, so memory stays bounded.
//!
//! Memory: at most [`BYTES_PER_ID`] bytes per remembered id (a hash-set slot and a place in
//! its minute's list, both at their worst just after growing) plus [`BYTES_PER_MINUTE`] per
//! minute that holds ids (its list and index entry: under 190 KB for a 24 h horizon),
//! measured by `operators/tests/dedup_memory.rs`. The cap ([`SeenIds::with_cap`], `pipeline.dedup_max_ids`)
//! bounds a task's ids: past it, the oldest whole minutes are forgotten early, and an event of
//! a forgotten minute is counted without a check (see [`SeenIds::first_sighting`]). What is
//! kept is the newest minutes that fit under the cap, whatever the order the ids came in, so a
//! task restored from the archive remembers exactly what the live task did (ADR 0004).

use std::collections::BTreeMap;

use rustc_hash::FxHashSet as HashSet;

/// The most heap bytes one remembered id takes.
pub const BYTES_PER_ID: usize = 72;

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

/// Remembers event ids per event-time minute and forgets whole minutes at once.
#[derive(Debug)]
pub struct SeenIds {
    ids: HashSet<u128>,
    by_minute: BTreeMap<i64, Vec<u128>>,
    /// Most ids remembered.
    cap: usize,
    /// Minutes before this were forgotten because of the cap.
    floor_minute: i64,
    /// Ids forgotten early because of the cap.
    forgotten_early: u64,
    /// Sightings counted without a check (their minute was below the floor).
    unchecked: u64,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self::with_cap(usize::MAX)
    }
}

impl SeenIds {
    /// Remembers at most `cap` ids.
    pub fn with_cap(cap: usize) -> Self {
        Self {
            ids: HashSet::default(),
            by_minute: BTreeMap::new(),
            cap: cap.max(1),
            floor_minute: i64::MIN,
            forgotten_early: 0,
            unchecked: 0,
        }
    }

    /// Records `id`, seen at event time `at_ms`.
    pub fn first_sighting(&mut self, id: u128, at_ms: i64) -> Sighting {
        if self.ids.contains(&id) {
            return Sighting::Repeat;
        }
        let minute = at_ms.div_euclid(60_000);
        if minute < self.floor_minute {
            self.unchecked += 1;
            return Sighting::Unchecked;
        }
        self.ids.insert(id);
        self.by_minute.entry(minute).or_default().push(id);
        while self.ids.len() > self.cap {
            let Some((oldest, ids)) = self.by_minute.pop_first() else {
                break;
            };
            for id in &ids {
                self.ids.remove(id);
            }
            self.forgotten_early += ids.len() as u64;
            self.floor_minute = oldest + 1;
        }
        if minute < self.floor_minute {
            // Its own minute was the oldest: forgotten with it.
            self.unchecked += 1;
            return Sighting::Unchecked;
        }
        Sighting::First
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: u128) -> bool {
        self.ids.contains(&id)
    }

    /// Forgets ids whose event time is before `cutoff_ms` (whole minutes only, so an id is
    /// kept for at least the horizon).
    pub fn forget_before(&mut self, cutoff_ms: i64) {
        let cutoff_minute = cutoff_ms.div_euclid(60_000);
        while let Some(entry) = self.by_minute.first_entry() {
            if *entry.key() >= cutoff_minute {
                break;
            }
            for id in entry.remove() {
                self.ids.remove(&id);
            }
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
    fn a_resend_is_recognised() {
        let mut seen = SeenIds::default();
        assert_eq!(seen.first_sighting(7, 1_000), Sighting::First);
        assert_eq!(seen.first_sighting(7, 1_000), Sighting::Repeat);
        assert_eq!(
            seen.first_sighting(7, 90_000),
            Sighting::Repeat,
            "even with another timestamp"
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn ids_older_than_the_horizon_are_forgotten() {
        let mut seen = SeenIds::default();
        seen.first_sighting(1, 0);
        seen.first_sighting(2, 61_000);
        seen.forget_before(60_000);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen.first_sighting(1, 0),
            Sighting::First,
            "forgotten, so counted again"
        );
        assert_eq!(seen.first_sighting(2, 61_000), Sighting::Repeat);
        seen.forget_before(59_999);
        assert_eq!(seen.len(), 2, "a partial minute is kept");
    }

    #[test]
    fn past_the_cap_the_oldest_minutes_go_and_their_events_are_unchecked() {
        let mut seen = SeenIds::with_cap(4);
        for (id, minute) in [(1, 0), (2, 0), (3, 1), (4, 2)] {
            assert_eq!(seen.first_sighting(id, minute * 60_000), Sighting::First);
        }
        assert_eq!(seen.first_sighting(5, 2 * 60_000), Sighting::First);
        assert_eq!(seen.len(), 3, "minute 0 (two ids) forgotten");
        assert_eq!(seen.capped(), (2, 0));
        assert_eq!(seen.first_sighting(1, 0), Sighting::Unchecked);
        assert_eq!(seen.first_sighting(9, 30_000), Sighting::Unchecked);
        assert_eq!(seen.first_sighting(3, 60_000), Sighting::Repeat);
        assert_eq!(seen.capped(), (2, 2));
        assert!(!seen.contains(1) && !seen.contains(9));
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
                seen.first_sighting(*id, *at);
            }
            let mut kept: Vec<u128> = seen.ids.iter().copied().collect();
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
