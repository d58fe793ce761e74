//! The dedup operator's state: which `(tenantId, eventId)` pairs a task has already counted,
//! forgotten after a horizon of event time, and capped, so memory stays bounded.
//!
//! An id is unique only within its tenant: one tenant reusing another's `eventId` (by bug or
//! on purpose) must not suppress the other's event, so ids are kept per tenant. Tenants are
//! interned per set ([`SeenIds::key`]); each tenant's ids are stored exactly (all 128 bits, so
//! no verdict is ever a guess: ADR 0020), as [`Slot`]s of 20 bytes: the id, the minute it is
//! remembered under, and 16 bits of the first content's fingerprint.
//!
//! Layout (ADR 0020): a tenant's ids are a gapless array sorted by id (binary search), plus a
//! small hash map of its newest ids, merged into the array once it holds a 32nd of it (each id
//! is copied about 32 times over its life, in long sequential runs). A hash table would need
//! its empty slots: twice the bytes just after it grows. Forgetting marks ids dead (a minute
//! below a floor); dead slots are dropped when more than a 16th of what is held is dead, so
//! memory is at most [`BYTES_PER_ID`] per remembered id, plus [`BYTES_PER_MINUTE`] per minute
//! holding ids and [`BYTES_PER_TENANT`] per tenant, measured by
//! `operators/tests/dedup_memory.rs`.
//!
//! The cap ([`SeenIds::with_cap`], `pipeline.dedup_max_ids`) bounds a task's ids: past it, the
//! oldest whole minutes are forgotten early, and an event of a forgotten minute is counted
//! without a check (see [`SeenIds::first_sighting`]). What is kept is the newest minutes that
//! fit under the cap, whatever the order the ids came in, so a task restored from the archive
//! remembers exactly what the live task did (ADR 0004), as long as the restore gives each id
//! the minute the live task used: its window, the broker's minute for a clock-skewed event
//! (`store::tables::events_raw::SEEN_QUERY`).
//!
//! Each tenant also has a share ([`SeenIds::with_caps`], `pipeline.dedup_max_ids_per_tenant`):
//! past it, that tenant's own oldest minutes are forgotten (its floor rises, nobody else's), so
//! one tenant's flood of distinct ids shortens its own horizon, not its neighbours'. The same
//! rule per tenant: its newest minutes that fit under its share are kept, whatever the order.
//! A tenant at its share is tracked by minute (its ids per minute, [`BYTES_PER_MINUTE`] each)
//! until it is back under half of it.

use std::collections::{BTreeMap, HashMap as StdHashMap};

use foldhash::fast::RandomState;

use rustc_hash::FxHashMap as HashMap;

/// The most heap bytes one remembered id takes.
pub const BYTES_PER_ID: usize = 24;

/// The most heap bytes a minute holding ids takes besides its ids (also per minute of a
/// tenant at its share).
pub const BYTES_PER_MINUTE: usize = 128;

/// The most heap bytes a tenant takes besides its ids (its name of up to 64 bytes included).
pub const BYTES_PER_TENANT: usize = 512;

/// A tenant's newest ids are merged into its sorted array once they are this share of it.
const MERGE_AT_FRACTION: usize = 32;

/// Below this many sorted ids, a tenant's newest are merged in fives (a small tenant's map
/// stays at its smallest table).
const SMALL: usize = 128;

/// Dead slots are dropped once they are this share of the slots held.
const COMPACT_AT_FRACTION: usize = 16;

/// Minutes a slot can tell apart, from the set's epoch (45 days).
const MINUTE_RANGE: i64 = u16::MAX as i64;

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

/// How a remembered id's first content compares with another sighting's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstContent {
    /// The first sighting's content is unknown (archived before fingerprints were kept).
    Unknown,
    /// The same bytes, as far as 16 bits of their fingerprint tell.
    Same,
    /// Other bytes: a conflicting duplicate.
    Other,
}

/// What a set holds of one key ([`SeenIds::look_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookedUp {
    /// Remembered: a repeat, its first content compared.
    Live(FirstContent),
    /// Not remembered (a slot of it forgotten but not yet dropped: `dead_slot`).
    Absent {
        /// A dead slot of the id is held, to be reused.
        dead_slot: bool,
    },
}

