//! The dedup operator's state: which `eventId`s a task has already counted, forgotten after a
//! horizon of event time so memory stays bounded (about 40 bytes per event in the horizon).

use std::collections::BTreeMap;

use rustc_hash::FxHashSet as HashSet;

/// Remembers event ids per event-time minute and forgets whole minutes at once.
#[derive(Debug, Default)]
pub struct SeenIds {
    ids: HashSet<u128>,
    by_minute: BTreeMap<i64, Vec<u128>>,
}

impl SeenIds {
    /// Records `id` (seen at event time `at_ms`); returns `false` if it was already known.
    pub fn first_sighting(&mut self, id: u128, at_ms: i64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.by_minute
            .entry(at_ms.div_euclid(60_000))
            .or_default()
            .push(id);
        true
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

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resend_is_recognised() {
        let mut seen = SeenIds::default();
        assert!(seen.first_sighting(7, 1_000));
        assert!(!seen.first_sighting(7, 1_000));
        assert!(
            !seen.first_sighting(7, 90_000),
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
        assert!(seen.first_sighting(1, 0), "forgotten, so counted again");
        assert!(!seen.first_sighting(2, 61_000));
        seen.forget_before(59_999);
        assert_eq!(seen.len(), 2, "a partial minute is kept");
    }
}
