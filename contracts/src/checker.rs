//! The walk that turns a JSON value into a typed event while recording every violation.
//!
//! Each payload module reads its fields through a [`Checker`]; a reader either returns the
//! typed value or records a [`Violation`] at the field's pointer and returns `None`, so one
//! pass yields either a complete typed event or the full list of problems. An event is valid
//! only if nothing was recorded: an invalid optional field reads as `None` but still counts.

use crate::json::Json;

use crate::enums::{ContractEnum, Open};
use crate::formats;
use crate::limits::{MAX_IDENTIFIER_LEN, MAX_SET_ITEMS};
use crate::pointer::{self, Segment};
use crate::violation::{Expected, Format, JsonType, Violation, ViolationKind};
use crate::warning::ContractWarning;

/// A JSON object, as parsed.
pub(crate) use crate::json::Object;

/// Largest integer the contracts accept: 2^53 - 1, the last one every JSON reader keeps exact.
pub(crate) const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Tracks where the walk is and what it found wrong.
#[derive(Default)]
pub(crate) struct Checker {
    path: Vec<Segment<'static>>,
    violations: Vec<Violation>,
    warnings: Vec<ContractWarning>,
}

impl Checker {
    /// The warnings recorded so far, leaving none.
    pub(crate) fn take_warnings(&mut self) -> Vec<ContractWarning> {
        std::mem::take(&mut self.warnings)
    }

    /// Records a contract warning at the current position, or at its child `key` if given:
    /// the event departs from the tables but stays usable.
    pub(crate) fn warn(&mut self, child: Option<Segment<'static>>, kind: ViolationKind) {
        let mut path = pointer::render(&self.path);
        if let Some(segment) = child {
            path.push_str(&pointer::render(&[segment]));
        }
        self.warnings.push(ContractWarning { path, kind });
    }

