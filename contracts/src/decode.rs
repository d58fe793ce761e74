//! The contracts' front door: bytes in, a typed event or every violation out.

use crate::json::Json;

use crate::checker::Checker;
use crate::envelope;
use crate::event::Event;
use crate::violation::{Violation, ViolationKind};
use crate::warning::ContractWarning;

/// Parses one message as JSON, borrowing its strings from `bytes` where it can.
///
/// The tokenizer is sonic-rs (SIMD string scanning and UTF-8 checks) driving the visitor
/// serde_json drove, so the document is the same (tests/parser_agreement.rs); parsing is about
/// 15 % faster (bench (p), docs/performance.md). Anything it refuses (bad syntax, invalid
/// UTF-8, numbers beyond `f64`, arrays and objects nested deeper than
/// [`MAX_DEPTH`](crate::json::MAX_DEPTH)) is a single `NotJson` violation at the document
/// (`""`).
pub fn parse(bytes: &[u8]) -> Result<Json<'_>, Violation> {
    sonic_rs::from_slice(bytes).map_err(|error| Violation {
        path: String::new(),
        kind: ViolationKind::NotJson(error.to_string()),
    })
}

/// Validates a parsed message against the contracts and returns the typed event.
///
/// Every violation is reported, not just the first; unknown extra fields are ignored, as the
/// contracts' evolution rules require.
pub fn validate<'a>(value: &'a Json<'a>) -> Result<Event<'a>, Vec<Violation>> {
    let mut checker = Checker::default();
    let event = envelope::read_event(&mut checker, value);
    match event {
        Some(mut event) if checker.is_clean() => {
            event.warnings = checker.take_warnings();
            Ok(event)
        }
        _ => Err(checker.into_violations()),
    }
}

/// Checks one raw message: size limit, then JSON, then the contracts. Empty means valid.
pub fn check(bytes: &[u8], max_bytes: usize) -> Vec<Violation> {
    assess(bytes, max_bytes).err().unwrap_or_default()
}

/// Like [`check`], keeping what a valid message departs from the tables in: its contract
/// warnings (empty when none), or every violation.
pub fn assess(bytes: &[u8], max_bytes: usize) -> Result<Vec<ContractWarning>, Vec<Violation>> {
    if bytes.len() > max_bytes {
        let kind = ViolationKind::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        };
        return Err(vec![Violation {
            path: String::new(),
            kind,
        }]);
    }
    let value = parse(bytes).map_err(|violation| vec![violation])?;
    validate(&value).map(|event| event.warnings)
}