impl LookedUp {
    /// How the first content compares, if the id is remembered.
    pub fn first_content(self) -> Option<FirstContent> {
        match self {
            Self::Live(first) => Some(first),
            Self::Absent { .. } => None,
        }
    }
}

/// One event's identity within a task: its tenant (interned by the set that made the key)
/// and its `eventId`; and the fingerprint of the content seen with it, which a repeat is
/// compared with (a conflicting duplicate: the contract says events are immutable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenKey {
    tenant: u32,
    fingerprint: u32,
    id_high: u64,
    id_low: u64,
}

impl SeenKey {
    /// The key carrying `fingerprint` (of the content seen with it; 0: unknown).
    pub fn with_fingerprint(self, fingerprint: u32) -> Self {
        Self {
            fingerprint,
            ..self
        }
    }

    /// The id's bytes, big-endian: their order is the ids' order.
    fn id_bytes(&self) -> IdBytes {
        (u128::from(self.id_high) << 64 | u128::from(self.id_low)).to_be_bytes()
    }
}

/// The fingerprint of an event's bytes: XXH3, never 0 (0 means "unknown", as for events
/// archived before fingerprints were kept). Bytes, not parsed content: an immutable event is
/// resent as the bytes it was sent as.
pub fn content_fingerprint(bytes: &[u8]) -> u32 {
    (twox_hash::XxHash3_64::oneshot(bytes) as u32).max(1)
}

/// The 16 bits of a fingerprint a slot keeps (0 stays "unknown", nothing else becomes 0).
fn narrow(fingerprint: u32) -> u16 {
    if fingerprint == 0 {
        0
    } else {
        ((fingerprint ^ (fingerprint >> 16)) as u16).max(1)
    }
}

type IdBytes = [u8; 16];

/// The ids' order as one integer comparison (two machine words, no byte-wise compare).
fn order(id: &IdBytes) -> u128 {
    u128::from_be_bytes(*id)
}

/// One remembered id: 20 bytes, byte-aligned so an array of them has no padding.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: IdBytes,
    /// Its minute, from the set's epoch.
    minute: u16,
    /// [`narrow`] of its first content's fingerprint.
    fingerprint: u16,
}

/// One tenant's ids.
#[derive(Debug)]
struct TenantIds {
    /// By id, gapless.
    sorted: Vec<Slot>,
    /// The newest ids (minute, fingerprint): merged into `sorted` once a 32nd of it. Keyed
    /// with a per-process random seed: a tenant picks its ids, not where they land.
    recent: StdHashMap<IdBytes, [u16; 2], RandomState>,
    /// Its minutes before this were forgotten because of its share.
    floor_minute: i64,
    /// While it is at its share: its remembered ids per minute.
    at_share: Option<Box<AtShare>>,
}

/// A tenant at its share, tracked by minute so its oldest can go without a scan.
#[derive(Debug, Default)]
struct AtShare {
    per_minute: BTreeMap<i64, usize>,
    live: usize,
}

impl TenantIds {
    fn new() -> Self {
        Self {
            sorted: Vec::new(),
            recent: StdHashMap::with_hasher(RandomState::default()),
            floor_minute: i64::MIN,
            at_share: None,
        }
    }