    /// Reads a member the contract's tables require but whose absence leaves the event usable
    /// (the contract's own schema or generator leaves it out): absent or `null` is a warning
    /// and "not given"; a value that does not read is still a violation.
    pub(crate) fn wanted<'v, T>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
        read: impl FnOnce(&'v Json<'v>) -> Result<T, ViolationKind>,
    ) -> Option<T> {
        self.warn_if_absent(object, key);
        self.optional(object, key, read)
    }

    /// [`Self::wanted`] for an object member, read one level deeper.
    pub(crate) fn wanted_object<'v, T>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
        read: impl FnOnce(&mut Self, &'v Object<'v>) -> Option<T>,
    ) -> Option<Option<T>> {
        self.warn_if_absent(object, key);
        self.optional_object(object, key, read)
    }

    /// [`Self::wanted`] for an identifier: empty or over-long also reads as "not given".
    pub(crate) fn wanted_identifier<'v>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
    ) -> Option<&'v str> {
        self.warn_if_absent(object, key);
        self.optional_identifier(object, key)
    }

    fn warn_if_absent(&mut self, object: &Object<'_>, key: &'static str) {
        if matches!(object.get(key), None | Some(Json::Null)) {
            self.warn(Some(Segment::Key(key)), ViolationKind::Missing);
        }
    }

    /// Reads an optional identifier: absent and `null` mean "not given", and so does an
    /// empty or over-long one, with a warning; a value that is no string is a violation.
    pub(crate) fn optional_identifier<'v>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
    ) -> Option<&'v str> {
        let value = self.optional(object, key, string)?;
        match non_empty_text(value) {
            Ok(text) => Some(text),
            Err(kind) => {
                self.warn(Some(Segment::Key(key)), kind);
                None
            }
        }
    }

    /// The violations recorded so far.
    pub(crate) fn into_violations(self) -> Vec<Violation> {
        self.violations
    }

    /// Whether nothing has been recorded.
    pub(crate) fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Records a violation at the current position, or at its child `key` if given.
    pub(crate) fn fail(&mut self, child: Option<Segment<'static>>, kind: ViolationKind) {
        let mut path = pointer::render(&self.path);
        if let Some(segment) = child {
            path.push_str(&pointer::render(&[segment]));
        }
        self.violations.push(Violation { path, kind });
    }

    /// Records a violation at a member whose name comes from the input (free-form maps).
    pub(crate) fn fail_at_key(&mut self, key: &str, kind: ViolationKind) {
        let mut path = pointer::render(&self.path);
        path.push('/');
        pointer::push_escaped(&mut path, key);
        self.violations.push(Violation { path, kind });
    }

    /// Runs `f` one level deeper, at `segment`.
    pub(crate) fn within<R>(
        &mut self,
        segment: Segment<'static>,
        f: impl FnOnce(&mut Self) -> R,
    ) -> R {
        self.path.push(segment);
        let result = f(self);
        self.path.pop();
        result
    }

    /// Reads the value at the current position.
    pub(crate) fn here<'v, T>(
        &mut self,
        value: &'v Json<'v>,
        read: impl FnOnce(&'v Json<'v>) -> Result<T, ViolationKind>,
    ) -> Option<T> {
        read(value).map_err(|kind| self.fail(None, kind)).ok()
    }

    /// Reads a required member; absence is a violation, and so is `null`.
    pub(crate) fn required<'v, T>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
        read: impl FnOnce(&'v Json<'v>) -> Result<T, ViolationKind>,
    ) -> Option<T> {
        let value = object.get(key).ok_or(ViolationKind::Missing);
        self.member(key, value.and_then(read))
    }

    /// Reads an optional member; absence and `null` both mean "not given".
    pub(crate) fn optional<'v, T>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
        read: impl FnOnce(&'v Json<'v>) -> Result<T, ViolationKind>,
    ) -> Option<T> {
        match object.get(key) {
            None | Some(Json::Null) => None,
            Some(value) => self.member(key, read(value)),
        }
    }

    /// Records a member's violation, if any, at the member's pointer.
    fn member<T>(&mut self, key: &'static str, result: Result<T, ViolationKind>) -> Option<T> {
        result
            .map_err(|kind| self.fail(Some(Segment::Key(key)), kind))
            .ok()
    }

    /// Reads a required object member and then its contents, one level deeper.
    pub(crate) fn required_object<'v, T>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
        read: impl FnOnce(&mut Self, &'v Object<'v>) -> Option<T>,
    ) -> Option<T> {
        let inner = self.required(object, key, self::object)?;
        self.within(Segment::Key(key), |c| read(c, inner))
    }

    /// Reads an optional object member (absent or `null` is fine) and its contents.
    pub(crate) fn optional_object<'v, T>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
        read: impl FnOnce(&mut Self, &'v Object<'v>) -> Option<T>,
    ) -> Option<Option<T>> {
        match object.get(key) {
            None | Some(Json::Null) => Some(None),
            Some(_) => self.required_object(object, key, read).map(Some),
        }
    }

    /// Reads a required array member, each element with `read_item`, one level deeper.
    ///
    /// Returns `None` if the array or any element is invalid; every element is still read,
    /// so every bad element is reported.
    /// An array over `max_items` is one violation at the array, its items unread.
    pub(crate) fn required_array<'v, T>(
        &mut self,
        object: &'v Object<'v>,
        key: &'static str,
        max_items: usize,
        mut read_item: impl FnMut(&mut Self, &'v Json<'v>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.required(object, key, array)?;
        if items.len() > max_items {
            self.fail(
                Some(Segment::Key(key)),
                ViolationKind::TooMany { max: max_items },
            );
            return None;
        }
        self.within(Segment::Key(key), |c| {
            let mut out = Vec::with_capacity(items.len());
            let mut all_ok = true;
            for (index, item) in items.iter().enumerate() {
                match c.within(Segment::Index(index), |c| read_item(c, item)) {
                    Some(value) => out.push(value),
                    None => all_ok = false,
                }
            }
            all_ok.then_some(out)
        })
    }

    /// Reads a required array of unique contract-enum values.
    ///
    /// Uniqueness is judged on the raw JSON items, valid or not, as JSON Schema's
    /// `uniqueItems` does, so both report the same problems.
    pub(crate) fn required_enum_set<'a, E: ContractEnum>(
        &mut self,
        object: &'a Object<'a>,
        key: &'static str,
    ) -> Option<Vec<Open<'a, E>>> {
        let raw = object.get(key).and_then(Json::as_array);
        let has_repeat = raw
            .filter(|items| items.len() <= MAX_SET_ITEMS)
            .is_some_and(has_repeated_items);
        let mut values = self.required_array(object, key, MAX_SET_ITEMS, |c, item| {
            c.here(item, open_enum_value::<E>)
        })?;
        // A repeated item says nothing more: counted once, with a warning.
        if has_repeat {
            self.warn(Some(Segment::Key(key)), ViolationKind::DuplicateItems);
            let mut seen: Vec<&str> = Vec::with_capacity(values.len());
            values.retain(|value| {
                let wire = value.as_wire();
                let first = !seen.contains(&wire);
                if first {
                    seen.push(wire);
                }
                first
            });
        }
        Some(values)
    }
}

