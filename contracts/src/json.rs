//! The parsed form of a message: a JSON document that borrows its strings from the bytes.
//!
//! `serde_json::Value` allocates a `String` for every key and string value and a B-tree for
//! every object, which made parsing the most expensive step of the task. [`Json`] keeps
//! strings as slices of the input (unless they contain escapes) and objects as small vectors
//! of members: a ~1 KB event costs a handful of allocations instead of dozens. It is built by a
//! serde visitor, so any serde tokenizer can drive it; `decode::parse` uses sonic-rs, whose
//! syntax, UTF-8 and number rules agree with serde_json's (tests/parser_agreement.rs).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Number;

/// A JSON value whose strings borrow from the parsed bytes where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as serde_json keeps it (unsigned, signed or floating point).
    Number(Number),
    /// A string.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object.
    Object(Object<'a>),
}

/// A JSON object: its members in document order.
///
/// Lookups scan the members (event objects have a dozen at most, where a scan beats hashing)
/// and take the last member of a repeated name, as `serde_json::Value` does.
#[derive(Debug, Clone, Default)]
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, Json<'a>)>,
    /// Whether some name is given more than once (rare; then iteration skips the earlier ones).
    repeats: bool,
}

impl<'a> Object<'a> {
    fn new(members: Vec<(Cow<'a, str>, Json<'a>)>) -> Self {
        // Event objects are small: compare pairwise without allocating. A large (possibly
        // hostile, 100,000-member) object takes a set, so the check stays linear.
        let repeats = if members.len() <= 16 {
            let names = || members.iter().map(|(name, _)| name);
            names()
                .enumerate()
                .any(|(i, name)| names().skip(i + 1).any(|other| other == name))
        } else {
            let mut names = HashSet::with_capacity(members.len());
            !members.iter().all(|(name, _)| names.insert(name.as_ref()))
        };
        Self { members, repeats }
    }

    /// The value of member `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.members
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Whether member `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The members in document order; of a repeated name, only the last (what [`Self::get`]
    /// returns), as a map would keep them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        let last: Option<HashMap<&str, usize>> = self.repeats.then(|| {
            let by_name = self.members.iter().enumerate();
            by_name.map(|(i, (name, _))| (name.as_ref(), i)).collect()
        });
        self.members
            .iter()
            .enumerate()
            .filter(move |(i, (name, _))| {
                last.as_ref()
                    .is_none_or(|last| last.get(name.as_ref()) == Some(i))
            })
            .map(|(_, (name, value))| (name.as_ref(), value))
    }

    /// How many distinct member names the object has.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the object has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Objects are equal when they have the same members, whatever their order (JSON's meaning,
/// and what `uniqueItems` compares).
impl PartialEq for Object<'_> {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        if other.members.len() <= 16 {
            return self
                .iter()
                .all(|(name, value)| other.get(name) == Some(value));
        }
        // A large (possibly hostile) object: index the other side once, so that comparing
        // two 100,000-member objects stays linear instead of scanning per member.
        let theirs: HashMap<&str, &Json<'_>> = other.iter().collect();
        self.iter()
            .all(|(name, value)| theirs.get(name) == Some(&value))
    }
}

impl<'a> Json<'a> {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(object) => Some(object),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Member `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object().and_then(|object| object.get(key))
    }
}

impl<'a> From<&'a serde_json::Value> for Json<'a> {
    fn from(value: &'a serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => Json::Number(n.clone()),
            serde_json::Value::String(s) => Json::String(Cow::Borrowed(s)),
            serde_json::Value::Array(items) => Json::Array(items.iter().map(Json::from).collect()),
            serde_json::Value::Object(map) => Json::Object(Object::new(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from(v)))
                    .collect(),
            )),
        }
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(object) => {
                let mut map = serializer.serialize_map(None)?;
                for (name, value) in object.iter() {
                    map.serialize_entry(name, value)?;
                }
                map.end()
            }
        }
    }
}

