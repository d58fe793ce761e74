//! Deliveries awaiting their consumer groups' commits, so a group's latency runs from event
//! time to the commit that covers the event (the contract's latency is per consumer, and a
//! routing target's consumers are the groups reading its topic).
//!
//! The delivery sink notes each record a target's broker acknowledged (partition, offset,
//! event time, tenant, type); the downstream watch of `salestalk run` polls each group's
//! committed offsets and takes the records a commit newly covers, once per group. A record
//! leaves once every group reading its topic has committed past it. Memory is bounded: past
//! `capacity` records held (a stopped group holds everything delivered since), every
//! partition's records are thinned to every other one, each kept record standing for the one
//! dropped (its weight), so counts stay whole and the latencies a fair sample. Each instance
//! measures what it delivered; a restart forgets what it held (operational, like
//! `delivery_latency` itself).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use salestalk_contracts::EventType;

/// One delivered record awaiting commits.
#[derive(Debug, Clone)]
struct Awaited {
    offset: i64,
    event_ms: i64,
    /// Records it stands for (more than one once thinned).
    weight: u32,
    tenant: Arc<str>,
    event_type: EventType,
}

/// One partition's records, and how far each group has been measured on it.
#[derive(Debug, Default)]
struct Partition {
    records: VecDeque<Awaited>,
    /// Per group: the offset below which its commits were taken.
    measured_to: HashMap<String, i64>,
}

#[derive(Debug, Default)]
struct State {
    /// By topic, then partition: a topic looked up by `&str`, no allocation per record.
    partitions: HashMap<String, HashMap<i32, Partition>>,
    held: usize,
    /// Each tenant's name once, shared by its records.
    tenants: HashSet<Arc<str>>,
}

/// A delivered record a group's commit covered.
#[derive(Debug, Clone, PartialEq)]
pub struct Covered {
    /// Its tenant.
    pub tenant: Arc<str>,
    /// Its event type.
    pub event_type: EventType,
    /// From event time to the commit, ms.
    pub latency_ms: f64,
    /// Records it stands for.
    pub weight: u64,
}

/// The records delivered to the watched targets' topics that some group has not committed.
#[derive(Debug)]
pub struct AwaitingCommit {
    /// Per topic, the groups reading it.
    groups: HashMap<String, Vec<String>>,
    capacity: usize,
    state: Mutex<State>,
}

impl AwaitingCommit {
    /// Records held before they are thinned.
    pub const DEFAULT_CAPACITY: usize = 1 << 20;

    /// Watches `groups` ((group, topic) pairs), holding at most about `capacity` records.
    pub fn new(groups: &[(String, String)], capacity: usize) -> Self {
        let mut by_topic: HashMap<String, Vec<String>> = HashMap::new();
        for (group, topic) in groups {
            by_topic
                .entry(topic.clone())
                .or_default()
                .push(group.clone());
        }
        Self {
            groups: by_topic,
            capacity: capacity.max(2),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any group reads `topic` (nothing else is held).
    pub fn watches(&self, topic: &str) -> bool {
        self.groups.contains_key(topic)
    }

    /// Notes records acknowledged on `topic`: (partition, offset, event time ms, tenant, type).
    pub fn delivered<'a>(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = (i32, i64, i64, &'a str, EventType)>,
    ) {
        if !self.watches(topic) {
            return;
        }
        let mut state = self.state();
        let State {
            partitions,
            held,
            tenants,
        } = &mut *state;
        if !partitions.contains_key(topic) {
            partitions.insert(topic.to_string(), HashMap::new());
        }
        let Some(topic_partitions) = partitions.get_mut(topic) else {
            return;
        };
        for (partition, offset, event_ms, tenant, event_type) in records {
            let tenant = match tenants.get(tenant) {
                Some(shared) => Arc::clone(shared),
                None => {
                    let shared: Arc<str> = Arc::from(tenant);
                    tenants.insert(Arc::clone(&shared));
                    shared
                }
            };
            topic_partitions
                .entry(partition)
                .or_default()
                .records
                .push_back(Awaited {
                    offset,
                    event_ms,
                    weight: 1,
                    tenant,
                    event_type,
                });
            *held += 1;
        }
        if state.held > self.capacity {
            state.thin();
        }
    }

