//! `classification.performed`: a user message was classified. v1 and v2 (which renames
//! `classification.confidence` to `confidenceScore` and requires `classification.language`)
//! read into the same facts, so every metric counts both (`docs/contracts.md`).

use crate::checker::{self as read, Checker, Object};
use crate::enums::{Intent, Measure, Open, Subject};
use crate::json::Json;

/// Payload of `classification.performed` (v1 or v2).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationPerformed<'a> {
    /// `messageId` of the classified user message.
    pub message_id: &'a str,
    /// `originalText`: the user's input.
    pub original_text: &'a str,
    /// `classification`.
    pub classification: Classification<'a>,
    /// `classifierModel`: model version used.
    pub classifier_model: &'a str,
    /// `processingTimeMs`: classification latency.
    pub processing_time_ms: f64,
}

/// The classification result.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification<'a> {
    /// `intent` (open: new values are accepted).
    pub intent: Open<'a, Intent>,
    /// `subject` (open).
    pub subject: Open<'a, Subject>,
    /// `measure` (open).
    pub measure: Open<'a, Measure>,
    /// `timeRange`, if the message named one.
    pub time_range: Option<TimeRange<'a>>,
    /// `filters`: free-form filter values.
    pub filters: &'a [Json<'a>],
    /// `confidence` (v1) or `confidenceScore` (v2), in `[0, 1]`.
    pub confidence: f64,
    /// `language` (v2 only): the message's BCP 47 language tag.
    pub language: Option<&'a str>,
}

/// The time period a message asked about.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeRange<'a> {
    /// `period` (e.g. `quarter`).
    pub period: &'a str,
    /// `value` (e.g. `Q3`).
    pub value: &'a str,
    /// `year` (1 to 9999).
    pub year: u64,
}

impl<'a> ClassificationPerformed<'a> {
    pub(crate) fn read(c: &mut Checker, data: &'a Object<'a>) -> Option<Self> {
        Self::read_version(c, data, Version::V1)
    }

    pub(crate) fn read_v2(c: &mut Checker, data: &'a Object<'a>) -> Option<Self> {
        Self::read_version(c, data, Version::V2)
    }

    fn read_version(c: &mut Checker, data: &'a Object<'a>, version: Version) -> Option<Self> {
        let message_id = c.required(data, "messageId", read::non_empty);
        let original_text = c.required(data, "originalText", read::string);
        let classification = c.required_object(data, "classification", |c, o| {
            Classification::read(c, o, version)
        });
        let classifier_model = c.required(data, "classifierModel", read::non_empty);
        let processing_time_ms = c.required(data, "processingTimeMs", read::non_negative);
        Some(Self {
            message_id: message_id?,
            original_text: original_text?,
            classification: classification?,
            classifier_model: classifier_model?,
            processing_time_ms: processing_time_ms?,
        })
    }
}

/// The payload versions this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

impl<'a> Classification<'a> {
    fn read(c: &mut Checker, object: &'a Object<'a>, version: Version) -> Option<Self> {
        let intent = c.required(object, "intent", read::open_enum_value::<Intent>);
        let subject = c.required(object, "subject", read::open_enum_value::<Subject>);
        let measure = c.required(object, "measure", read::open_enum_value::<Measure>);
        let time_range = c.optional_object(object, "timeRange", TimeRange::read);
        let filters = c.required(object, "filters", read::array);
        let (confidence, language) = match version {
            Version::V1 => (c.required(object, "confidence", read::unit_interval), None),
            Version::V2 => (
                c.required(object, "confidenceScore", read::unit_interval),
                Some(c.required(object, "language", read::non_empty)),
            ),
        };
        Some(Self {
            intent: intent?,
            subject: subject?,
            measure: measure?,
            time_range: time_range?,
            filters: filters?,
            confidence: confidence?,
            language: match language {
                Some(language) => Some(language?),
                None => None,
            },
        })
    }
}

impl<'a> TimeRange<'a> {
    fn read(c: &mut Checker, object: &'a Object<'a>) -> Option<Self> {
        let period = c.required(object, "period", read::string);
        let value = c.required(object, "value", read::string);
        let year = c.required(object, "year", |v| read::integer_in(v, 1, 9999));
        Some(Self {
            period: period?,
            value: value?,
            year: year?,
        })
    }
}
