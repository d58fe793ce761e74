//! Window rows of one task: tumbling event-time minute windows keyed by family, tenant and
//! dimensions. Minutes are what alerts and short dashboard ranges read. Hours and days
//! ([`Span`]) are the same aggregates over longer windows (a month is 30 day rows per key
//! instead of 43,200 minute rows); the task does not hold them: once final they are sealed
//! from the durable minutes (ADR 0023, `store::seal`), so open rows are only the minutes under
//! the allowed lateness.
//!
//! Strings are interned once per task, so counting an event into windows that already exist
//! allocates nothing and hashes each string once.

use rustc_hash::FxHashMap as HashMap;

use crate::aggregate::family::Family;
use crate::histogram::LogHistogram;

/// Length of a window, in seconds.
pub const WINDOW_SECONDS: i64 = 60;

/// The start (Unix seconds) of the minute window holding `at_ms` (Unix milliseconds).
pub use crate::time::minute_start as window_start;

/// The first minute window (Unix s) that may still change, for a watermark and the allowed
/// lateness: every earlier window is final. The one rule for lateness, eviction and restore.
pub fn first_open_window(watermark_ms: Option<i64>, allowed_lateness_ms: i64) -> i64 {
    watermark_ms.map_or(i64::MIN, |wm| window_start(wm - allowed_lateness_ms))
}

/// How long a window lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Span {
    /// One minute: every family's base rows.
    Minute,
    /// One hour: the same aggregates over whole hours, written in the same flushes.
    Hour,
    /// One UTC day, likewise.
    Day,
}

impl Span {
    /// Every span, shortest first.
    pub const ALL: [Span; 3] = [Span::Minute, Span::Hour, Span::Day];

    /// The spans sealed from finer ones once final (ADR 0023).
    pub const ROLLUPS: [Span; 2] = [Span::Hour, Span::Day];

    /// Length in seconds.
    pub const fn seconds(self) -> i64 {
        match self {
            Span::Minute => WINDOW_SECONDS,
            Span::Hour => 3_600,
            Span::Day => 86_400,
        }
    }

    /// The start of the window of this span holding the instant `at_s` (Unix s).
    pub fn start(self, at_s: i64) -> i64 {
        at_s.div_euclid(self.seconds()) * self.seconds()
    }
}

/// An interned string.
pub type Symbol = u32;

/// The identity of a window row within its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowKey {
    /// Metric family.
    pub family: Family,
    /// Window start, Unix seconds.
    pub window_start: i64,
    /// Tenant.
    pub tenant: Symbol,
    /// Family-specific dimensions (unused ones are the empty string).
    pub dims: [Symbol; 3],
}

/// The accumulated value of a window row, owned: what a flush hands to storage and a restore
/// reads back. Open rows are not kept like this but side by side per family ([`Values`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowValue {
    /// Integer counters, laid out as the family says.
    pub ints: Vec<i64>,
    /// Floating-point sums, laid out as the family says.
    pub floats: Vec<f64>,
    /// The family's histogram (empty if it has none).
    pub histogram: LogHistogram,
}

impl WindowValue {
    /// An empty row of `family`'s layout.
    pub fn empty(family: Family) -> Self {
        let layout = family.layout();
        Self {
            ints: vec![0; layout.ints.len()],
            floats: vec![0.0; layout.floats.len()],
            histogram: LogHistogram::default(),
        }
    }
}

impl WindowValue {
    /// Adds `other` in, counter by counter, sum by sum and bucket by bucket (a value of a
    /// longer layout grows this one): a rollup row is the sum of its minutes.
    pub fn add(&mut self, other: &WindowValue) {
        if self.ints.len() < other.ints.len() {
            self.ints.resize(other.ints.len(), 0);
        }
        if self.floats.len() < other.floats.len() {
            self.floats.resize(other.floats.len(), 0.0);
        }
        for (to, from) in self.ints.iter_mut().zip(&other.ints) {
            *to += from;
        }
        for (to, from) in self.floats.iter_mut().zip(&other.floats) {
            *to += from;
        }
        self.histogram.merge(&other.histogram);
    }
}