    fn held(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// The remembered (minute, fingerprint) of `id`, live or dead.
    fn find(&self, id: &IdBytes) -> Option<[u16; 2]> {
        if let Some(found) = self.recent.get(id) {
            return Some(*found);
        }
        let id = order(id);
        let at = self
            .sorted
            .binary_search_by(|slot| order(&slot.id).cmp(&id))
            .ok()?;
        self.sorted
            .get(at)
            .map(|slot| [slot.minute, slot.fingerprint])
    }

    /// Gives `id`'s slot (which must be held) a new minute and fingerprint.
    fn revive(&mut self, id: &IdBytes, value: [u16; 2]) {
        if let Some(found) = self.recent.get_mut(id) {
            *found = value;
        } else if let Ok(at) = self
            .sorted
            .binary_search_by(|slot| order(&slot.id).cmp(&order(id)))
            && let Some(slot) = self.sorted.get_mut(at)
        {
            [slot.minute, slot.fingerprint] = value;
        }
    }

    /// Drops the slots `live` refuses, merging the newest into the sorted array when `merge`
    /// (or when they are past their share of it); returns how many were dropped.
    /// `all_live`: no slot of the set is dead (nothing to test).
    fn compact(&mut self, merge: bool, all_live: bool, live: impl Fn(u16) -> bool) -> usize {
        let before = self.held();
        if merge || self.recent.len() * MERGE_AT_FRACTION > self.sorted.len().max(SMALL) {
            let mut newest: Vec<Slot> = self
                .recent
                .drain()
                .filter(|(_, [minute, _])| live(*minute))
                .map(|(id, [minute, fingerprint])| Slot {
                    id,
                    minute,
                    fingerprint,
                })
                .collect();
            newest.sort_unstable_by_key(|slot| order(&slot.id));
            // One pass: sized for everything, trimmed if dead slots were left out. With none
            // dead, the old ids between two new ones are copied as one run.
            let old = std::mem::take(&mut self.sorted);
            let mut merged = Vec::with_capacity(old.len() + newest.len());
            let mut rest = old.as_slice();
            for new in newest {
                let new_id = order(&new.id);
                let before = rest.partition_point(|slot| order(&slot.id) < new_id);
                let (earlier, later) = rest.split_at(before);
                if all_live {
                    merged.extend_from_slice(earlier);
                } else {
                    merged.extend(earlier.iter().filter(|s| live(s.minute)));
                }
                merged.push(new);
                rest = later;
            }
            if all_live {
                merged.extend_from_slice(rest);
            } else {
                merged.extend(rest.iter().filter(|s| live(s.minute)));
            }
            if merged.capacity() > merged.len() + merged.len() / 64 {
                merged.shrink_to_fit();
            }
            self.sorted = merged;
            // Its map keeps its table for the next ids, unless far too big for them.
            let room = self.sorted.len() / MERGE_AT_FRACTION + 8;
            if self.recent.capacity() > 3 * room {
                self.recent.shrink_to(room);
            }
        } else {
            self.sorted.retain(|slot| live(slot.minute));
            self.recent.retain(|_, [minute, _]| live(*minute));
            if self.sorted.capacity() > self.sorted.len() + self.sorted.len() / 64 {
                self.sorted.shrink_to_fit();
            }
        }
        before - self.held()
    }

    /// Live ids per minute (by `minute_of`), for a tenant reaching its share.
    fn live_per_minute(
        &self,
        live: impl Fn(u16) -> bool,
        minute_of: impl Fn(u16) -> i64,
    ) -> AtShare {
        let mut at_share = AtShare::default();
        let minutes = self
            .sorted
            .iter()
            .map(|slot| slot.minute)
            .chain(self.recent.values().map(|[minute, _]| *minute));
        for minute in minutes.filter(|m| live(*m)) {
            *at_share.per_minute.entry(minute_of(minute)).or_default() += 1;
            at_share.live += 1;
        }
        at_share
    }
}

/// The ids a task counted before its checkpoint, as a restore reads them back from the archive
/// (ADR 0004): 32 bytes an id, each tenant named once, so that a restore of a long horizon
/// holds a fraction of what the [`SeenIds`] it becomes will (the rows of the archive's answer
/// are taken one at a time, never all at once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountedIds {
    tenants: Vec<Box<str>>,
    /// Index of each tenant in `tenants`, while ids are added.
    tenant_index: HashMap<Box<str>, u32>,
    ids: Vec<CountedId>,
}

/// One counted id: its tenant's index, the minute it is remembered under (Unix ms), its
/// content's fingerprint (0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CountedId {
    id: u128,
    at_ms: i64,
    tenant: u32,
    fingerprint: u32,
}