/// A scalar as JSON Schema compares it (`1` equals `1.0`), for hashing.
#[derive(PartialEq, Eq, Hash)]
enum ScalarKey<'v> {
    Null,
    Bool(bool),
    Integer(i128),
    Float(u64),
    String(&'v str),
}

fn scalar_key<'v>(value: &'v Json<'_>) -> Option<ScalarKey<'v>> {
    Some(match value {
        Json::Null => ScalarKey::Null,
        Json::Bool(b) => ScalarKey::Bool(*b),
        Json::String(s) => ScalarKey::String(s),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarKey::Integer(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                ScalarKey::Integer(i128::from(u))
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 1e30 {
                    ScalarKey::Integer(f as i128)
                } else {
                    // -0.0 and 0.0 are one number.
                    ScalarKey::Float((f + 0.0).to_bits())
                }
            }
        }
        Json::Array(_) | Json::Object(_) => return None,
    })
}

/// Whether two items of `items` are equal (JSON Schema's `uniqueItems`), in linear expected
/// time: a hostile array of a million strings, or of 100,000 distinct objects, must not take
/// quadratic time (the objects took 28 s for 60,000 before their hashes were used here).
fn has_repeated_items(items: &[Json<'_>]) -> bool {
    let mut scalars = std::collections::HashSet::with_capacity(items.len());
    // Compound items by structural hash; only items with the same hash are compared.
    let mut compounds: std::collections::HashMap<u64, Vec<&Json<'_>>> =
        std::collections::HashMap::new();
    for item in items {
        match scalar_key(item) {
            Some(key) => {
                if !scalars.insert(key) {
                    return true;
                }
            }
            None => {
                let alike = compounds.entry(structural_hash(item)).or_default();
                if alike.contains(&item) {
                    return true;
                }
                alike.push(item);
            }
        }
    }
    false
}

/// A hash under which values that `Json`'s equality calls equal hash alike: an object's
/// members are combined in an order-independent way, as equality ignores their order.
fn structural_hash(value: &Json<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match value {
        Json::Null => 0u8.hash(&mut hasher),
        Json::Bool(b) => (1u8, b).hash(&mut hasher),
        Json::Number(n) => (2u8, n).hash(&mut hasher),
        Json::String(s) => (3u8, s.as_ref()).hash(&mut hasher),
        Json::Array(items) => {
            (4u8, items.len()).hash(&mut hasher);
            for item in items {
                structural_hash(item).hash(&mut hasher);
            }
        }
        Json::Object(object) => {
            let members = object.iter().fold(0u64, |sum, (name, member)| {
                let mut one = std::collections::hash_map::DefaultHasher::new();
                (name, structural_hash(member)).hash(&mut one);
                sum.wrapping_add(one.finish())
            });
            (5u8, members).hash(&mut hasher);
        }
    }
    hasher.finish()
}

fn wrong_type(expected: Expected, value: &Json<'_>) -> ViolationKind {
    ViolationKind::WrongType {
        expected,
        found: JsonType::of(value),
    }
}

/// A JSON object.
pub(crate) fn object<'v, 'a>(value: &'v Json<'a>) -> Result<&'v Object<'a>, ViolationKind> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(Expected::Object, value))
}