/// An open row, as an aggregate folds a contribution into it.
#[derive(Debug)]
pub struct RowMut<'a> {
    /// Integer counters, laid out as the family says.
    pub ints: &'a mut [i64],
    /// Floating-point sums, laid out as the family says.
    pub floats: &'a mut [f64],
    /// The family's histogram; `None` for a family without one.
    pub histogram: Option<&'a mut LogHistogram>,
}

/// All open minute rows of one task.
#[derive(Debug)]
pub struct WindowSet {
    symbols: HashMap<Box<str>, Symbol>,
    names: Vec<Box<str>>,
    rows: Rows,
    /// The counters of every open row, one table per family (in [`Family::ALL`] order).
    values: Vec<Values>,
    /// Restored rows still to be written again under the task's new generation (ADR 0014),
    /// a flush's room at a time (see [`WindowSet::take_changed`]).
    rewrite: Vec<WindowKey>,
    /// Strings in the table after the last [`WindowSet::compact`].
    names_after_compact: usize,
}

/// The open rows: each key's place in its family's [`Values`].
#[derive(Debug, Default)]
struct Rows {
    rows: HashMap<WindowKey, Slot>,
    /// Rows changed since the last flush; each row's own flag keeps a key from being listed
    /// twice, which is cheaper than a second hash set touched on every update.
    dirty: Vec<WindowKey>,
}

/// Where a row's counters are in its family's [`Values`], and whether it changed since the
/// last flush. Eight bytes beside a 32-byte key: the map's entries hold no pointers.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: u32,
    dirty: bool,
}

/// The counters of every open row of one family, side by side: row `at` has
/// `ints[at * int_width..][..int_width]`, likewise its floats, and `histograms[at]` when the
/// family has one. A row costs its counters and nothing else (no allocation of its own, which
/// a row holding two vectors paid twice, plus the allocator's rounding); an evicted row's slot
/// is reused, and the tables shrink once most slots are free.
#[derive(Debug)]
struct Values {
    int_width: usize,
    float_width: usize,
    ints: Vec<i64>,
    floats: Vec<f64>,
    /// Empty for a family without a histogram.
    histograms: Vec<LogHistogram>,
    has_histogram: bool,
    /// Slots of evicted rows, zeroed, to be taken before new ones.
    free: Vec<u32>,
    /// Slots made, free ones included.
    slots: usize,
}

impl Values {
    fn new(family: Family) -> Self {
        let layout = family.layout();
        Self {
            int_width: layout.ints.len(),
            float_width: layout.floats.len(),
            ints: Vec::new(),
            floats: Vec::new(),
            histograms: Vec::new(),
            has_histogram: layout.histogram.is_some(),
            free: Vec::new(),
            slots: 0,
        }
    }

    /// A zeroed slot.
    fn take(&mut self) -> u32 {
        if let Some(at) = self.free.pop() {
            return at;
        }
        let at = self.slots as u32;
        self.slots += 1;
        self.ints.resize(self.ints.len() + self.int_width, 0);
        self.floats
            .resize(self.floats.len() + self.float_width, 0.0);
        if self.has_histogram {
            self.histograms.push(LogHistogram::default());
        }
        at
    }

    /// Zeroes a slot and makes it free.
    fn give_back(&mut self, at: u32) {
        let row = self.row(at);
        row.ints.fill(0);
        row.floats.fill(0.0);
        if let Some(histogram) = row.histogram {
            *histogram = LogHistogram::default();
        }
        self.free.push(at);
    }