impl CountedIds {
    /// Adds `id` of `tenant`, remembered under `at_ms`, with its content's `fingerprint`.
    pub fn push(&mut self, tenant: &str, id: u128, at_ms: i64, fingerprint: u32) {
        let next = u32::try_from(self.tenants.len()).unwrap_or(u32::MAX);
        let tenant = match self.tenant_index.get(tenant) {
            Some(index) => *index,
            None => {
                self.tenants.push(tenant.into());
                self.tenant_index.insert(tenant.into(), next);
                next
            }
        };
        self.ids.push(CountedId {
            id,
            at_ms,
            tenant,
            fingerprint,
        });
    }

    /// Adds every id of `other` (a parent shard's, read back for its child).
    pub fn extend(&mut self, other: CountedIds) {
        for counted in &other.ids {
            let tenant = &other.tenants[counted.tenant as usize];
            self.push(tenant, counted.id, counted.at_ms, counted.fingerprint);
        }
    }

    /// How many ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Each id as (tenant, id, minute in Unix ms, fingerprint), in the order added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u128, i64, u32)> + '_ {
        self.ids.iter().map(|counted| {
            (
                &*self.tenants[counted.tenant as usize],
                counted.id,
                counted.at_ms,
                counted.fingerprint,
            )
        })
    }
}

