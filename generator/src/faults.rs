//! The imperfections of real traffic, applied to the clean stream at chosen rates:
//! resends (same `eventId`), invalid events, out-of-order and late delivery, skewed clocks.

use chrono::Duration;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::model::{CleanEvent, rfc3339};

/// The share of events (0 to 1) each fault applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    /// Resent later with the same bytes (a producer retry).
    pub duplicates: f64,
    /// Replaced by a broken version of themselves.
    pub invalid: f64,
    /// Delivered a little after events that happened later.
    pub out_of_order: f64,
    /// Delivered minutes after their event time.
    pub late: f64,
    /// Stamped by a clock hours ahead.
    pub future_skew: f64,
    /// Carry the `eventId` of a recent event of another tenant (ids are unique per tenant
    /// only, so both are counted).
    pub shared_ids: f64,
    /// Classifications sent as `classification.performed.v2` (not a fault: the contract's
    /// evolution, which live traffic carries too).
    pub v2: f64,
    /// Carry a value of an open enum added to the contract after this build (not a fault
    /// either: counted under its own value).
    pub new_enum_values: f64,
}

impl FaultRates {
    /// Every problem with these shares: each must be between 0 and 1, and the faults that
    /// replace or move an event (all but duplicates) must not add up to more than 1.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let named = [
            ("duplicates", self.duplicates),
            ("invalid", self.invalid),
            ("out-of-order", self.out_of_order),
            ("late", self.late),
            ("future-skew", self.future_skew),
            ("shared-ids", self.shared_ids),
            ("v2", self.v2),
            ("new-enum-values", self.new_enum_values),
        ];
        for (name, share) in named {
            if !(0.0..=1.0).contains(&share) {
                problems.push(format!("--{name} must be between 0 and 1, not {share}"));
            }
        }
        if self.invalid + self.out_of_order + self.late + self.future_skew > 1.0 {
            problems.push(
                "--invalid, --out-of-order, --late and --future-skew together must not exceed 1"
                    .into(),
            );
        }
        problems
    }
}

/// What was done to one emitted message; the generator's own ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Delivered as produced.
    None,
    /// A second copy of an event already delivered.
    Duplicate,
    /// Broken on purpose; the payload says how.
    Invalid(Corruption),
    /// Held back behind later events.
    OutOfOrder,
    /// Held back for minutes of event time.
    Late,
    /// Timestamp moved hours into the future.
    FutureSkew,
    /// `eventId` taken from a recent event of another tenant.
    SharedId,
    /// A value of an open enum this build does not know.
    NewEnumValue,
}

/// The ways an event is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// Cut off mid-document.
    Truncated,
    /// A required field removed.
    MissingField,
    /// A number sent as a string.
    WrongType,
    /// A number outside its range.
    OutOfRange,
    /// `eventId` that is no UUID.
    BadUuid,
    /// `timestamp` in a non-RFC 3339 format.
    BadTimestamp,
    /// An `eventType` nobody defined.
    UnknownEventType,
    /// A known event at a version not supported.
    UnsupportedVersion,
}

const CORRUPTIONS: [Corruption; 8] = [
    Corruption::Truncated,
    Corruption::MissingField,
    Corruption::WrongType,
    Corruption::OutOfRange,
    Corruption::BadUuid,
    Corruption::BadTimestamp,
    Corruption::UnknownEventType,
    Corruption::UnsupportedVersion,
];

/// Chooses the fault for one clean event, and applies the ones that change its content.
pub fn choose(rng: &mut ChaCha8Rng, rates: &FaultRates, event: &mut CleanEvent) -> Fault {
    let roll: f64 = rng.random();
    let mut threshold = rates.invalid;
    if roll < threshold {
        let corruption = CORRUPTIONS[rng.random_range(0..CORRUPTIONS.len())];
        corrupt(rng, corruption, &mut event.json);
        return Fault::Invalid(corruption);
    }
    threshold += rates.future_skew;
    if roll < threshold {
        let skewed = event.at + Duration::minutes(rng.random_range(60..48 * 60));
        event.json["timestamp"] = json!(rfc3339(skewed));
        return Fault::FutureSkew;
    }
    threshold += rates.late;
    if roll < threshold {
        return Fault::Late;
    }
    threshold += rates.out_of_order;
    if roll < threshold {
        return Fault::OutOfOrder;
    }
    Fault::None
}

/// Whether an on-time event takes another tenant's recent `eventId`.
pub fn share_id(rng: &mut ChaCha8Rng, rates: &FaultRates) -> bool {
    rates.shared_ids > 0.0 && rng.random_bool(rates.shared_ids.min(1.0))
}

/// Whether an event rolls `share` (for the evolution shares).
pub fn rolls(rng: &mut ChaCha8Rng, share: f64) -> bool {
    share > 0.0 && rng.random_bool(share.min(1.0))
}

/// Whether a delivered event is also resent later.
pub fn resend(rng: &mut ChaCha8Rng, rates: &FaultRates) -> bool {
    rates.duplicates > 0.0 && rng.random_bool(rates.duplicates.min(1.0))
}

fn corrupt(rng: &mut ChaCha8Rng, corruption: Corruption, json: &mut Value) {
    match corruption {
        // Truncation happens on the bytes; see `truncate`.
        Corruption::Truncated => {}
        Corruption::MissingField => {
            let field =
                ["eventId", "tenantId", "timestamp", "data", "source"][rng.random_range(0..5)];
            if let Some(object) = json.as_object_mut() {
                object.remove(field);
            }
        }
        Corruption::WrongType => {
            json["timestamp"] = json!(1_731_155_696_000u64);
        }
        Corruption::OutOfRange => {
            let data = &mut json["data"];
            if data
                .get("classification")
                .and_then(|c| c.get("confidence"))
                .is_some()
            {
                data["classification"]["confidence"] = json!(1.7);
            } else if data.get("qualityMetrics").is_some() {
                data["qualityMetrics"]["confidenceScore"] = json!(-0.2);
            } else if data.get("satisfactionRating").is_some() {
                data["satisfactionRating"] = json!(11);
            } else {
                data["processingTimeMs"] = json!(-5);
                data["provisioningTimeMs"] = json!(-5);
                data["durationSeconds"] = json!(-5);
            }
        }
        Corruption::BadUuid => json["eventId"] = json!("evt-not-a-uuid"),
        Corruption::BadTimestamp => json["timestamp"] = json!("09/11/2025 12:34"),
        Corruption::UnknownEventType => json["eventType"] = json!("invoice.settled.v1"),
        Corruption::UnsupportedVersion => {
            if let Some(Value::String(t)) = json.get_mut("eventType")
                && let Some((name, _)) = t.rsplit_once('.')
            {
                *t = format!("{name}.v9");
            }
        }
    }
}

/// Cuts a serialised event off at a random point, leaving invalid JSON.
pub fn truncate(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    let keep = rng.random_range(1..bytes.len().max(2));
    bytes.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_shares_are_checked_and_every_problem_named() {
        assert!(FaultRates::default().problems().is_empty());
        let bad = FaultRates {
            duplicates: 1.5,
            invalid: 0.6,
            late: 0.6,
            ..FaultRates::default()
        };
        let problems = bad.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("--duplicates"));
        assert!(problems[1].contains("together"));
    }
}
