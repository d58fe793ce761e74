//! What can be wrong with an event, where, and which dead-letter reason that implies.

use std::fmt;

use crate::json::Json;

/// One contract violation: the JSON Pointer of the offending field and what is wrong with it.
///
/// For a missing required field the pointer names the missing field itself, not its parent;
/// for input that is not a JSON object at all the pointer is `""`.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// RFC 6901 pointer to the offending field.
    pub path: String,
    /// What is wrong.
    pub kind: ViolationKind,
}

/// The kinds of contract violation, one per rule the checker enforces.
#[derive(Debug, Clone, PartialEq)]
pub enum ViolationKind {
    /// The bytes are not a JSON document (or nest deeper than the parser allows).
    NotJson(String),
    /// The message exceeds the configured size limit; its content was not inspected.
    TooLarge {
        /// Size of the message in bytes.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// A required field is absent.
    Missing,
    /// The field has the wrong JSON type.
    WrongType {
        /// The JSON type the contract requires.
        expected: Expected,
        /// The JSON type found.
        found: JsonType,
    },
    /// A number is outside its documented range.
    OutOfRange {
        /// Inclusive lower bound, if any.
        min: Option<f64>,
        /// Inclusive upper bound, if any.
        max: Option<f64>,
    },
    /// A string that must not be empty is empty.
    Empty,
    /// A string is not one of the enum's values.
    NotInEnum {
        /// The values the contract allows.
        allowed: &'static [&'static str],
    },
    /// A string is neither a known value of an open enum nor a well-formed new one.
    NotEnumValue {
        /// The values this build knows.
        known: &'static [&'static str],
    },
    /// A string does not have the required format.
    BadFormat(Format),
    /// An array that must hold unique items holds a repeated one.
    DuplicateItems,
    /// A string is longer than its bound (`limits`).
    TooLong {
        /// The most characters allowed.
        max: usize,
    },
    /// An array holds more items than its bound (`limits`); its items were not read.
    TooMany {
        /// The most items allowed.
        max: usize,
    },
    /// A payload field names another tenant than the envelope's `tenantId`.
    OtherTenant,
    /// `eventType` is well formed but names no event in the contracts.
    UnknownEventType,
    /// `eventType` names a known event at a version this pipeline does not support.
    UnsupportedVersion {
        /// The newest version of this event this build reads.
        supported: &'static str,
    },
    /// `eventType` names a version whose support ended (the pipeline's version registry,
    /// `[[contracts.versions]]`): refused from its end date on.
    VersionEnded {
        /// The first day it was no longer accepted.
        ended: chrono::NaiveDate,
        /// The version to publish instead.
        successor: &'static str,
    },
}

/// The JSON type a field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A JSON string.
    String,
    /// Any JSON number.
    Number,
    /// A JSON number with no fractional part.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

/// The JSON type of a value that was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// String formats the contracts require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4122 UUID in the hyphenated 8-4-4-4-12 form.
    Uuid,
    /// RFC 3339 date-time (`2025-11-09T12:34:56.789Z`).
    DateTime,
    /// `{domain}.{action}.v{N}`, lower case.
    EventType,
    /// `1.{minor}`: the only envelope major version is 1.
    EventVersion,
    /// `local@domain` with no spaces.
    Email,
}

/// Why a message was refused, as recorded in the dead-letter path.
///
/// This is the part of the dead-letter taxonomy that the contracts alone can decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum Reason {
    /// Not a JSON document.
    NotJson,
    /// Larger than the configured message limit.
    Oversized,
    /// An `eventType` that names no known event.
    UnknownEventType,
    /// A known event at an unsupported version.
    UnsupportedVersion,
    /// Any other contract violation.
    SchemaViolation,
}

impl Reason {
    /// The reason's name in the dead-letter taxonomy (`not_json`, `schema_violation`, ...).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Violation {
    /// The dead-letter reason this violation implies on its own.
    pub fn reason(&self) -> Reason {
        match self.kind {
            ViolationKind::NotJson(_) => Reason::NotJson,
            ViolationKind::TooLarge { .. } => Reason::Oversized,
            ViolationKind::UnknownEventType => Reason::UnknownEventType,
            ViolationKind::UnsupportedVersion { .. } | ViolationKind::VersionEnded { .. } => {
                Reason::UnsupportedVersion
            }
            _ => Reason::SchemaViolation,
        }
    }
}