/// How deeply arrays and objects may nest. Events nest four levels at most; half serde_json's
/// 128 keeps a hostile `[[[[...` far from a 2 MiB thread stack, where each level costs one
/// frame of the SIMD parser (about 20 KB in a debug build).
pub const MAX_DEPTH: u16 = 64;

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        JsonVisitor { depth: 0 }.deserialize(deserializer)
    }
}

/// Builds a value inside `depth` arrays and objects (it is its own seed for the values
/// inside, one level deeper).
#[derive(Clone, Copy)]
struct JsonVisitor {
    depth: u16,
}

impl JsonVisitor {
    /// The seed for the members of an array or object opened here; past [`MAX_DEPTH`] it is
    /// refused before anything inside is read, so recursion stops there.
    fn open<E: de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(E::custom("recursion limit exceeded"));
        }
        Ok(Self { depth })
    }
}

impl<'de> DeserializeSeed<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Number::from_f64(n)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        let inner = self.open()?;
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
        let inner = self.open()?;
        while let Some(name) = map.next_key_seed(Name)? {
            members.push((name, map.next_value_seed(inner)?));
        }
        Ok(Json::Object(Object::new(members)))
    }
}

/// A member name, borrowed from the input when it has no escapes (serde's own `Cow`
/// deserialisation always copies).
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json<'_> {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let json = parse(r#"{"plain": "abc", "escaped": "a\"b"}"#);
        assert!(matches!(
            json.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(json.get("escaped"), Some(Json::String(Cow::Owned(s))) if s == "a\"b"));
    }

    #[test]
    fn a_repeated_member_takes_its_last_value_as_serde_json_does() {
        let text = r#"{"a": 1, "b": 2, "a": 3}"#;
        let json = parse(text);
        let value: serde_json::Value = serde_json::from_str(text).expect("valid");
        assert_eq!(json.get("a"), Some(&Json::Number(3.into())));
        assert_eq!(json, Json::from(&value));
        assert_eq!(serde_json::to_value(&json).expect("serialises"), value);
    }

    #[test]
    fn a_huge_object_is_read_in_linear_time() {
        let members: Vec<String> = (0..200_000).map(|i| format!("\"k{i}\": {i}")).collect();
        let text = format!("{{{}, \"k7\": \"last\"}}", members.join(","));
        let json = parse(&text);
        let object = json.as_object().expect("object");
        // A quadratic walk over the members would take minutes here.
        assert_eq!(object.len(), 200_000);
        assert_eq!(object.get("k7").and_then(Json::as_str), Some("last"));
        assert_eq!(object.iter().filter(|(name, _)| *name == "k7").count(), 1);
    }

    #[test]
    fn repeats_are_found_in_small_and_large_objects() {
        for size in [2, 16, 17, 40] {
            let mut members: Vec<String> = (0..size).map(|i| format!("\"k{i}\": {i}")).collect();
            members.push("\"k1\": \"again\"".to_string());
            let text = format!("{{{}}}", members.join(","));
            let json = parse(&text);
            let object = json.as_object().expect("object");
            assert_eq!(object.len(), size, "{size}");
            assert_eq!(object.get("k1").and_then(Json::as_str), Some("again"));
        }
    }

    #[test]
    fn objects_compare_by_members_not_order() {
        assert_eq!(
            parse(r#"{"a": 1, "b": [true]}"#),
            parse(r#"{"b": [true], "a": 1}"#)
        );
        assert_ne!(parse(r#"{"a": 1}"#), parse(r#"{"a": 1, "b": 2}"#));
        assert_ne!(parse(r#"{"a": 1}"#), parse(r#"{"a": 2}"#));
    }

    #[test]
    fn agrees_with_serde_json_value_on_every_kind() {
        let text = r#"{"n": null, "t": true, "u": 18446744073709551615, "i": -5, "f": 1.5e300,
            "s": "\u00e9\n", "a": [1, "x", {"k": []}], "o": {"": {}}}"#;
        let value: serde_json::Value = serde_json::from_str(text).expect("valid");
        assert_eq!(parse(text), Json::from(&value));
    }
}