/// A JSON array.
pub(crate) fn array<'v, 'a>(value: &'v Json<'a>) -> Result<&'v [Json<'a>], ViolationKind> {
    value
        .as_array()
        .ok_or_else(|| wrong_type(Expected::Array, value))
}

/// A JSON string, possibly empty.
pub(crate) fn string<'v>(value: &'v Json<'_>) -> Result<&'v str, ViolationKind> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(Expected::String, value))
}

/// A non-empty JSON string of at most [`MAX_IDENTIFIER_LEN`] characters: every identifier,
/// and so every string that becomes a dimension.
pub(crate) fn non_empty<'v>(value: &'v Json<'_>) -> Result<&'v str, ViolationKind> {
    non_empty_text(string(value)?)
}

/// `text` if it is neither empty nor longer than an identifier may be.
fn non_empty_text(text: &str) -> Result<&str, ViolationKind> {
    match text {
        "" => Err(ViolationKind::Empty),
        // Bytes bound characters from above: count them only when it could matter.
        text if text.len() > MAX_IDENTIFIER_LEN && text.chars().count() > MAX_IDENTIFIER_LEN => {
            Err(ViolationKind::TooLong {
                max: MAX_IDENTIFIER_LEN,
            })
        }
        text => Ok(text),
    }
}

/// A boolean.
pub(crate) fn boolean(value: &Json<'_>) -> Result<bool, ViolationKind> {
    value
        .as_bool()
        .ok_or_else(|| wrong_type(Expected::Boolean, value))
}

/// A hyphenated UUID string, as its 128-bit value.
pub(crate) fn uuid(value: &Json<'_>) -> Result<u128, ViolationKind> {
    formats::parse_uuid(string(value)?).ok_or(ViolationKind::BadFormat(Format::Uuid))
}

/// An RFC 3339 date-time string, in UTC.
pub(crate) fn timestamp(value: &Json<'_>) -> Result<chrono::DateTime<chrono::Utc>, ViolationKind> {
    formats::parse_timestamp(string(value)?).ok_or(ViolationKind::BadFormat(Format::DateTime))
}

/// An e-mail address string.
pub(crate) fn email<'v>(value: &'v Json<'_>) -> Result<&'v str, ViolationKind> {
    let text = string(value)?;
    if formats::is_email(text) {
        Ok(text)
    } else {
        Err(ViolationKind::BadFormat(Format::Email))
    }
}

/// A string from the contract enum `E`.
pub(crate) fn enum_value<E: ContractEnum>(value: &Json<'_>) -> Result<E, ViolationKind> {
    E::from_wire(string(value)?).ok_or(ViolationKind::NotInEnum {
        allowed: E::WIRE_VALUES,
    })
}

/// A string of the open contract enum `E`: a known value or a well-formed new one.
pub(crate) fn open_enum_value<'a, E: ContractEnum>(
    value: &'a Json<'a>,
) -> Result<Open<'a, E>, ViolationKind> {
    Open::from_wire(string(value)?).ok_or(ViolationKind::NotEnumValue {
        known: E::WIRE_VALUES,
    })
}

/// Any JSON number.
pub(crate) fn number(value: &Json<'_>) -> Result<f64, ViolationKind> {
    value
        .as_f64()
        .ok_or_else(|| wrong_type(Expected::Number, value))
}

/// A number of any kind, at least zero.
pub(crate) fn non_negative(value: &Json<'_>) -> Result<f64, ViolationKind> {
    number_in(value, 0.0, None)
}

/// A number in `[0, 1]`: confidences, scores and temperatures.
pub(crate) fn unit_interval(value: &Json<'_>) -> Result<f64, ViolationKind> {
    number_in(value, 0.0, Some(1.0))
}

/// A number in `[min, max]`.
pub(crate) fn number_in(
    value: &Json<'_>,
    min: f64,
    max: Option<f64>,
) -> Result<f64, ViolationKind> {
    let n = number(value)?;
    let out_of_range = || ViolationKind::OutOfRange {
        min: Some(min),
        max,
    };
    if n < min || max.is_some_and(|max| n > max) {
        return Err(out_of_range());
    }
    Ok(n)
}

