//! `salestalk replay` from the raw archive on the real broker and ClickHouse: a dry run counts
//! the selection, a replay sends exactly the archived events of the selection (each once,
//! keyed by tenant, marked with the replay's id) to an isolated topic, never into a live topic
//! unless asked, and every replay is recorded.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, TopicPartitionList};

use crate::exactness::seeded_setup;
use crate::support::{create_topics_at, salestalk, stdout_of, unique};

/// Every message of `topic` (one partition): (key, eventId in the payload, replay header).
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("replay-read"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    while (out.len() as i64) < high {
        let Some(message) = consumer.poll(Duration::from_secs(10)) else {
            break;
        };
        let message = message.expect("message");
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let event: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default()).expect("an event");
        let replay = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "salestalk-replay-of"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        out.push((
            key,
            event["eventId"].as_str().unwrap_or_default().to_string(),
            replay,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_sends_exactly_the_selected_archived_events_and_records_it() {
    let setup = seeded_setup("it-replay", 53, 3_000, 20).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let env = &setup.env;
    let client = setup.isolated.endpoint().client();
    let tenant: String = client
        .query("SELECT tenant_id FROM events_raw GROUP BY tenant_id ORDER BY count() DESC LIMIT 1")
        .fetch_one()
        .await
        .expect("a tenant");
    let archived: BTreeSet<String> = client
        .query("SELECT DISTINCT event_id FROM events_raw WHERE tenant_id = ? AND event_type LIKE 'narrative%'")
        .bind(&tenant)
        .fetch_all::<String>()
        .await
        .expect("archived ids")
        .into_iter()
        .collect();
    assert!(archived.len() > 20, "{}", archived.len());
    let types = ["--event-type", "narrative.generated.v1"];

    // Not into a live topic unless asked.
    let live = &setup.isolated.topics[0];
    let refused = salestalk(
        &["replay", "run", "--to-topic", live, "--tenant", &tenant],
        env,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--into-live-topic"));

    let topic = format!("{}.replay", setup.isolated.prefix);
    create_topics_at(&setup.isolated.brokers, std::slice::from_ref(&topic), 1).await;
    let mut args = vec!["replay", "run", "--to-topic", &topic, "--tenant", &tenant];
    args.extend(types);
    let mut dry = args.clone();
    dry.push("--dry-run");
    let counted = stdout_of(&salestalk(&dry, env));
    assert!(
        counted.contains(&format!(
            "would send {0} of {0} archived events",
            archived.len()
        )),
        "{counted}"
    );
    assert!(
        read_topic(&setup.isolated.brokers, &topic).is_empty(),
        "a dry run sends nothing"
    );

    let sent = stdout_of(&salestalk(&args, env));
    assert!(
        sent.contains(&format!("sent {0} of {0}", archived.len())),
        "{sent}"
    );
    let messages = read_topic(&setup.isolated.brokers, &topic);
    let ids: BTreeSet<String> = messages.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(messages.len(), archived.len(), "each event once");
    assert_eq!(ids, archived);
    assert!(
        messages
            .iter()
            .all(|(key, _, replay)| *key == tenant && replay.starts_with("replay-"))
    );

    let listed = stdout_of(&salestalk(&["replay", "list"], env));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].contains(&format!("sent {}", archived.len())),
        "{listed}"
    );
    assert!(lines[1].contains("(dry run)"), "{listed}");
    assert!(lines[0].contains(&format!("tenant={tenant}")), "{listed}");
    setup.isolated.remove().await;
}
