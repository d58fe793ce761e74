//! Window rows of one task: tumbling windows keyed by family, tenant and dimensions, with the
//! set of rows changed since the last flush. A task keeps a set per span: one-minute windows
//! (the detail alerts and short dashboard ranges read), and hour and day windows (what long
//! ranges read: a month is 30 day rows per key instead of 43,200 minute rows).
//!
//! Strings are interned once per task, so counting an event into a window that already
//! exists allocates nothing.

use rustc_hash::FxHashMap as HashMap;

use super::family::Family;
use crate::histogram::LogHistogram;

/// Length of a window, in seconds.
pub const WINDOW_SECONDS: i64 = 60;

/// The start (Unix seconds) of the window holding `at_ms` (Unix milliseconds).
pub fn window_start(at_ms: i64) -> i64 {
    at_ms.div_euclid(WINDOW_SECONDS * 1000) * WINDOW_SECONDS
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

    /// The spans rolled up from the same messages as the minutes.
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

    /// What follows a family's name in `window_state.family` for rows of this span
    /// (`""` for minutes, so minute rows carry the bare family name).
    pub const fn storage_suffix(self) -> &'static str {
        match self {
            Span::Minute => "",
            Span::Hour => "/hour",
            Span::Day => "/day",
        }
    }

    /// The name a family's rows of this span are stored under in `window_state`.
    pub fn storage_name(self, family: Family) -> String {
        format!("{}{}", family.layout().name, self.storage_suffix())
    }

    /// The family and span stored under `name`, if it is one.
    pub fn parse_storage_name(name: &str) -> Option<(Family, Span)> {
        let span = Span::ROLLUPS
            .into_iter()
            .find(|span| name.ends_with(span.storage_suffix()))
            .unwrap_or(Span::Minute);
        let base = &name[..name.len() - span.storage_suffix().len()];
        Family::ALL
            .into_iter()
            .find(|f| f.layout().name == base)
            .map(|f| (f, span))
    }
}

/// An interned string.
pub type Symbol = u32;

/// The identity of a window row.
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

/// The accumulated value of a window row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowValue {
    /// Integer counters, laid out as the family says.
    pub ints: Vec<i64>,
    /// Floating-point sums, laid out as the family says.
    pub floats: Vec<f64>,
    /// The family's histogram (empty if it has none).
    pub histogram: LogHistogram,
}

/// All open window rows of one task.
#[derive(Debug)]
pub struct WindowSet {
    symbols: HashMap<Box<str>, Symbol>,
    names: Vec<Box<str>>,
    rows: HashMap<WindowKey, Row>,
    /// Rows changed since the last flush; each row's own flag keeps a key from being listed
    /// twice, which is cheaper than a second hash set touched on every update.
    dirty: Vec<WindowKey>,
}

#[derive(Debug)]
struct Row {
    value: WindowValue,
    dirty: bool,
}

/// The symbol of the empty string (an unused dimension), interned in every set.
const EMPTY: Symbol = 0;

