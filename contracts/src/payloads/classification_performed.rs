//! `classification.performed.v1`: a user message was classified.

use crate::checker::{self as read, Checker, Object};
use crate::enums::{Intent, Measure, Open, Subject};
use crate::json::Json;

/// Payload of `classification.performed.v1`.
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
    /// `confidence` in `[0, 1]`.
    pub confidence: f64,
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
        let message_id = c.required(data, "messageId", read::non_empty);
        let original_text = c.required(data, "originalText", read::string);
        let classification = c.required_object(data, "classification", Classification::read);
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

impl<'a> Classification<'a> {
    fn read(c: &mut Checker, object: &'a Object<'a>) -> Option<Self> {
        let intent = c.required(object, "intent", read::open_enum_value::<Intent>);
        let subject = c.required(object, "subject", read::open_enum_value::<Subject>);
        let measure = c.required(object, "measure", read::open_enum_value::<Measure>);
        let time_range = c.optional_object(object, "timeRange", TimeRange::read);
        let filters = c.required(object, "filters", read::array);
        let confidence = c.required(object, "confidence", read::unit_interval);
        Some(Self {
            intent: intent?,
            subject: subject?,
            measure: measure?,
            time_range: time_range?,
            filters: filters?,
            confidence: confidence?,
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