/// The dead-letter reason for a set of violations: the most fundamental one wins.
pub fn reason_for(violations: &[Violation]) -> Reason {
    const PRECEDENCE: [Reason; 4] = [
        Reason::Oversized,
        Reason::NotJson,
        Reason::UnknownEventType,
        Reason::UnsupportedVersion,
    ];
    PRECEDENCE
        .into_iter()
        .find(|reason| violations.iter().any(|v| v.reason() == *reason))
        .unwrap_or(Reason::SchemaViolation)
}

impl JsonType {
    /// The JSON type of `value`.
    pub fn of(value: &Json<'_>) -> Self {
        match value {
            Json::Null => Self::Null,
            Json::Bool(_) => Self::Boolean,
            Json::Number(_) => Self::Number,
            Json::String(_) => Self::String,
            Json::Array(_) => Self::Array,
            Json::Object(_) => Self::Object,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean => "boolean",
            Self::Number => "number",
            Self::String => "string",
            Self::Array => "array",
            Self::Object => "object",
        }
    }
}

impl Expected {
    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson(detail) => write!(f, "not valid JSON: {detail}"),
            Self::TooLarge { size, limit } => {
                write!(f, "message is {size} bytes, over the {limit}-byte limit")
            }
            Self::Missing => f.write_str("required field is missing"),
            Self::WrongType { expected, found } => {
                write!(f, "expected {}, found {}", expected.name(), found.name())
            }
            Self::OutOfRange { min, max } => match (min, max) {
                (Some(min), Some(max)) => write!(f, "must be between {min} and {max}"),
                (Some(min), None) => write!(f, "must be at least {min}"),
                (None, Some(max)) => write!(f, "must be at most {max}"),
                (None, None) => f.write_str("out of range"),
            },
            Self::Empty => f.write_str("must not be empty"),
            Self::NotInEnum { allowed } => write!(f, "must be one of: {}", allowed.join(", ")),
            Self::NotEnumValue { known } => write!(
                f,
                "must be one of: {}, or a value added since (lower snake_case, at most {} \
                 characters)",
                known.join(", "),
                crate::enums::MAX_NEW_VALUE_LEN
            ),
            Self::BadFormat(format) => f.write_str(match format {
                Format::Uuid => "not a UUID (expected 8-4-4-4-12 hexadecimal digits)",
                Format::DateTime => {
                    "not an RFC 3339 date-time (expected e.g. 2025-11-09T12:34:56.789Z)"
                }
                Format::EventType => "not an event type (expected {domain}.{action}.v{N})",
                Format::EventVersion => "unsupported envelope version (expected 1.x)",
                Format::Email => "not an email address",
            }),
            Self::DuplicateItems => f.write_str("items must be unique"),
            Self::TooLong { max } => write!(f, "longer than {max} characters"),
            Self::TooMany { max } => write!(f, "more than {max} items"),
            Self::OtherTenant => f.write_str("names another tenant than the envelope's tenantId"),
            Self::UnknownEventType => f.write_str("unknown event type"),
            Self::UnsupportedVersion { supported } => {
                write!(
                    f,
                    "unsupported event version (newest supported: {supported})"
                )
            }
            Self::VersionEnded { ended, successor } => write!(
                f,
                "this event version's support ended on {ended} (deprecated); publish \
                 {successor} instead (docs/contracts.md)"
            ),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(kind: ViolationKind) -> Violation {
        Violation {
            path: "/x".into(),
            kind,
        }
    }

    #[test]
    fn reason_prefers_the_most_fundamental_problem() {
        let schema = violation(ViolationKind::Missing);
        let unknown = violation(ViolationKind::UnknownEventType);
        assert_eq!(
            reason_for(std::slice::from_ref(&schema)),
            Reason::SchemaViolation
        );
        assert_eq!(reason_for(&[schema, unknown]), Reason::UnknownEventType);
        let not_json = violation(ViolationKind::NotJson("eof".into()));
        assert_eq!(reason_for(&[not_json]), Reason::NotJson);
    }

    #[test]
    fn reasons_use_the_taxonomy_names() {
        assert_eq!(Reason::SchemaViolation.as_str(), "schema_violation");
        assert_eq!(
            Reason::UnsupportedVersion.to_string(),
            "unsupported_version"
        );
    }

    #[test]
    fn messages_name_the_problem() {
        let v = Violation {
            path: "/data/cost/amountUSD".into(),
            kind: ViolationKind::WrongType {
                expected: Expected::Number,
                found: JsonType::String,
            },
        };
        assert_eq!(
            v.to_string(),
            "/data/cost/amountUSD: expected number, found string"
        );
    }
}
