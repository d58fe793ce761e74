//! The budget of new enum values: how many distinct values an open contract enum may gain
//! per tenant, field and UTC day before the rest are counted under one value
//! ([`OVERFLOW_VALUE`]). Every new value becomes a dimension of window rows (minute, hour
//! and day, in several families), so without it one tenant's key could open rows without
//! end. The task applies it to each valid event before any aggregate sees it; the overflow
//! is visible in `metrics_new_enum_values` under `_overflow`. The same budget, as
//! [`NewValueBudget::admits`], caps the producer `source` dimension (free text, so every
//! value is "new"): past the day's distinct sources a tenant's events count under `_overflow`.

use rustc_hash::{FxHashMap, FxHashSet};
use salestalk_contracts::{EventData, OVERFLOW_VALUE};

use crate::aggregate::Family;

/// Seconds in a UTC day.
use crate::time::DAY_S;

/// The budget's name for the producer `source` dimension.
pub const SOURCE_FIELD: &str = "/source";

/// One tenant's admitted values, per field and day.
type TenantDays = FxHashMap<(&'static str, i64), FxHashSet<Box<str>>>;

/// Distinct new values admitted per tenant, field and day.
#[derive(Debug, Default)]
pub struct NewValueBudget {
    per_day: usize,
    tenants: FxHashMap<Box<str>, TenantDays>,
}

impl NewValueBudget {
    /// At most `per_day` distinct new values per tenant, field and day.
    pub fn new(per_day: usize) -> Self {
        Self {
            per_day,
            tenants: FxHashMap::default(),
        }
    }

    /// Caps the new values of `data`, an event of `tenant` in the minute starting at
    /// `minute_s`: a value already admitted that day passes, a new one while the day has
    /// room is admitted, any other becomes [`OVERFLOW_VALUE`]. Returns how many overflowed.
    /// Events without new values (nearly all) cost one match and no allocation.
    pub fn apply(&mut self, data: &mut EventData<'_>, tenant: &str, minute_s: i64) -> usize {
        let day = minute_s.div_euclid(DAY_S) * DAY_S;
        let per_day = self.per_day;
        let tenants = &mut self.tenants;
        let mut overflowed = 0;
        data.cap_new_enum_values(|field, value| {
            let admitted = admitted(tenants, tenant, field, day);
            if admitted.contains(value) {
                return true;
            }
            if admitted.len() < per_day {
                admitted.insert(value.into());
                return true;
            }
            overflowed += 1;
            false
        });
        overflowed
    }

    /// Whether `value` of `field` may be a dimension of `tenant`'s rows on the day of
    /// `minute_s`: admitted that day already, or admitted now while the day has room. For a
    /// free-text dimension (the producer `source`) rather than an enum.
    pub fn admits(
        &mut self,
        tenant: &str,
        field: &'static str,
        minute_s: i64,
        value: &str,
    ) -> bool {
        if value.is_empty() || value == OVERFLOW_VALUE {
            return true;
        }
        let day = minute_s.div_euclid(DAY_S) * DAY_S;
        let admitted = admitted(&mut self.tenants, tenant, field, day);
        if admitted.contains(value) {
            return true;
        }
        if admitted.len() < self.per_day {
            admitted.insert(value.into());
            return true;
        }
        false
    }

    /// Remembers `value` as admitted (a row restored after a restart already counts it).
    pub fn admit(&mut self, tenant: &str, field: &'static str, minute_s: i64, value: &str) {
        if value == OVERFLOW_VALUE {
            return;
        }
        let day = minute_s.div_euclid(DAY_S) * DAY_S;
        admitted(&mut self.tenants, tenant, field, day).insert(value.into());
    }

    /// Forgets the days that end before `first_open_s` (their rows are final).
    pub fn forget_before(&mut self, first_open_s: i64) {
        for days in self.tenants.values_mut() {
            days.retain(|(_, day), _| day + DAY_S > first_open_s);
        }
        self.tenants.retain(|_, days| !days.is_empty());
    }

    /// Values remembered, over every tenant, field and day.
    pub fn len(&self) -> usize {
        self.tenants
            .values()
            .flat_map(|days| days.values())
            .map(FxHashSet::len)
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A value a budget admitted for a tenant on a UTC day, read back from the day's stored minute
/// rows (a task holds no day rows, ADR 0023), so a restored task admits exactly what its
/// predecessor did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Tenant.
    pub tenant_id: String,
    /// The enum field's path, or [`SOURCE_FIELD`] for the producer `source`.
    pub field: &'static str,
    /// The day's start, Unix s.
    pub day: i64,
    /// The admitted value.
    pub value: String,
}

impl Admission {
    /// What a stored row of `family` at `window_start` says a budget admitted: the value of a
    /// new-values row, or the producer source of a row that has one; `None` for other rows.
    pub fn of_row(
        family: Family,
        tenant_id: &str,
        dims: &[String; 3],
        window_start: i64,
    ) -> Option<Self> {
        let (field, value) = if family == Family::NewEnumValues {
            (field_name(&dims[1])?, &dims[2])
        } else {
            (SOURCE_FIELD, &dims[family.producer_source_dim()?])
        };
        Some(Self {
            tenant_id: tenant_id.to_string(),
            field,
            day: window_start.div_euclid(DAY_S) * DAY_S,
            value: value.clone(),
        })
    }

    /// The families whose rows [`Admission::of_row`] reads.
    pub fn families() -> impl Iterator<Item = Family> {
        Family::ALL
            .into_iter()
            .filter(|f| *f == Family::NewEnumValues || f.producer_source_dim().is_some())
    }
}

/// The admitted set of `tenant`'s `field` on `day`, made empty if new.
fn admitted<'m>(
    tenants: &'m mut FxHashMap<Box<str>, TenantDays>,
    tenant: &str,
    field: &'static str,
    day: i64,
) -> &'m mut FxHashSet<Box<str>> {
    if !tenants.contains_key(tenant) {
        tenants.insert(tenant.into(), FxHashMap::default());
    }
    tenants
        .get_mut(tenant)
        .expect("inserted above")
        .entry((field, day))
        .or_default()
}