/// Remembers event ids per tenant and event-time minute and forgets whole minutes at once.
#[derive(Debug)]
pub struct SeenIds {
    tenants: HashMap<Box<str>, u32>,
    /// Each tenant's ids, by its index.
    ids: Vec<TenantIds>,
    /// Remembered (live) ids per minute, all tenants.
    per_minute: BTreeMap<i64, usize>,
    /// Slots held, live or dead.
    held: usize,
    /// Slots held whose minute was forgotten (below a floor or the horizon).
    dead: usize,
    /// The minute slots count from (set by the first id).
    epoch: Option<i64>,
    /// Most ids remembered.
    cap: usize,
    /// Minutes before this were forgotten because of the cap.
    floor_minute: i64,
    /// Minutes before this are past the horizon ([`SeenIds::forget_before`]).
    expired_below: i64,
    /// Ids forgotten early because of the cap.
    forgotten_early: u64,
    /// Sightings counted without a check (their minute was below the floor).
    unchecked: u64,
    /// Most ids one tenant may have remembered.
    tenant_cap: usize,
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
            tenants: HashMap::default(),
            ids: Vec::new(),
            per_minute: BTreeMap::new(),
            held: 0,
            dead: 0,
            epoch: None,
            cap: cap.max(1),
            floor_minute: i64::MIN,
            expired_below: i64::MIN,
            forgotten_early: 0,
            unchecked: 0,
            tenant_cap: tenant_cap.max(1),
        }
    }

    /// Changes the caps, as the instance's budget is shared again among the tasks it owns:
    /// past a smaller one, the oldest minutes go at once (each tenant's past its share, then
    /// the set's), as if the ids had come under that cap; a larger one keeps what is
    /// remembered and lets more in (what was forgotten stays forgotten).
    pub fn set_caps(&mut self, cap: usize, tenant_cap: usize) {
        self.cap = cap.max(1);
        self.tenant_cap = tenant_cap.max(1);
        for tenant in 0..self.ids.len() {
            self.keep_share(tenant);
        }
        self.keep_cap();
        self.compact_if_mostly_dead();
    }

    /// The caps: most ids, most of one tenant.
    pub fn caps(&self) -> (usize, usize) {
        (self.cap, self.tenant_cap)
    }

    /// The key of `id` of `tenant` in this set (interning the tenant on first use).
    pub fn key(&mut self, tenant: &str, id: u128) -> SeenKey {
        let next = u32::try_from(self.tenants.len()).unwrap_or(u32::MAX);
        let tenant = match self.tenants.get(tenant) {
            Some(index) => *index,
            None => {
                self.ids.push(TenantIds::new());
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

    fn minute_of(epoch: i64, stored: u16) -> i64 {
        epoch + i64::from(stored)
    }

    /// Whether a slot's stored minute is at or after `live_from`.
    fn is_live(epoch: i64, live_from: i64) -> impl Fn(u16) -> bool {
        move |stored| Self::minute_of(epoch, stored) >= live_from
    }

    /// The first minute whose ids of `tenant` are remembered.
    fn live_from(&self, tenant: usize) -> i64 {
        let own = self.ids.get(tenant).map_or(i64::MIN, |t| t.floor_minute);
        self.floor_minute.max(self.expired_below).max(own)
    }

    /// The remembered (minute, fingerprint) of `key`: `Ok` if it is live, `Err(true)` if only
    /// a dead slot of it is held.
    fn slot(&self, key: SeenKey) -> Result<[u16; 2], bool> {
        let (Some(epoch), Some(tenant)) = (self.epoch, self.ids.get(key.tenant as usize)) else {
            return Err(false);
        };
        let found = tenant.find(&key.id_bytes()).ok_or(false)?;
        if Self::minute_of(epoch, found[0]) >= self.live_from(key.tenant as usize) {
            Ok(found)
        } else {
            Err(true)
        }
    }

    /// The remembered (minute, fingerprint) of `key`, if it is live.
    fn live_slot(&self, key: SeenKey) -> Option<[u16; 2]> {
        self.slot(key).ok()
    }

    /// Records `key` (made by [`SeenIds::key`] of this set), seen at event time `at_ms`.
    pub fn first_sighting(&mut self, key: SeenKey, at_ms: i64) -> Sighting {
        let looked_up = self.look_up(key);
        self.remember(key, at_ms, looked_up)
    }

    /// What this set holds of `key`: [`LookedUp::first_content`], and what
    /// [`SeenIds::remember`] needs to record it without looking again.
    pub fn look_up(&self, key: SeenKey) -> LookedUp {
        match self.slot(key) {
            Ok([_, first]) => LookedUp::Live(if first == 0 {
                FirstContent::Unknown
            } else if first == narrow(key.fingerprint) {
                FirstContent::Same
            } else {
                FirstContent::Other
            }),
            Err(dead) => LookedUp::Absent { dead_slot: dead },
        }
    }

    /// [`SeenIds::first_sighting`] of `key`, given what [`SeenIds::look_up`] found for it
    /// with no change to this set since (one lookup per event instead of two).
    pub fn remember(&mut self, key: SeenKey, at_ms: i64, looked_up: LookedUp) -> Sighting {
        let dead_slot = match looked_up {
            LookedUp::Live(_) => return Sighting::Repeat,
            LookedUp::Absent { dead_slot } => dead_slot,
        };
        let tenant = key.tenant as usize;
        let minute = crate::time::minute_index(at_ms);
        let below = |seen: &Self, minute: i64| {
            minute < seen.floor_minute
                || seen
                    .ids
                    .get(tenant)
                    .is_some_and(|t| minute < t.floor_minute)
        };
        if below(self, minute) {
            self.unchecked += 1;
            return Sighting::Unchecked;
        }
        if minute < self.expired_below {
            // Past the horizon already: counted, and forgotten at once as it would be at the
            // next horizon pass.
            return Sighting::First;
        }
        let stored = self.stored_minute(minute);
        let epoch = self.epoch.unwrap_or(minute);
        let minute = Self::minute_of(epoch, stored);
        let id = key.id_bytes();
        let value = [stored, narrow(key.fingerprint)];
        let Some(ids) = self.ids.get_mut(tenant) else {
            return Sighting::First;
        };
        // (Still held: moving the epoch compacts.)
        if dead_slot && ids.find(&id).is_some() {
            // A dead slot of the same id comes back to life.
            ids.revive(&id, value);
            self.dead -= 1;
        } else {
            ids.recent.insert(id, value);
            self.held += 1;
            if ids.recent.len() * MERGE_AT_FRACTION > ids.sorted.len().max(SMALL) {
                let live_from = self
                    .floor_minute
                    .max(self.expired_below)
                    .max(ids.floor_minute);
                let all_live = self.dead == 0;
                let dropped = ids.compact(true, all_live, Self::is_live(epoch, live_from));
                self.held -= dropped;
                self.dead -= dropped;
            }
        }
        *self.per_minute.entry(minute).or_default() += 1;
        if let Some(at_share) = ids.at_share.as_mut() {
            *at_share.per_minute.entry(minute).or_default() += 1;
            at_share.live += 1;
        }
        self.keep_share(tenant);
        self.keep_cap();
        self.compact_if_mostly_dead();
        if below(self, minute) {
            // Its own minute was the oldest: forgotten with it.
            self.unchecked += 1;
            return Sighting::Unchecked;
        }
        Sighting::First
    }

    /// `minute` as a slot stores it: from the epoch, which moves up (with a full compaction)
    /// when a minute is past its range and the horizon has left room; a minute still out of
    /// range (45 days from every remembered one) is clamped, remembered a little longer or
    /// shorter than its own minute says.
    fn stored_minute(&mut self, minute: i64) -> u16 {
        let epoch = *self.epoch.get_or_insert(minute - MINUTE_RANGE / 2);
        let live_from = self.floor_minute.max(self.expired_below);
        if minute - epoch > MINUTE_RANGE && live_from > epoch {
            self.compact_all();
            let shift = (live_from - epoch).min(minute - epoch - MINUTE_RANGE / 2);
            let new_epoch = epoch + shift.max(0);
            let down = (new_epoch - epoch) as u16;
            for tenant in &mut self.ids {
                for slot in &mut tenant.sorted {
                    slot.minute = slot.minute.saturating_sub(down);
                }
                for [m, _] in tenant.recent.values_mut() {
                    *m = m.saturating_sub(down);
                }
            }
            self.epoch = Some(new_epoch);
        }
        let epoch = self.epoch.unwrap_or(minute);
        (minute - epoch).clamp(0, MINUTE_RANGE) as u16
    }

    /// Forgets the oldest minutes while more than the cap are remembered.
    fn keep_cap(&mut self) {
        while self.held - self.dead > self.cap {
            let Some((oldest, count)) = self.per_minute.pop_first() else {
                break;
            };
            self.dead += count;
            self.forgotten_early += count as u64;
            self.floor_minute = oldest + 1;
        }
    }

    /// Forgets `tenant`'s oldest minutes while it has more than its share.
    fn keep_share(&mut self, tenant: usize) {
        let Some(epoch) = self.epoch else { return };
        let global_from = self.floor_minute.max(self.expired_below);
        let Some(ids) = self.ids.get_mut(tenant) else {
            return;
        };
        if ids.at_share.is_none() {
            if ids.held() <= self.tenant_cap {
                return;
            }
            let live_from = global_from.max(ids.floor_minute);
            let dropped = ids.compact(false, false, Self::is_live(epoch, live_from));
            self.held -= dropped;
            self.dead -= dropped;
            if ids.held() + self.tenant_cap / COMPACT_AT_FRACTION <= self.tenant_cap {
                return;
            }
            ids.at_share = Some(Box::new(
                ids.live_per_minute(Self::is_live(epoch, live_from), |m| {
                    Self::minute_of(epoch, m)
                }),
            ));
        }
        let Some(at_share) = ids.at_share.as_mut() else {
            return;
        };
        // Minutes the cap or the horizon forgot since are dead already.
        while let Some(entry) = at_share.per_minute.first_entry() {
            if *entry.key() >= global_from {
                break;
            }
            at_share.live -= entry.remove();
        }
        while at_share.live > self.tenant_cap {
            let Some((oldest, count)) = at_share.per_minute.pop_first() else {
                break;
            };
            at_share.live -= count;
            if let Some(all) = self.per_minute.get_mut(&oldest) {
                *all -= count;
                if *all == 0 {
                    self.per_minute.remove(&oldest);
                }
            }
            self.dead += count;
            self.forgotten_early += count as u64;
            ids.floor_minute = oldest + 1;
        }
        if at_share.live <= self.tenant_cap / 2 {
            ids.at_share = None;
        }
    }

    /// Drops every dead slot once they are more than a 16th of what is held.
    fn compact_if_mostly_dead(&mut self) {
        if self.dead > 1_024 && self.dead * COMPACT_AT_FRACTION > self.held {
            self.compact_all();
        }
    }

    fn compact_all(&mut self) {
        let Some(epoch) = self.epoch else { return };
        let global_from = self.floor_minute.max(self.expired_below);
        for ids in &mut self.ids {
            let live_from = global_from.max(ids.floor_minute);
            let dropped = ids.compact(false, false, Self::is_live(epoch, live_from));
            self.held -= dropped;
            self.dead -= dropped;
        }
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: SeenKey) -> bool {
        self.live_slot(key).is_some()
    }

    /// How the content first seen with `key` compares with `key`'s, if it is remembered.
    pub fn first_content(&self, key: SeenKey) -> Option<FirstContent> {
        self.look_up(key).first_content()
    }

    /// Forgets ids whose event time is before `cutoff_ms` (whole minutes only, so an id is
    /// kept for at least the horizon).
    pub fn forget_before(&mut self, cutoff_ms: i64) {
        let cutoff_minute = crate::time::minute_index(cutoff_ms);
        if cutoff_minute <= self.expired_below {
            return;
        }
        self.expired_below = cutoff_minute;
        while let Some(entry) = self.per_minute.first_entry() {
            if *entry.key() >= cutoff_minute {
                break;
            }
            self.dead += entry.remove();
        }
        self.compact_if_mostly_dead();
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.held - self.dead
    }

    /// Minutes holding remembered ids, and minutes tracked for tenants at their share.
    pub fn minutes(&self) -> usize {
        self.per_minute.len()
            + self
                .ids
                .iter()
                .filter_map(|t| t.at_share.as_ref())
                .map(|a| a.per_minute.len())
                .sum::<usize>()
    }

    /// Tenants this set has seen.
    pub fn tenants(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    fn counted_ids_name_each_tenant_once_in_32_bytes_an_id() {
        assert_eq!(std::mem::size_of::<CountedId>(), 32);
        let mut counted = CountedIds::default();
        counted.push("a", 1, 60_000, 7);
        counted.push("b", 2, 120_000, 0);
        counted.push("a", 3, 60_000, 9);
        let mut parent = CountedIds::default();
        parent.push("b", 4, 0, 1);
        parent.push("c", 5, 0, 2);
        counted.extend(parent);
        assert_eq!(counted.tenants.len(), 3, "a, b and c once each");
        let all: Vec<(&str, u128, i64, u32)> = counted.iter().collect();
        assert_eq!(
            all,
            [
                ("a", 1, 60_000, 7),
                ("b", 2, 120_000, 0),
                ("a", 3, 60_000, 9),
                ("b", 4, 0, 1),
                ("c", 5, 0, 2)
            ]
        );
        assert_eq!(counted.len(), 5);
    }

    #[test]
    fn a_slot_is_20_bytes_and_keeps_the_first_content_s_fingerprint() {
        assert_eq!(std::mem::size_of::<Slot>(), 20);
        let mut seen = SeenIds::default();
        let first = content_fingerprint(b"{\"a\":1}");
        let key = seen.key("t", 7).with_fingerprint(first);
        assert_eq!(seen.first_content(key), None);
        assert_eq!(seen.first_sighting(key, 0), Sighting::First);
        // The same id with other content finds the first content's fingerprint.
        let other = seen
            .key("t", 7)
            .with_fingerprint(content_fingerprint(b"{\"a\":2}"));
        assert_eq!(seen.first_content(other), Some(FirstContent::Other));
        assert_eq!(seen.first_content(key), Some(FirstContent::Same));
        let unknown = seen.key("t", 8);
        seen.first_sighting(unknown, 0);
        assert_eq!(
            seen.first_content(unknown.with_fingerprint(first)),
            Some(FirstContent::Unknown)
        );
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
        assert_eq!(
            seen.len(),
            1,
            "past the horizon: not remembered, as a task restored now would not"
        );
        assert_eq!(sight(&mut seen, 2, 61_000), Sighting::Repeat);
        seen.forget_before(119_999);
        assert_eq!(seen.len(), 1, "a partial minute is kept");
        assert_eq!(sight(&mut seen, 2, 61_000), Sighting::Repeat);
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
            (0..200u128)
                .filter(|id| {
                    let key = seen.key("tenant-a", *id);
                    seen.contains(key)
                })
                .collect::<Vec<u128>>()
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