/// A count: an integer in `[0, 2^53 - 1]`.
pub(crate) fn count(value: &Json<'_>) -> Result<u64, ViolationKind> {
    integer_in(value, 0, MAX_SAFE_INTEGER)
}

/// An integer in `[min, max]`; `3.0` counts as an integer, as in JSON Schema.
pub(crate) fn integer_in(value: &Json<'_>, min: u64, max: u64) -> Result<u64, ViolationKind> {
    let Json::Number(number) = value else {
        return Err(wrong_type(Expected::Integer, value));
    };
    let out_of_range = || ViolationKind::OutOfRange {
        min: Some(min as f64),
        max: Some(max as f64),
    };
    if let Some(n) = number.as_u64() {
        return if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(out_of_range())
        };
    }
    if number.is_i64() {
        return Err(out_of_range());
    }
    let n = number.as_f64().unwrap_or(f64::NAN);
    if n.fract() != 0.0 || !n.is_finite() {
        return Err(ViolationKind::WrongType {
            expected: Expected::Integer,
            found: JsonType::Number,
        });
    }
    if n < min as f64 || n > max as f64 {
        return Err(out_of_range());
    }
    // In range and integral, so the conversion is exact.
    Ok(n as u64)
}

#[cfg(test)]
mod repeated_items_tests {
    use super::*;

    fn repeats(text: &str) -> bool {
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        match Json::from(&value) {
            Json::Array(items) => has_repeated_items(&items),
            _ => panic!("not an array"),
        }
    }

    #[test]
    fn repeats_are_found_as_json_schema_compares_values() {
        assert!(repeats(r#"["a", "b", "a"]"#));
        assert!(repeats("[1, 1.0]"), "1 equals 1.0");
        assert!(repeats("[0.0, -0.0]"));
        assert!(repeats(r#"[{"a": 1, "b": 2}, {"b": 2, "a": 1}]"#));
        assert!(!repeats(r#"["1", 1, true, null, [1], {"a": 1}]"#));
        assert!(!repeats("[1.5, 2.5, 9007199254740993, 9007199254740992]"));
    }

    #[test]
    fn a_huge_array_is_checked_in_one_pass() {
        let mut big: Vec<String> = (0..300_000).map(|i| format!("\"v{i}\"")).collect();
        let distinct = format!("[{}]", big.join(","));
        assert!(!repeats(&distinct));
        big.push("\"v17\"".into());
        assert!(repeats(&format!("[{}]", big.join(","))));
    }

    #[test]
    fn a_huge_array_of_objects_is_checked_in_one_pass() {
        // Compared pairwise, 100,000 objects took minutes; hashed, a blink.
        let mut big: Vec<String> = (0..100_000)
            .map(|i| format!(r#"{{"a": {i}, "b": [{i}, "x"]}}"#))
            .collect();
        assert!(!repeats(&format!("[{}]", big.join(","))));
        big.push(r#"{"b": [17, "x"], "a": 17}"#.into());
        assert!(repeats(&format!("[{}]", big.join(","))));
        assert!(repeats(r#"[[{"a": 1}, 2], [{"a": 1}, 2]]"#));
        assert!(!repeats(r#"[[1, 2], [2, 1]]"#), "arrays are ordered");
        assert!(!repeats(r#"[{"a": [1, 2]}, {"a": [2, 1]}]"#));
    }

    #[test]
    fn two_huge_objects_are_compared_in_one_pass() {
        let members: Vec<String> = (0..100_000).map(|i| format!(r#""m{i}": {i}"#)).collect();
        let forward = format!("{{{}}}", members.join(","));
        let backward = format!(
            "{{{}}}",
            members.iter().rev().cloned().collect::<Vec<_>>().join(",")
        );
        assert!(repeats(&format!("[{forward}, {backward}]")));
        let changed = forward.replace(r#""m99999": 99999"#, r#""m99999": 0"#);
        assert!(!repeats(&format!("[{changed}, {backward}]")));
    }
}