    /// The partitions of `topic` holding records.
    pub fn partitions(&self, topic: &str) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .state()
            .partitions
            .get(topic)
            .into_iter()
            .flatten()
            .filter(|(_, p)| !p.records.is_empty())
            .map(|(partition, _)| *partition)
            .collect();
        out.sort_unstable();
        out
    }

    /// The records `group`'s commit `committed` on `topic`'s `partition` newly covers, seen
    /// committed at `commit_ms`; each record once per group. Records every group of the topic
    /// has committed past leave.
    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        committed: i64,
        commit_ms: i64,
    ) -> Vec<Covered> {
        let Some(groups) = self.groups.get(topic) else {
            return Vec::new();
        };
        let mut state = self.state();
        let State {
            partitions, held, ..
        } = &mut *state;
        let Some(awaiting) = partitions
            .get_mut(topic)
            .and_then(|partitions| partitions.get_mut(&partition))
        else {
            return Vec::new();
        };
        let from = awaiting.measured_to.get(group).copied().unwrap_or(i64::MIN);
        if committed <= from {
            return Vec::new();
        }
        let covered: Vec<Covered> = awaiting
            .records
            .iter()
            .filter(|r| r.offset >= from && r.offset < committed)
            .map(|r| Covered {
                tenant: Arc::clone(&r.tenant),
                event_type: r.event_type,
                latency_ms: (commit_ms - r.event_ms).max(0) as f64,
                weight: u64::from(r.weight),
            })
            .collect();
        awaiting.measured_to.insert(group.to_string(), committed);
        let floor = groups
            .iter()
            .map(|g| awaiting.measured_to.get(g).copied().unwrap_or(i64::MIN))
            .min()
            .unwrap_or(i64::MIN);
        let before = awaiting.records.len();
        awaiting.records.retain(|r| r.offset >= floor);
        *held -= before - awaiting.records.len();
        covered
    }

    /// Forgets the names of tenants no held record has any more (call now and then).
    pub fn settle(&self) {
        self.state().tenants.retain(|t| Arc::strong_count(t) > 1);
    }

    /// Records held now (thinned ones counted once).
    pub fn held(&self) -> usize {
        self.state().held
    }
}

impl State {
    /// Halves every partition's records: each pair becomes its first, standing for both.
    fn thin(&mut self) {
        let mut held = 0;
        for partition in self.partitions.values_mut().flat_map(HashMap::values_mut) {
            let mut kept = VecDeque::with_capacity(partition.records.len() / 2 + 1);
            let mut records = partition.records.drain(..);
            while let Some(mut first) = records.next() {
                if let Some(second) = records.next() {
                    first.weight = first.weight.saturating_add(second.weight);
                }
                kept.push_back(first);
            }
            drop(records);
            held += kept.len();
            partition.records = kept;
        }
        self.held = held;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: EventType = EventType::ClassificationPerformedV1;

    fn watching() -> AwaitingCommit {
        AwaitingCommit::new(
            &[
                ("billing".to_string(), "t.billing".to_string()),
                ("email".to_string(), "t.billing".to_string()),
            ],
            1_000,
        )
    }

    #[test]
    fn each_group_measures_each_record_once_and_records_leave_once_every_group_passed() {
        let awaiting = watching();
        awaiting.delivered(
            "t.billing",
            (0..10).map(|offset| (0, offset, 1_000 + offset, "tenant-a", TYPE)),
        );
        awaiting.delivered("t.unwatched", [(0, 0, 0, "tenant-a", TYPE)]);
        assert_eq!(awaiting.held(), 10);

        let first = awaiting.committed("billing", "t.billing", 0, 4, 5_000);
        assert_eq!(first.len(), 4);
        assert_eq!(first[0].latency_ms, 4_000.0);
        assert_eq!(first[3].latency_ms, 3_997.0);
        assert!(
            awaiting
                .committed("billing", "t.billing", 0, 4, 6_000)
                .is_empty()
        );
        assert_eq!(awaiting.held(), 10, "email has not committed");

        let email = awaiting.committed("email", "t.billing", 0, 10, 7_000);
        assert_eq!(email.len(), 10);
        assert_eq!(awaiting.held(), 6, "both passed offset 3");
        assert_eq!(
            awaiting
                .committed("billing", "t.billing", 0, 10, 8_000)
                .len(),
            6
        );
        assert_eq!(awaiting.held(), 0);
        awaiting.settle();
        assert_eq!(
            awaiting.state().tenants.len(),
            1,
            "still named by what was covered"
        );
        drop((first, email));
        awaiting.settle();
        assert!(awaiting.state().tenants.is_empty());
    }

    #[test]
    fn past_the_capacity_records_are_thinned_and_their_weight_kept() {
        let awaiting = AwaitingCommit::new(&[("g".to_string(), "t".to_string())], 100);
        awaiting.delivered("t", (0..101).map(|o| (1, o, 0, "tenant-b", TYPE)));
        assert!(awaiting.held() <= 51, "{}", awaiting.held());
        let covered = awaiting.committed("g", "t", 1, 101, 10);
        assert_eq!(covered.iter().map(|c| c.weight).sum::<u64>(), 101);
        assert_eq!(awaiting.held(), 0);
    }

    #[test]
    fn a_commit_before_the_first_record_covers_nothing() {
        let awaiting = watching();
        awaiting.delivered("t.billing", [(2, 50, 0, "tenant-a", TYPE)]);
        assert!(
            awaiting
                .committed("billing", "t.billing", 2, 50, 10)
                .is_empty()
        );
        assert!(
            awaiting
                .committed("billing", "t.billing", 3, 99, 10)
                .is_empty()
        );
        assert_eq!(awaiting.partitions("t.billing"), [2]);
    }
}