    fn row(&mut self, at: u32) -> RowMut<'_> {
        let at = at as usize;
        RowMut {
            ints: &mut self.ints[at * self.int_width..(at + 1) * self.int_width],
            floats: &mut self.floats[at * self.float_width..(at + 1) * self.float_width],
            histogram: self.histograms.get_mut(at),
        }
    }

    fn value(&self, at: u32) -> WindowValue {
        let at = at as usize;
        WindowValue {
            ints: self.ints[at * self.int_width..(at + 1) * self.int_width].to_vec(),
            floats: self.floats[at * self.float_width..(at + 1) * self.float_width].to_vec(),
            histogram: self.histograms.get(at).cloned().unwrap_or_default(),
        }
    }

    /// Writes a stored value into a slot; a value of another layout (a family's counters
    /// added since it was stored) fills what both have.
    fn set(&mut self, at: u32, value: WindowValue) {
        let row = self.row(at);
        for (to, from) in row.ints.iter_mut().zip(&value.ints) {
            *to = *from;
        }
        for (to, from) in row.floats.iter_mut().zip(&value.floats) {
            *to = *from;
        }
        if let Some(histogram) = row.histogram {
            *histogram = value.histogram;
        }
    }
}

/// A family's table is packed once at least this many of its slots are free and they are
/// most of it (see [`WindowSet::evict_final`]).
const PACK_FLOOR: usize = 4_096;

impl Rows {
    /// The slot of `key`, made (and its counters zeroed) if new, and marked as changed.
    fn slot(&mut self, key: WindowKey, values: &mut Values) -> u32 {
        let slot = self.rows.entry(key).or_insert_with(|| Slot {
            at: values.take(),
            dirty: false,
        });
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(key);
        }
        slot.at
    }
}

/// The symbol of the empty string (an unused dimension), interned in every set.
const EMPTY: Symbol = 0;

impl Default for WindowSet {
    fn default() -> Self {
        Self {
            symbols: HashMap::default(),
            names: vec!["".into()],
            rows: Rows::default(),
            values: Family::ALL.map(Values::new).into(),
            rewrite: Vec::new(),
            names_after_compact: 0,
        }
    }
}

/// The string table is compacted once it holds at least this many strings (and twice as many
/// as after the last compaction): below it, what evicted rows leave behind is small.
const COMPACT_FLOOR: usize = 4_096;

impl WindowSet {
    /// Interns `text`.
    pub fn symbol(&mut self, text: &str) -> Symbol {
        if text.is_empty() {
            return EMPTY;
        }
        if let Some(symbol) = self.symbols.get(text) {
            return *symbol;
        }
        let symbol = self.names.len() as Symbol;
        self.names.push(text.into());
        self.symbols.insert(text.into(), symbol);
        symbol
    }

    /// The text of a symbol.
    pub fn text(&self, symbol: Symbol) -> &str {
        self.names.get(symbol as usize).map_or("", |s| s)
    }

    /// The key for a row.
    pub fn key(
        &mut self,
        family: Family,
        window_start: i64,
        tenant: &str,
        dims: [&str; 3],
    ) -> WindowKey {
        let tenant = self.symbol(tenant);
        self.key_for_symbol(family, window_start, tenant, dims)
    }

    fn key_for_symbol(
        &mut self,
        family: Family,
        window_start: i64,
        tenant: Symbol,
        dims: [&str; 3],
    ) -> WindowKey {
        WindowKey {
            family,
            window_start,
            tenant,
            dims: dims.map(|d| self.symbol(d)),
        }
    }

