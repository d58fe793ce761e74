//! Each event version's lifecycle, from configuration (`[[contracts.versions]]`): current, or
//! deprecated with the date its support ends. The contract's versioning policy made data:
//! events of a deprecated version are counted as usual and warned about (the SRE page and the
//! `DeprecatedVersionPublished` alert, from three months before the end); from the end date on
//! (by broker time, which the producer cannot set) the task dead-letters them
//! `unsupported_version`, naming the date and what to publish instead (docs/contracts.md).
//!
//! The registry is part of the task's rules ([`crate::task::TaskSettings`]), so it is `Copy`:
//! one slot per supported event type.

use chrono::NaiveDate;
use salestalk_contracts::EventType;
use serde::{Deserialize, Serialize};
use strum::VariantArray;

/// The contract's notice before a version's support ends: three months (91 days).
pub const NOTICE_DAYS: i64 = 91;

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Supported with no end announced.
    Current,
    /// Supported until `ends`, then refused.
    Deprecated,
}

/// One `[[contracts.versions]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VersionLifecycle {
    /// The versioned event type, e.g. `classification.performed.v1`.
    pub event_type: String,
    /// Current or deprecated.
    pub status: VersionStatus,
    /// For a deprecated version: the first UTC day it is no longer accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends: Option<NaiveDate>,
}

/// `[contracts]`: the event versions' lifecycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContractSettings {
    /// Each listed version's status; a version not listed is current.
    #[serde(default)]
    pub versions: Vec<VersionLifecycle>,
}

impl ContractSettings {
    /// Every problem with the section, each naming its entry.
    pub fn problems(&self) -> Vec<String> {
        VersionEnds::from_entries(&self.versions)
            .err()
            .unwrap_or_default()
    }

    /// The registry, as the tasks use it (checked at start-up: a bad one never gets here).
    pub fn version_ends(&self) -> VersionEnds {
        VersionEnds::from_entries(&self.versions).unwrap_or_default()
    }
}

/// The end of support of each supported event type (Unix ms of the end date's start, UTC), if
/// it is deprecated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionEnds {
    ends_ms: [Option<i64>; EventType::VARIANTS.len()],
}

impl VersionEnds {
    /// The registry the entries describe, or every problem with them, each naming its entry.
    pub fn from_entries(entries: &[VersionLifecycle]) -> Result<Self, Vec<String>> {
        let mut ends = Self::default();
        let mut seen = Vec::new();
        let mut problems = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("contracts.versions[{i}] ({})", entry.event_type);
            let Some(index) = EventType::VARIANTS
                .iter()
                .position(|t| t.as_str() == entry.event_type)
            else {
                let known: Vec<&str> = EventType::VARIANTS.iter().map(|t| t.as_str()).collect();
                problems.push(format!(
                    "{at}: not an event type this build reads (known: {})",
                    known.join(", ")
                ));
                continue;
            };
            if seen.contains(&index) {
                problems.push(format!("{at}: listed twice"));
            }
            seen.push(index);
            match (entry.status, entry.ends) {
                (VersionStatus::Deprecated, Some(day)) => {
                    ends.ends_ms[index] = day
                        .and_hms_opt(0, 0, 0)
                        .map(|start| start.and_utc().timestamp_millis());
                }
                (VersionStatus::Deprecated, None) => problems.push(format!(
                    "{at}: a deprecated version needs `ends` (YYYY-MM-DD)"
                )),
                (VersionStatus::Current, Some(_)) => problems.push(format!(
                    "{at}: a current version has no end; deprecate it to give one"
                )),
                (VersionStatus::Current, None) => {}
            }
        }
        if problems.is_empty() {
            Ok(ends)
        } else {
            Err(problems)
        }
    }

    /// Every supported event type with its end of support (Unix ms), if it is deprecated.
    pub fn all(&self) -> impl Iterator<Item = (EventType, Option<i64>)> + '_ {
        EventType::VARIANTS
            .iter()
            .zip(self.ends_ms)
            .map(|(event_type, end)| (*event_type, end))
    }

    /// The end of support of `event_type` (Unix ms), if it is deprecated.
    pub fn end_ms(&self, event_type: EventType) -> Option<i64> {
        let index = EventType::VARIANTS.iter().position(|t| *t == event_type)?;
        self.ends_ms[index]
    }

    /// Whether an event of `event_type` the broker took at `broker_ms` is past its version's
    /// end of support.
    pub fn has_ended(&self, event_type: EventType, broker_ms: i64) -> bool {
        self.end_ms(event_type).is_some_and(|end| broker_ms >= end)
    }

    /// The newest version of the same event, which a producer of an ended one moves to.
    pub fn successor(event_type: EventType) -> EventType {
        EventType::VARIANTS
            .iter()
            .copied()
            .filter(|t| t.kind() == event_type.kind())
            .max()
            .unwrap_or(event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(event_type: &str, status: VersionStatus, ends: Option<&str>) -> VersionLifecycle {
        VersionLifecycle {
            event_type: event_type.into(),
            status,
            ends: ends.map(|d| d.parse().expect("a date")),
        }
    }

    #[test]
    fn a_deprecated_version_ends_at_the_start_of_its_end_date_by_broker_time() {
        let ends = VersionEnds::from_entries(&[
            entry(
                "classification.performed.v1",
                VersionStatus::Deprecated,
                Some("2027-06-01"),
            ),
            entry("classification.performed.v2", VersionStatus::Current, None),
        ])
        .expect("valid");
        let v1 = EventType::ClassificationPerformedV1;
        let end = ends.end_ms(v1).expect("an end");
        assert_eq!(end, 1_811_808_000_000); // 2027-06-01T00:00:00Z
        assert!(!ends.has_ended(v1, end - 1));
        assert!(ends.has_ended(v1, end));
        assert!(!ends.has_ended(EventType::ClassificationPerformedV2, i64::MAX));
        assert_eq!(
            VersionEnds::successor(v1),
            EventType::ClassificationPerformedV2
        );
        assert_eq!(
            VersionEnds::default().end_ms(v1),
            None,
            "nothing listed: all current"
        );
    }

    #[test]
    fn every_problem_is_named_with_its_entry() {
        let problems = VersionEnds::from_entries(&[
            entry("invoice.settled.v1", VersionStatus::Current, None),
            entry("narrative.generated.v1", VersionStatus::Deprecated, None),
            entry(
                "tenant.provisioned.v1",
                VersionStatus::Current,
                Some("2027-01-01"),
            ),
            entry("tenant.provisioned.v1", VersionStatus::Current, None),
        ])
        .expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("[0]") && problems[0].contains("not an event type"));
        assert!(problems[1].contains("[1]") && problems[1].contains("needs `ends`"));
        assert!(problems[2].contains("[2]") && problems[2].contains("has no end"));
        assert!(problems[3].contains("[3]") && problems[3].contains("listed twice"));
    }
}
