//! `salestalk trace`: one correlation spanning an event counted on time, one late (its window
//! was final when it came), one refused (a schema violation) and one replayed; each is named
//! with its fate, the correlation id matched in either case, and an event of another
//! correlation is not listed.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::exactness::pipeline_env;
use crate::support::fixtures::Examples;
use crate::support::{Isolated, create_topics_at, produce_events, salestalk, stdout_of};

#[tokio::test(flavor = "multi_thread")]
async fn trace_names_the_fate_of_each_event_of_a_correlation() {
    let isolated = Isolated::create("it-trace", 1).await;
    let env = pipeline_env(&isolated);
    let examples = Examples::new(0x7ace);
    let correlation = "Corr-Trace-0001";
    let now = Utc::now();
    let event = |event_type: &str, n: u64, minutes_ago: i64, correlated: bool| {
        let mut event = examples.event_at(
            event_type,
            "tenant-t",
            n,
            now - Duration::minutes(minutes_ago),
        );
        if correlated {
            event["metadata"]["correlationId"] = correlation.into();
        }
        event
    };
    let on_time = event("classification.performed.v1", 1, 2, true);
    let elsewhere = event("classification.performed.v1", 2, 2, false);
    // The same partition, stamped far behind what it has read (allowed lateness: 5 minutes).
    let late = event("classification.performed.v1", 3, 20, true);
    let mut refused = event("narrative.generated.v1", 4, 2, true);
    refused["data"]
        .as_object_mut()
        .expect("a payload")
        .remove("narrativeText");
    produce_events(
        &isolated,
        &[
            on_time.clone(),
            elsewhere.clone(),
            late.clone(),
            refused.clone(),
        ],
    )
    .await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));

    // A replay of the correlation, to a topic of its own.
    let topic = format!("{}.replay", isolated.prefix);
    create_topics_at(&isolated.brokers, std::slice::from_ref(&topic), 1).await;
    let replayed = stdout_of(&salestalk(
        &[
            "replay",
            "run",
            "--to-topic",
            &topic,
            "--correlation-id",
            correlation,
        ],
        &env,
    ));
    assert!(replayed.contains("sent 2 of 2"), "{replayed}");

    let output = stdout_of(&salestalk(
        &["trace", &correlation.to_uppercase(), "--json"],
        &env,
    ));
    let fates: BTreeMap<String, Value> = output
        .lines()
        .map(|line| {
            let fate: Value = serde_json::from_str(line).expect("a JSON line");
            let id = fate["event"].as_str().expect("an id").to_lowercase();
            (id, fate)
        })
        .collect();
    let id = |event: &Value| event["eventId"].as_str().expect("id").to_lowercase();
    assert_eq!(fates.len(), 3, "{output}");
    assert!(!fates.contains_key(&id(&elsewhere)), "{output}");
    let fate = |event: &Value| fates.get(&id(event)).expect("listed")["fate"].clone();
    assert_eq!(fate(&on_time), "counted", "{output}");
    assert_eq!(fate(&late), "late", "{output}");
    assert_eq!(fate(&refused), "dead_lettered", "{output}");
    let letter = fates[&id(&refused)]["dead_letter"]
        .as_str()
        .expect("a dead letter")
        .to_string();
    assert!(
        letter.starts_with("schema_violation (pending)") && letter.contains("narrativeText"),
        "{letter}"
    );
    for archived in [&on_time, &late] {
        let by = &fates[&id(archived)]["replayed_by"];
        assert!(
            by.as_array().is_some_and(|by| by.len() == 1
                && by[0]
                    .as_str()
                    .is_some_and(|r| r.ends_with(&format!("to topic:{topic}")))),
            "{output}"
        );
    }
    // The text form says the same.
    let text = stdout_of(&salestalk(&["trace", correlation], &env));
    assert!(
        text.contains("late: archived, counted by the correction of its day")
            && text.contains("dead-lettered: schema_violation"),
        "{text}"
    );
    isolated.remove().await;
}