    /// Folds one contribution into the row of the minute starting at `minute_start`, created
    /// empty if new, and marks it as changed.
    pub fn update(
        &mut self,
        family: Family,
        minute_start: i64,
        tenant: Symbol,
        dims: [&str; 3],
        fold: impl FnOnce(RowMut<'_>),
    ) {
        let key = self.key_for_symbol(family, minute_start, tenant, dims);
        let values = &mut self.values[family as usize];
        let at = self.rows.slot(key, values);
        fold(values.row(at));
    }

    /// Like [`WindowSet::update`], for a tenant not interned yet.
    pub fn update_for(
        &mut self,
        family: Family,
        minute_start: i64,
        tenant: &str,
        dims: [&str; 3],
        fold: impl FnOnce(RowMut<'_>),
    ) {
        let tenant = self.symbol(tenant);
        self.update(family, minute_start, tenant, dims, fold);
    }

    /// Puts back a row restored from storage, to be written again under the task's new
    /// generation by the next flushes that have room ([`WindowSet::take_changed`]), so that a
    /// row a stalled former owner rewrote after this restore can never stand in for it, not
    /// even once a merge has kept only the highest epoch of the key (ADR 0014).
    pub fn restore(&mut self, key: WindowKey, value: WindowValue) {
        let values = &mut self.values[key.family as usize];
        let rows = &mut self.rows.rows;
        let at = match rows.get(&key) {
            Some(slot) => slot.at,
            None => {
                let at = values.take();
                rows.insert(key, Slot { at, dirty: false });
                self.rewrite.push(key);
                at
            }
        };
        values.set(at, value);
    }

    /// Rows changed since the last flush (restored rows still to be written again aside).
    pub fn changed(&self) -> usize {
        self.rows.dirty.len()
    }

    /// Restored rows still to be written again.
    pub fn to_rewrite(&self) -> usize {
        self.rewrite.len()
    }

    /// The value of the row for `key`, if open.
    pub fn get(&self, key: &WindowKey) -> Option<WindowValue> {
        let slot = self.rows.rows.get(key)?;
        Some(self.values[key.family as usize].value(slot.at))
    }

    /// The rows changed since the last call, in key order; they count as clean afterwards.
    /// Then, while fewer than `limit` rows are taken, restored rows still to be written again.
    /// Changed rows are all taken, whatever `limit`: a checkpoint covers every change before
    /// it.
    pub fn take_changed(&mut self, limit: usize) -> Vec<WindowKey> {
        let rows = &mut self.rows;
        let mut changed = std::mem::take(&mut rows.dirty);
        for key in &changed {
            if let Some(slot) = rows.rows.get_mut(key) {
                slot.dirty = false;
            }
        }
        changed.sort_unstable();
        let room = limit.saturating_sub(changed.len()).min(self.rewrite.len());
        let taken: Vec<WindowKey> = self.rewrite.drain(..room).collect();
        if taken.is_empty() {
            return changed;
        }
        // A restored row changed since is among the changed rows already; one evicted since
        // is final and durable as it was.
        let listed: rustc_hash::FxHashSet<WindowKey> = changed.iter().copied().collect();
        let open = &self.rows.rows;
        changed.extend(
            taken
                .into_iter()
                .filter(|key| open.contains_key(key) && !listed.contains(key)),
        );
        changed
    }

    /// Drops the clean rows `is_final` says will never change again, giving their slots back;
    /// a family whose table is then mostly free is packed, and a map mostly empty is shrunk,
    /// so rows that closed give their memory back.
    pub fn evict_final(&mut self, is_final: impl Fn(&WindowKey) -> bool) {
        let values = &mut self.values;
        let rows = &mut self.rows.rows;
        rows.retain(|key, slot| {
            let keep = slot.dirty || !is_final(key);
            if !keep {
                values[key.family as usize].give_back(slot.at);
            }
            keep
        });
        if rows.capacity() > 8 * rows.len() + PACK_FLOOR {
            rows.shrink_to_fit();
        }
        for family in Family::ALL {
            let free = self.values[family as usize].free.len();
            if free >= PACK_FLOOR && 2 * free > self.values[family as usize].slots {
                self.pack(family);
            }
        }
    }

    /// Moves `family`'s open rows to the first slots of a new table, in map order, and drops
    /// the old one with its free slots.
    fn pack(&mut self, family: Family) {
        let old = std::mem::replace(&mut self.values[family as usize], Values::new(family));
        let new = &mut self.values[family as usize];
        for (_, slot) in self
            .rows
            .rows
            .iter_mut()
            .filter(|(key, _)| key.family == family)
        {
            let at = new.take();
            new.set(at, old.value(slot.at));
            slot.at = at;
        }
        new.ints.shrink_to_fit();
        new.floats.shrink_to_fit();
        new.histograms.shrink_to_fit();
    }

    /// Drops the strings no open row (nor `also_live`) uses any more, once the table has
    /// doubled since the last time: rows evicted as final leave their tenants' and values'
    /// strings behind, which would otherwise grow for as long as the task runs. Symbols
    /// change: returns the new symbol of each old one (`Symbol::MAX` for a dropped one) for
    /// the caller to remap what it holds, or `None` when nothing changed.
    pub fn compact(&mut self, also_live: &[Symbol]) -> Option<Vec<Symbol>> {
        if self.names.len() < COMPACT_FLOOR.max(2 * self.names_after_compact) {
            return None;
        }
        let mut live = vec![false; self.names.len()];
        let mut mark = |symbol: Symbol| {
            if let Some(slot) = live.get_mut(symbol as usize) {
                *slot = true;
            }
        };
        mark(EMPTY);
        also_live.iter().copied().for_each(&mut mark);
        for key in self.rows.rows.keys() {
            mark(key.tenant);
            key.dims.iter().copied().for_each(&mut mark);
        }
        let mut remap = vec![Symbol::MAX; self.names.len()];
        let mut names = Vec::with_capacity(live.iter().filter(|l| **l).count());
        for (old, name) in std::mem::take(&mut self.names).into_iter().enumerate() {
            if live[old] {
                remap[old] = names.len() as Symbol;
                names.push(name);
            }
        }
        self.symbols = names
            .iter()
            .enumerate()
            .skip(1)
            .map(|(symbol, name)| (name.clone(), symbol as Symbol))
            .collect();
        self.names = names;
        self.names_after_compact = self.names.len();
        let moved = |key: WindowKey| WindowKey {
            tenant: remap[key.tenant as usize],
            dims: key.dims.map(|d| remap[d as usize]),
            ..key
        };
        let rows = &mut self.rows;
        rows.rows = rows
            .rows
            .drain()
            .map(|(key, row)| (moved(key), row))
            .collect();
        for key in rows.dirty.iter_mut().chain(&mut self.rewrite) {
            *key = moved(*key);
        }
        Some(remap)
    }

    /// Strings in the table.
    pub fn strings(&self) -> usize {
        self.names.len()
    }

    /// Open rows.
    pub fn len(&self) -> usize {
        self.rows.rows.len()
    }

    /// Whether no row is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_minutes_even_before_1970() {
        assert_eq!(window_start(0), 0);
        assert_eq!(window_start(59_999), 0);
        assert_eq!(window_start(60_000), 60);
        assert_eq!(window_start(-1), -60);
    }

    #[test]
    fn spans_align() {
        assert_eq!(Span::Hour.start(7_199), 3_600);
        assert_eq!(Span::Hour.start(-1), -3_600);
        assert_eq!(Span::Minute.start(119), 60);
        assert_eq!(Span::Day.start(86_399 + 86_400), 86_400);
    }

    #[test]
    fn a_window_is_open_until_the_watermark_passes_it_by_the_lateness() {
        assert_eq!(first_open_window(None, 300_000), i64::MIN);
        // Watermark 00:10:30, lateness 5 min: 00:05 is open, 00:04 final.
        assert_eq!(first_open_window(Some(630_000), 300_000), 300);
        assert_eq!(first_open_window(Some(-1), 0), -60);
    }

    #[test]
    fn one_update_reaches_its_minute_only() {
        let mut set = WindowSet::default();
        let minute = 86_400 + 3_600 + 120;
        set.update_for(Family::Volume, minute, "t", ["a.b.v1", "svc", ""], |row| {
            row.ints[0] += 1;
        });
        set.update_for(
            Family::Volume,
            minute + 60,
            "t",
            ["a.b.v1", "svc", ""],
            |row| {
                row.ints[0] += 2;
            },
        );
        let key =
            |set: &mut WindowSet, start| set.key(Family::Volume, start, "t", ["a.b.v1", "svc", ""]);
        let (m, h, d) = (
            key(&mut set, minute),
            key(&mut set, 86_400 + 3_600),
            key(&mut set, 86_400),
        );
        assert_eq!(set.get(&m).map(|v| v.ints[0]), Some(1));
        // Hours and days are sealed from the durable minutes (ADR 0023), not held.
        assert_eq!(set.get(&h), None);
        assert_eq!(set.get(&d), None);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn rows_are_created_once_and_tracked_until_flushed() {
        let mut set = WindowSet::default();
        let key = set.key(Family::Volume, 60, "tenant-1", ["a.b.v1", "svc", ""]);
        for _ in 0..2 {
            set.update(
                Family::Volume,
                60,
                key.tenant,
                ["a.b.v1", "svc", ""],
                |row| {
                    row.ints[0] += 1;
                },
            );
        }
        assert_eq!(set.get(&key).map(|v| v.ints[0]), Some(2));
        let changed = set.take_changed(usize::MAX);
        assert_eq!(changed, [key]);
        assert!(set.take_changed(usize::MAX).is_empty());
        assert_eq!(set.text(key.tenant), "tenant-1");
    }

    #[test]
    fn restored_rows_are_written_again_a_flush_s_room_at_a_time() {
        let mut set = WindowSet::default();
        for minute in 0..10 {
            let key = set.key(Family::Volume, minute * 60, "t", ["", "", ""]);
            set.restore(key, WindowValue::empty(Family::Volume));
        }
        assert_eq!((set.changed(), set.to_rewrite()), (0, 10));
        // A change of a restored row and a new row: both taken, whatever the room; then the
        // restored rows, up to the room.
        set.update_for(Family::Volume, 0, "t", ["", "", ""], |_| {});
        set.update_for(Family::Volume, 900, "t", ["", "", ""], |_| {});
        let first = set.take_changed(1);
        assert_eq!(first.len(), 2, "{first:?}");
        let second = set.take_changed(4);
        let third = set.take_changed(100);
        assert_eq!((second.len(), third.len(), set.to_rewrite()), (4, 6, 0));
        let mut all: Vec<_> = first.into_iter().chain(second).chain(third).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 11, "every restored row and the new one");
        // Changed rows are never held back, whatever the room.
        for minute in 0..6 {
            set.update_for(Family::Volume, minute * 60, "t", ["", "", ""], |_| {});
        }
        assert_eq!(set.take_changed(2).len(), 6, "six minutes");
    }

    #[test]
    fn strings_of_evicted_rows_are_dropped_and_open_rows_keep_theirs() {
        let mut set = WindowSet::default();
        let minute = 60;
        let mut keep = None;
        for i in 0..10_000 {
            let tenant = set.symbol(&format!("tenant-{i}"));
            set.update(
                Family::Volume,
                minute + 86_400 * (i / 5_000),
                tenant,
                ["t", &format!("s{i}"), ""],
                |row| row.ints[0] += 1,
            );
            if i == 9_999 {
                keep = Some(tenant);
            }
        }
        set.take_changed(usize::MAX);
        // The first day's rows are final; the second's stay open.
        set.evict_final(|key| key.window_start < 86_400);
        let before = set.strings();
        assert!(before > 20_000);
        let remap = set.compact(&[]).expect("compacted");
        assert!(
            set.strings() < before * 3 / 4,
            "{} of {before}",
            set.strings()
        );
        let kept = remap[keep.expect("a tenant") as usize];
        assert_eq!(set.text(kept), "tenant-9999");
        let key = WindowKey {
            family: Family::Volume,
            window_start: 86_400 + minute,
            tenant: kept,
            dims: [set.symbol("t"), set.symbol("s9999"), EMPTY],
        };
        assert_eq!(set.get(&key).map(|v| v.ints[0]), Some(1));
        // Interning after a compaction finds the kept strings and adds new ones once.
        assert_eq!(set.symbol("tenant-9999"), kept);
        assert!(set.compact(&[]).is_none(), "not doubled since");
    }

    #[test]
    fn each_family_has_its_table_in_family_order() {
        let set = WindowSet::default();
        for (i, family) in Family::ALL.into_iter().enumerate() {
            assert_eq!(family as usize, i);
            let layout = family.layout();
            let values = &set.values[i];
            assert_eq!(
                (values.int_width, values.float_width, values.has_histogram),
                (
                    layout.ints.len(),
                    layout.floats.len(),
                    layout.histogram.is_some()
                )
            );
        }
    }

    #[test]
    fn evicted_slots_come_back_zeroed_and_a_mostly_free_table_is_packed() {
        let mut set = WindowSet::default();
        let day = 86_400;
        // 6,000 tenants on day 0 and 3,000 on day 1, each row counting its tenant's number.
        for (start, tenants) in [(0, 6_000), (day, 3_000)] {
            for i in 0..tenants {
                set.update_for(
                    Family::Latency,
                    start,
                    &format!("t{i}"),
                    ["x", "y", ""],
                    |row| {
                        row.ints[0] += i;
                        row.floats[0] += 0.5;
                        if let Some(histogram) = row.histogram {
                            histogram.record(i as f64);
                        }
                    },
                );
            }
        }
        set.take_changed(usize::MAX);
        let slots = set.values[Family::Latency as usize].slots;
        assert_eq!(slots, 9_000, "a minute per tenant and day");
        set.evict_final(|key| key.window_start < day);
        let latency = &set.values[Family::Latency as usize];
        assert_eq!(
            (latency.slots, latency.free.len()),
            (3_000, 0),
            "6,000 of 9,000 slots free: packed"
        );
        for i in [0, 1_234, 2_999] {
            let key = set.key(Family::Latency, day, &format!("t{i}"), ["x", "y", ""]);
            let value = set.get(&key).expect("open");
            assert_eq!(
                (value.ints, value.floats, value.histogram.count()),
                (vec![i], vec![0.5], 1)
            );
        }
        // Below the packing floor, freed slots are reused, zeroed.
        set.update_for(Family::Volume, 2 * day, "a", ["", "", ""], |row| {
            row.ints[0] = 7;
        });
        set.take_changed(usize::MAX);
        set.evict_final(|key| key.family == Family::Volume);
        assert_eq!(set.values[Family::Volume as usize].free.len(), 1);
        set.update_for(Family::Volume, 3 * day, "b", ["", "", ""], |row| {
            assert_eq!(row.ints, [0]);
        });
        assert_eq!(set.values[Family::Volume as usize].slots, 1);
    }

    #[test]
    fn only_clean_final_rows_are_evicted() {
        let mut set = WindowSet::default();
        for start in [0, 120] {
            set.update_for(Family::Volume, start, "t", ["", "", ""], |_| {});
        }
        let old = set.key(Family::Volume, 0, "t", ["", "", ""]);
        let new = set.key(Family::Volume, 120, "t", ["", "", ""]);
        let before_60 = |key: &WindowKey| key.window_start < 60;
        set.evict_final(before_60);
        assert_eq!(set.len(), 2, "dirty rows stay until flushed");
        set.take_changed(usize::MAX);
        set.evict_final(before_60);
        assert!(set.get(&old).is_none() && set.get(&new).is_some());
    }
}
