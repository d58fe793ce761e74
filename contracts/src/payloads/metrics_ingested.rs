//! `metrics.ingested.v1`: a batch of a tenant's business metrics was ingested.

use crate::checker::{self as read, Checker, Object};
use crate::enums::{IngestionSource, Open};
use crate::json::Json;
use crate::limits::MAX_METRICS_PER_BATCH;

/// Payload of `metrics.ingested.v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsIngested<'a> {
    /// `batchId`.
    pub batch_id: &'a str,
    /// `source`: how the batch arrived.
    pub source: Open<'a, IngestionSource>,
    /// `fileName`, for file uploads.
    pub file_name: Option<&'a str>,
    /// `recordCount`: records in the batch.
    pub record_count: u64,
    /// `metricsIngested`: a sample of the ingested metrics.
    pub metrics: Vec<IngestedMetric<'a>>,
    /// `validationResults`.
    pub validation: ValidationResults,
    /// `processingTimeMs`.
    pub processing_time_ms: f64,
}

/// One sampled metric of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedMetric<'a> {
    /// `subject` (free text: tenants' metrics are not limited to the classifier's subjects).
    pub subject: &'a str,
    /// `period`.
    pub period: &'a str,
    /// `value`.
    pub value: f64,
    /// `unit`.
    pub unit: &'a str,
    /// `dimensions`: optional free-form string labels.
    pub dimensions: Vec<(&'a str, &'a str)>,
}

/// Validation summary of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationResults {
    /// `valid` records.
    pub valid: u64,
    /// `invalid` records.
    pub invalid: u64,
    /// `warnings`.
    pub warnings: u64,
}

impl<'a> MetricsIngested<'a> {
    pub(crate) fn read(c: &mut Checker, data: &'a Object<'a>) -> Option<Self> {
        let batch_id = c.required(data, "batchId", read::non_empty);
        let source = c.required(data, "source", read::open_enum_value::<IngestionSource>);
        let file_name = c.optional(data, "fileName", read::string);
        let record_count = c.required(data, "recordCount", read::count);
        let metrics = c.required_array(
            data,
            "metricsIngested",
            MAX_METRICS_PER_BATCH,
            IngestedMetric::read,
        );
        let validation = c.required_object(data, "validationResults", |c, o| {
            let valid = c.required(o, "valid", read::count);
            let invalid = c.required(o, "invalid", read::count);
            let warnings = c.required(o, "warnings", read::count);
            Some(ValidationResults {
                valid: valid?,
                invalid: invalid?,
                warnings: warnings?,
            })
        });
        let processing_time_ms = c.required(data, "processingTimeMs", read::non_negative);
        Some(Self {
            batch_id: batch_id?,
            source: source?,
            file_name,
            record_count: record_count?,
            metrics: metrics?,
            validation: validation?,
            processing_time_ms: processing_time_ms?,
        })
    }
}

impl<'a> IngestedMetric<'a> {
    fn read(c: &mut Checker, item: &'a Json<'a>) -> Option<Self> {
        let o = c.here(item, read::object)?;
        let subject = c.required(o, "subject", read::non_empty);
        let period = c.required(o, "period", read::string);
        let value = c.required(o, "value", read::number);
        let unit = c.required(o, "unit", read::string);
        let dimensions = c.optional_object(o, "dimensions", |c, dims| {
            let mut out = Vec::with_capacity(dims.len());
            for (key, value) in dims.iter() {
                match read::string(value) {
                    Ok(text) => out.push((key, text)),
                    Err(kind) => c.fail_at_key(key, kind),
                }
            }
            Some(out)
        });
        Some(Self {
            subject: subject?,
            period: period?,
            value: value?,
            unit: unit?,
            dimensions: dimensions?.unwrap_or_default(),
        })
    }
}