/// The `'static` name of a field that [`EventData::new_enum_values`] reports, for a restored
/// row's field text.
pub fn field_name(text: &str) -> Option<&'static str> {
    FIELDS.iter().copied().find(|field| *field == text)
}

/// Every field that can carry a new enum value.
const FIELDS: [&str; 7] = [
    "/data/classification/intent",
    "/data/classification/subject",
    "/data/classification/measure",
    "/data/aiModel/provider",
    "/data/intents",
    "/data/subjects",
    "/data/source",
];

#[cfg(test)]
mod tests {
    use super::*;
    use salestalk_contracts::{Json, validate};

    fn completed(subjects: &[String]) -> serde_json::Value {
        let spec = include_str!("../../contracts/tests/corpus/spec-examples.jsonl");
        let line = spec
            .lines()
            .find(|l| l.contains("conversation.completed.v1"))
            .expect("example");
        let mut value: serde_json::Value = serde_json::from_str(line).expect("json");
        value["data"]["subjects"] = serde_json::json!(subjects);
        value
    }

    #[test]
    fn new_values_past_the_day_s_budget_are_counted_under_one_value() {
        let mut budget = NewValueBudget::new(3);
        let mut kept = Vec::new();
        let mut over = 0;
        for batch in 0..4 {
            let values: Vec<String> = (0..2).map(|i| format!("new_{batch}_{i}")).collect();
            let value = completed(&values);
            let json = Json::from(&value);
            let mut event = validate(&json).expect("valid");
            over += budget.apply(&mut event.data, "t", 120);
            kept.extend(
                event
                    .data
                    .new_enum_values()
                    .into_iter()
                    .map(|(_, v)| v.to_string()),
            );
        }
        assert_eq!(over, 5);
        assert_eq!(kept.iter().filter(|v| *v == OVERFLOW_VALUE).count(), 5);
        assert_eq!(kept[..3], ["new_0_0", "new_0_1", "new_1_0"]);
        // An admitted value passes again; the next day has room again; so has another tenant.
        let overflowed = |budget: &mut NewValueBudget, value: &str, tenant: &str, at: i64| {
            let value = completed(&[value.to_string()]);
            let json = Json::from(&value);
            let mut event = validate(&json).expect("valid");
            budget.apply(&mut event.data, tenant, at)
        };
        assert_eq!(overflowed(&mut budget, "new_0_0", "t", 120), 0);
        assert_eq!(overflowed(&mut budget, "x", "t", 120 + DAY_S), 0);
        assert_eq!(overflowed(&mut budget, "x", "u", 120), 0);
        assert_eq!(budget.len(), 5);
        budget.forget_before(DAY_S + 60);
        assert_eq!(budget.len(), 1);
        // Restored values count against the budget.
        let mut budget = NewValueBudget::new(1);
        budget.admit("t", "/data/subjects", 60, "old");
        assert_eq!(overflowed(&mut budget, "x", "t", 60), 1);
    }
}
