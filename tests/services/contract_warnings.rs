//! Tolerant validation end to end (issue 30, item 3): every example of the contract, the
//! contract's own test-event generator's output (no `metadata`), a narrative missing one of
//! its timings and token counts, and a conversation rated 4.5 are all counted, nothing is
//! dead-lettered, the incomplete narrative is billed in full, and the departures are counted
//! per producer in `contract_warnings`.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};

use crate::exactness::pipeline_env;
use crate::support::fixtures::Examples;
use crate::support::{Isolated, produce_events, salestalk, stdout_of};

#[tokio::test(flavor = "multi_thread")]
async fn departures_the_contract_allows_are_counted_billed_and_warned() {
    let isolated = Isolated::create("it-tolerant", 1).await;
    let env = pipeline_env(&isolated);
    let examples = Examples::new(0x701e);
    let tenant = "tenant-tolerant";
    let at = Utc::now() - Duration::minutes(1);
    let mut events: Vec<_> = examples
        .types()
        .iter()
        .enumerate()
        .map(|(n, event_type)| examples.event_at(event_type, tenant, n as u64, at))
        .collect();
    // `create_classification_event` of the contract's testing strategy.
    let mut generated = examples.event_at("classification.performed.v1", tenant, 100, at);
    for key in ["metadata", "userId", "sessionId"] {
        generated.as_object_mut().expect("an object").remove(key);
    }
    generated["source"] = "test-harness".into();
    let mut narrative = examples.event_at("narrative.generated.v1", tenant, 101, at);
    let data = narrative["data"].as_object_mut().expect("a payload");
    data["performance"]
        .as_object_mut()
        .expect("performance")
        .remove("aiGenerationMs");
    data["tokenUsage"]
        .as_object_mut()
        .expect("tokens")
        .remove("completionTokens");
    let narrative_source = narrative["source"].as_str().expect("source").to_string();
    let mut rated = examples.event_at("conversation.completed.v1", tenant, 102, at);
    rated["data"]["satisfactionRating"] = 4.5.into();
    let complete_narrative = &events[examples
        .types()
        .iter()
        .position(|t| t == "narrative.generated.v1")
        .expect("a narrative example")];
    let cost_usd = complete_narrative["data"]["cost"]["amountUSD"]
        .as_f64()
        .expect("a cost");
    let tokens = |event: &serde_json::Value, key: &str| {
        event["data"]["tokenUsage"][key].as_u64().unwrap_or(0)
    };
    let expected_prompt =
        tokens(complete_narrative, "promptTokens") + tokens(&narrative, "promptTokens");
    let expected_completion = tokens(complete_narrative, "completionTokens");
    let example_rating = events
        .iter()
        .find_map(|e| e["data"]["satisfactionRating"].as_f64())
        .expect("the conversation example is rated");
    events.extend([generated, narrative, rated]);
    produce_events(&isolated, &events).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));

    let client = isolated.endpoint().client();
    let counted: u64 = client
        .query("SELECT toUInt64(sum(events)) FROM metrics_volume WHERE tenant_id = ?")
        .bind(tenant)
        .fetch_one()
        .await
        .expect("volume");
    assert_eq!(counted, events.len() as u64, "every event is counted");
    let letters: u64 = client
        .query("SELECT count() FROM dead_letter_queue")
        .fetch_one()
        .await
        .expect("dead letters");
    assert_eq!(letters, 0, "nothing is dead-lettered");

    // Billed in full: both narratives' costs; the missing completion count adds nothing.
    let month = at.format("%Y-%m").to_string();
    let csv = stdout_of(&salestalk(&["billing", "export", "--month", &month], &env));
    let row = csv
        .lines()
        .find(|line| line.contains(tenant))
        .unwrap_or_else(|| panic!("no billing row for {tenant}: {csv}"));
    let fields: Vec<&str> = row.split(',').collect();
    assert_eq!(fields[2], "2", "messages billed: {row}");
    assert_eq!(fields[3], expected_prompt.to_string(), "{row}");
    assert_eq!(fields[4], expected_completion.to_string(), "{row}");
    let billed_nanos = (2.0 * cost_usd * 1e9).round() as i64;
    let shown: f64 = fields[6].parse().expect("a cost");
    assert_eq!((shown * 1e9).round() as i64, billed_nanos, "{row}");

    let satisfaction: f64 = client
        .query(
            "SELECT (sum(rating_sum) + sum(satisfaction_sum)) / sum(rated) FROM metrics_engagement \
             WHERE tenant_id = ?",
        )
        .bind(tenant)
        .fetch_one()
        .await
        .expect("engagement");
    assert!(
        (satisfaction - (example_rating + 4.5) / 2.0).abs() < 1e-9,
        "satisfaction {satisfaction}"
    );

    let warned: BTreeSet<(String, String, String, u64)> = client
        .query("SELECT source, field, kind, events FROM contract_warnings")
        .fetch_all::<(String, String, String, u64)>()
        .await
        .expect("contract warnings")
        .into_iter()
        .collect();
    let expected: BTreeSet<(String, String, String, u64)> = [
        ("test-harness", "/metadata"),
        (
            narrative_source.as_str(),
            "/data/performance/aiGenerationMs",
        ),
        (
            narrative_source.as_str(),
            "/data/tokenUsage/completionTokens",
        ),
    ]
    .into_iter()
    .map(|(source, field)| {
        (
            source.to_string(),
            field.to_string(),
            "missing".to_string(),
            1,
        )
    })
    .collect();
    assert_eq!(warned, expected);
    isolated.remove().await;
}
