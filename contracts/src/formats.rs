//! The string formats of the contracts: UUIDs, RFC 3339 date-times, e-mail addresses.
//!
//! Hand-written rather than borrowed because the contract is narrower than what general
//! parsers accept: the `uuid` crate also takes braced, URN and unhyphenated forms, and
//! chrono's RFC 3339 parser also takes a space between date and time. The JSON Schema
//! files state the same rules as patterns, and the agreement test keeps the two in step.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// Parses a hyphenated RFC 4122 UUID (any version, either case) into its 128-bit value.
pub fn parse_uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b != b'-' {
                return None;
            }
            continue;
        }
        let digit = (b as char).to_digit(16)?;
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

/// Parses an RFC 3339 date-time (`T` separator, `Z` or `±HH:MM` offset) into UTC.
///
/// Rejects leap seconds (`:60`): events are machine-stamped and the pipeline's windows are
/// defined on UTC without them.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let mut pos = 19;
    let mut nanos: u32 = 0;
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            if pos - start < 9 {
                nanos = nanos * 10 + u32::from(b[pos] - b'0');
            }
            pos += 1;
        }
        let len = pos - start;
        if len == 0 {
            return None;
        }
        for _ in len..9 {
            nanos *= 10;
        }
    }
    let offset_seconds = match b.get(pos..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2], 0, 2)?;
            let minutes = digits(&[*m1, *m2], 0, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 3600 + minutes * 60) as i32;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    // chrono rejects second 60 here, which is the leap-second rule above.
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let offset = FixedOffset::east_opt(offset_seconds)?;
    let local = NaiveDateTime::new(date, time);
    offset
        .from_local_datetime(&local)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Reads `len` ASCII digits at `start` as a number.
fn digits(bytes: &[u8], start: usize, len: usize) -> Option<u32> {
    let slice = bytes.get(start..start + len)?;
    slice.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Whether `text` looks like an e-mail address: one `@`, something on each side, no spaces.
pub fn is_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Formats a UUID value in the canonical lower-case hyphenated form.
pub fn format_uuid(value: u128) -> String {
    UuidText::new(value).as_str().to_owned()
}

/// A UUID's canonical lower-case hyphenated text, held on the stack: every event's id is
/// written out (archive rows, delivery headers, dead letters), and the `format!` it replaced
/// cost 4 % of the pipeline's CPU in the (c1) profile. The `uuid` crate writes the digits.
#[derive(Clone, Copy)]
pub struct UuidText([u8; uuid::fmt::Hyphenated::LENGTH]);

impl UuidText {
    /// The text of `value`.
    pub fn new(value: u128) -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::from_u128(value)
            .hyphenated()
            .encode_lower(&mut text);
        Self(text)
    }

    /// The text itself.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and hyphens are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_accepts_hyphenated_forms_in_either_case() {
        let lower = parse_uuid("550e8400-e29b-41d4-a716-446655440000");
        let upper = parse_uuid("550E8400-E29B-41D4-A716-446655440000");
        assert_eq!(lower, Some(0x550e8400_e29b_41d4_a716_446655440000));
        assert_eq!(lower, upper);
    }

    #[test]
    fn uuid_text_is_the_hyphenated_lower_hex() {
        let mut value: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for probe in [
            0,
            u128::MAX,
            0x550e8400_e29b_41d4_a716_446655440000,
            1,
            1 << 127,
        ] {
            let hex = format!("{probe:032x}");
            let expected = format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            assert_eq!(UuidText::new(probe).as_str(), expected);
        }
        for _ in 0..1000 {
            // xorshift: many bit patterns, each formatted and parsed back.
            value ^= value << 13;
            value ^= value >> 7;
            value ^= value << 17;
            assert_eq!(parse_uuid(UuidText::new(value).as_str()), Some(value));
        }
    }

    #[test]
    fn uuid_rejects_other_forms() {
        for text in [
            "",
            "550e8400e29b41d4a716446655440000",
            "{550e8400-e29b-41d4-a716-446655440000}",
            "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-44665544000g",
            "550e8400-e29b-41d4-a716_446655440000",
            "msg-uuid-001",
            "550e8400-e29b-41d4-a716-4466554400001",
        ] {
            assert_eq!(parse_uuid(text), None, "{text}");
        }
    }

    #[test]
    fn uuid_round_trips_through_format() {
        let text = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(parse_uuid(text).map(format_uuid).as_deref(), Some(text));
    }

    #[test]
    fn timestamp_accepts_rfc3339_with_z_or_offset() {
        let utc = parse_timestamp("2025-11-09T12:34:56.789Z").expect("valid");
        assert_eq!(utc.to_rfc3339(), "2025-11-09T12:34:56.789+00:00");
        let offset = parse_timestamp("2025-11-09T14:34:56.789+02:00").expect("valid");
        assert_eq!(offset, utc);
        let plain = parse_timestamp("2025-11-09T12:34:56Z").expect("valid");
        assert_eq!(plain.timestamp(), utc.timestamp());
        let nanos = parse_timestamp("2025-11-09t12:34:56.123456789123z").expect("valid");
        assert_eq!(nanos.timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn timestamp_rejects_malformed_and_impossible_values() {
        for text in [
            "",
            "2025-11-09",
            "2025-11-09 12:34:56Z",
            "2025-11-09T12:34:56",
            "2025-11-09T12:34:56.Z",
            "2025-13-09T12:34:56Z",
            "2025-02-30T12:34:56Z",
            "2025-11-09T24:00:00Z",
            "2025-11-09T12:60:00Z",
            "2025-11-09T12:34:60Z",
            "2025-11-09T12:34:56+24:00",
            "2025-11-09T12:34:56+0200",
            "2025-11-09T12:34:56ZZ",
            "yesterday at noon, roughly",
            "1731155696",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
    }

    #[test]
    fn email_needs_one_at_and_no_spaces() {
        assert!(is_email("admin@acme.com"));
        for text in ["admin", "@acme.com", "admin@", "a@b@c", "ad min@acme.com"] {
            assert!(!is_email(text), "{text}");
        }
    }
}