impl Default for WindowSet {
    fn default() -> Self {
        Self {
            symbols: HashMap::default(),
            names: vec!["".into()],
            rows: HashMap::default(),
            dirty: Vec::new(),
        }
    }
}

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
        let dims = [
            self.symbol(dims[0]),
            self.symbol(dims[1]),
            self.symbol(dims[2]),
        ];
        WindowKey {
            family,
            window_start,
            tenant,
            dims,
        }
    }

    /// The row for `key`, created empty if new, and marked as changed.
    pub fn row(&mut self, key: WindowKey) -> &mut WindowValue {
        let row = self.rows.entry(key).or_insert_with(|| {
            let layout = key.family.layout();
            Row {
                value: WindowValue {
                    ints: vec![0; layout.ints.len()],
                    floats: vec![0.0; layout.floats.len()],
                    histogram: LogHistogram::default(),
                },
                dirty: false,
            }
        });
        if !row.dirty {
            row.dirty = true;
            self.dirty.push(key);
        }
        &mut row.value
    }

    /// Like [`WindowSet::row_for`], for a tenant already interned.
    pub fn row_for_symbol(
        &mut self,
        family: Family,
        window_start: i64,
        tenant: Symbol,
        dims: [&str; 3],
    ) -> &mut WindowValue {
        let dims = [
            self.symbol(dims[0]),
            self.symbol(dims[1]),
            self.symbol(dims[2]),
        ];
        self.row(WindowKey {
            family,
            window_start,
            tenant,
            dims,
        })
    }

    /// The row for a family, window, tenant and dimensions; see [`WindowSet::row`].
    pub fn row_for(
        &mut self,
        family: Family,
        window_start: i64,
        tenant: &str,
        dims: [&str; 3],
    ) -> &mut WindowValue {
        let key = self.key(family, window_start, tenant, dims);
        self.row(key)
    }

    /// Puts back a row restored from storage, unchanged since its last flush.
    pub fn restore(&mut self, key: WindowKey, value: WindowValue) {
        self.rows.insert(
            key,
            Row {
                value,
                dirty: false,
            },
        );
    }

    /// The row for `key`, if open.
    pub fn get(&self, key: &WindowKey) -> Option<&WindowValue> {
        self.rows.get(key).map(|row| &row.value)
    }

    /// The rows changed since the last call, in key order; they count as clean afterwards.
    pub fn take_dirty(&mut self) -> Vec<WindowKey> {
        let mut keys = std::mem::take(&mut self.dirty);
        for key in &keys {
            if let Some(row) = self.rows.get_mut(key) {
                row.dirty = false;
            }
        }
        keys.sort_unstable();
        keys
    }

    /// Drops clean rows whose window started before `limit` (they are final and durable).
    pub fn evict_before(&mut self, limit: i64) {
        self.evict_final(|key| key.window_start < limit);
    }

    /// Drops the clean rows `is_final` says will never change again.
    pub fn evict_final(&mut self, is_final: impl Fn(&WindowKey) -> bool) {
        self.rows.retain(|key, row| !is_final(key) || row.dirty);
    }

    /// Open rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is open.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every open row.
    pub fn iter(&self) -> impl Iterator<Item = (&WindowKey, &WindowValue)> {
        self.rows.iter().map(|(key, row)| (key, &row.value))
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
    fn spans_align_and_name_their_rows() {
        assert_eq!(Span::Hour.start(7_199), 3_600);
        assert_eq!(Span::Hour.start(-1), -3_600);
        assert_eq!(Span::Minute.start(119), 60);
        assert_eq!(Span::Day.start(86_399 + 86_400), 86_400);
        for family in Family::ALL {
            for span in Span::ALL {
                let name = span.storage_name(family);
                assert_eq!(Span::parse_storage_name(&name), Some((family, span)));
            }
        }
        assert_eq!(Span::storage_name(Span::Hour, Family::Cost), "cost/hour");
        assert_eq!(Span::parse_storage_name("checkpoint"), None);
        assert_eq!(Span::parse_storage_name("nope/hour"), None);
        assert_eq!(
            Span::parse_storage_name("latency/day"),
            Some((Family::Latency, Span::Day))
        );
    }

    #[test]
    fn rows_are_created_once_and_tracked_until_flushed() {
        let mut set = WindowSet::default();
        let key = set.key(Family::Volume, 60, "tenant-1", ["a.b.v1", "svc", ""]);
        set.row(key).ints[0] += 1;
        set.row(key).ints[0] += 1;
        assert_eq!(set.get(&key).map(|v| v.ints[0]), Some(2));
        assert_eq!(set.take_dirty(), vec![key]);
        assert!(set.take_dirty().is_empty());
        assert_eq!(set.text(key.tenant), "tenant-1");
    }

    #[test]
    fn only_clean_old_rows_are_evicted() {
        let mut set = WindowSet::default();
        let old = set.key(Family::Volume, 0, "t", ["", "", ""]);
        let new = set.key(Family::Volume, 120, "t", ["", "", ""]);
        set.row(old);
        set.row(new);
        set.evict_before(60);
        assert_eq!(set.len(), 2, "dirty rows stay until flushed");
        set.take_dirty();
        set.evict_before(60);
        assert!(set.get(&old).is_none() && set.get(&new).is_some());
    }
}
