//! The built-in aggregates, one file each: how a message updates the window rows of one
//! family. Pure functions over a [`WindowSet`](crate::windows::WindowSet); the task decides
//! the window and whether the event counts, the set rolls the minute up to hour and day.

mod contract_warnings;
mod cost;
mod dead_letters;
mod engagement;
mod ingestion;
mod intents;
mod late_arrivals;
mod latency;
mod new_enum_values;
mod onboarding;
mod publish;
mod quality;
mod volume;

pub use contract_warnings::ContractWarnings;
pub use cost::Cost;
pub use dead_letters::DeadLetters;
pub use engagement::Engagement;
pub use ingestion::Ingestion;
pub use intents::Intents;
pub use late_arrivals::{LateArrivals, window_text};
pub use latency::Latency;
pub use new_enum_values::NewEnumValues;
pub use onboarding::Onboarding;
pub use publish::Publish;
pub use quality::Quality;
pub use volume::Volume;

/// Classifications below this confidence count as low-confidence.
pub const LOW_CONFIDENCE: f64 = 0.5;

/// US dollars as integer nano-dollars, the unit every cost is summed in (exact to the cent
/// and far beyond; `f64` sums are not).
pub fn nanos(usd: f64) -> i64 {
    (usd * 1e9).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Aggregates, Durable, Family, ReadMessage};
    use crate::dead_letter::DeadLetterReason;
    use crate::message::PublishPath;
    use crate::windows::WindowSet;
    use salestalk_contracts::{parse, validate};

    const EXAMPLES: &str = include_str!("../../../../contracts/tests/corpus/spec-examples.jsonl");

    fn recorded() -> WindowSet {
        let mut set = WindowSet::default();
        for line in EXAMPLES.lines() {
            let value = parse(line.as_bytes()).expect("json");
            let event = validate(&value).expect("valid");
            Aggregates::default().on_event(&mut set, &event, 0);
        }
        set
    }

    fn ints(set: &mut WindowSet, family: Family, dims: [&str; 3]) -> Vec<i64> {
        let key = set.key(family, 0, "tenant-abc123", dims);
        set.get(&key)
            .unwrap_or_else(|| panic!("no {family:?} row {dims:?}"))
            .ints
            .clone()
    }

    #[test]
    fn the_spec_examples_land_in_their_families() {
        let mut set = recorded();
        assert_eq!(
            ints(
                &mut set,
                Family::Volume,
                ["narrative.generated.v1", "chat-handler", ""]
            ),
            [1]
        );
        assert_eq!(
            ints(
                &mut set,
                Family::Volume,
                ["metrics.ingested.v1", "metrics-handler", ""]
            ),
            [1]
        );
        let cost = ints(
            &mut set,
            Family::Cost,
            ["narrative.generated.v1", "anthropic.claude-v2", ""],
        );
        assert_eq!(cost, [21_700_000, 387, 156, 543, 1]);
        let quality = ints(&mut set, Family::Quality, ["anthropic.claude-v2", "", ""]);
        assert_eq!(quality, [1, 0, 3, 3, 543, 0, 0]);
        assert_eq!(
            ints(
                &mut set,
                Family::Intents,
                ["fact_retrieval", "revenue", "total"]
            ),
            [1, 0]
        );
        let engagement = ints(&mut set, Family::Engagement, ["", "", ""]);
        // `rating_sum` (sixth) is no longer written: the rating of 5 is in `satisfaction_sum`.
        assert_eq!(engagement, [1, 8, 4, 4, 1, 0, 1, 0, 0, 1, 87_000_000]);
        let key = set.key(Family::Engagement, 0, "tenant-abc123", ["", "", ""]);
        let floats = &set.get(&key).expect("row").floats;
        assert_eq!(
            floats[Family::Engagement.float_slot("satisfaction_sum")],
            5.0
        );
        assert_eq!(
            ints(&mut set, Family::Ingestion, ["csv_upload", "", ""]),
            [1, 247, 247, 0, 3]
        );
        assert_eq!(
            ints(&mut set, Family::Onboarding, ["standard", "us-east-1", ""]),
            [1, 1]
        );
    }

    /// The spec's narrative with `edit` applied, recorded alone.
    fn narrative_with(edit: impl FnOnce(&mut serde_json::Value)) -> WindowSet {
        let line = EXAMPLES
            .lines()
            .find(|l| l.contains("narrative.generated.v1"))
            .expect("a narrative example");
        let mut json: serde_json::Value = serde_json::from_str(line).expect("json");
        edit(&mut json);
        let text = json.to_string();
        let value = parse(text.as_bytes()).expect("json");
        let event = validate(&value).expect("accepted");
        let mut set = WindowSet::default();
        Aggregates::default().on_event(&mut set, &event, 0);
        set
    }

    #[test]
    fn a_narrative_missing_parts_is_billed_and_its_rates_leave_the_unknown_out() {
        let mut set = narrative_with(|n| {
            let data = n["data"].as_object_mut().expect("data");
            data["performance"]
                .as_object_mut()
                .expect("performance")
                .remove("aiGenerationMs");
            data["tokenUsage"]
                .as_object_mut()
                .expect("tokens")
                .remove("completionTokens");
            let quality = data["qualityMetrics"].as_object_mut().expect("quality");
            quality.remove("confidenceScore");
            quality.remove("factsTotal");
        });
        let cost = ints(
            &mut set,
            Family::Cost,
            ["narrative.generated.v1", "anthropic.claude-v2", ""],
        );
        // Billed in full; the missing completion count adds nothing.
        assert_eq!(cost, [21_700_000, 387, 0, 543, 1]);
        let model = ["anthropic.claude-v2", "", ""];
        let quality = ints(&mut set, Family::Quality, model);
        // Half the facts ratio is no ratio: neither side is added.
        assert_eq!(quality, [1, 0, 0, 0, 543, 0, 1]);
        let key = set.key(Family::Quality, 0, "tenant-abc123", model);
        let row = set.get(&key).expect("row");
        assert_eq!(row.histogram.count(), 0, "no generation time to record");
        assert_eq!(row.floats, [0.0]);
        for field in [
            "/data/performance/aiGenerationMs",
            "/data/tokenUsage/completionTokens",
            "/data/qualityMetrics/confidenceScore",
            "/data/qualityMetrics/factsTotal",
        ] {
            let warned = ints(
                &mut set,
                Family::ContractWarnings,
                ["chat-handler", field, "missing"],
            );
            assert_eq!(warned, [1], "{field}");
        }
    }

    #[test]
    fn histograms_and_sums_follow_the_events() {
        let mut set = recorded();
        let key = set.key(
            Family::Quality,
            0,
            "tenant-abc123",
            ["anthropic.claude-v2", "", ""],
        );
        let row = set.get(&key).expect("row");
        assert_eq!(row.histogram.count(), 1);
        assert_eq!(row.floats, [0.94]);
    }

    #[test]
    fn reads_count_submitted_and_rejected_by_reason() {
        let mut set = WindowSet::default();
        let ok = ReadMessage {
            window_start: 60,
            topic: "t",
            tenant: "a",
            source: "s",
            event_type: "x.y.v1",
            rejected: None,
            duplicate: false,
            conflicting: false,
            path: PublishPath::Direct,
            late_window: None,
        };
        Aggregates::default().on_read(&mut set, &ok);
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                rejected: Some(DeadLetterReason::SchemaViolation),
                ..ok
            },
        );
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                tenant: "",
                source: "",
                event_type: "",
                rejected: Some(DeadLetterReason::NotJson),
                ..ok
            },
        );
        let key = set.key(Family::Publish, 60, "a", ["s", "t", "direct"]);
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                duplicate: true,
                conflicting: true,
                ..ok
            },
        );
        // A late event was published fine: read, but not a failed publish; one past the
        // correction horizon likewise.
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                late_window: Some(0),
                ..ok
            },
        );
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                rejected: Some(DeadLetterReason::TooLate),
                ..ok
            },
        );
        assert_eq!(
            set.get(&key).expect("row").ints,
            [5, 1, 1, 1],
            "submitted, rejected, duplicates, of which conflicting"
        );
        // The late one waits for the correction of its window's day.
        let late = set.key(
            Family::LateArrivals,
            60,
            "a",
            ["x.y.v1", "1970-01-01 00:00:00", ""],
        );
        assert_eq!(set.get(&late).expect("row").ints, [1]);
        // What the gateway published is a row of its own (the gateway counted the publish).
        Aggregates::default().on_read(
            &mut set,
            &ReadMessage {
                path: PublishPath::Gateway,
                ..ok
            },
        );
        let gateway = set.key(Family::Publish, 60, "a", ["s", "t", "gateway"]);
        assert_eq!(set.get(&gateway).expect("row").ints, [1, 0, 0, 0]);
        let key = set.key(Family::DeadLetters, 60, "", ["not_json", "", "t"]);
        assert_eq!(set.get(&key).expect("row").ints, [1]);
    }

    #[test]
    fn costs_are_summed_in_integer_nanodollars() {
        assert_eq!(nanos(0.0217), 21_700_000);
        assert_eq!(nanos(0.1) + nanos(0.2), nanos(0.3));
    }

    #[test]
    fn latency_is_recorded_per_consumer() {
        let mut set = WindowSet::default();
        let tenant = set.symbol("a");
        for latency_ms in [1500.0, 500.0] {
            let output = Durable {
                window_start: 0,
                tenant,
                event_type: "x.y.v1",
                consumer: "clickhouse",
                latency_ms,
            };
            Aggregates::default().on_durable(&mut set, &output);
        }
        let key = set.key(Family::Latency, 0, "a", ["x.y.v1", "clickhouse", ""]);
        let row = set.get(&key).expect("row");
        assert_eq!(
            (row.ints[0], row.floats[0], row.histogram.count()),
            (2, 2000.0, 2)
        );
    }
}
