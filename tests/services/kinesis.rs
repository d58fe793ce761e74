//! Kinesis on the local emulator (kinesalite, started by `deploy/services/up`): generated
//! traffic put with `salestalk generate --kinesis` lands in its domain's stream, each event
//! once, with the tenant as partition key, so one tenant's events of a stream share a shard.
//! The Kinesis source of `salestalk run` is issue 15's; this is its input.

use std::collections::{BTreeMap, BTreeSet};

use salestalk_kinesis::streams::{create, read_from_start};

use crate::support::{salestalk, settings, stdout_of, unique};

#[tokio::test(flavor = "multi_thread")]
async fn generated_traffic_lands_in_its_domains_stream_once_keyed_by_tenant() {
    let prefix = unique("it-kinesis");
    let kinesis = salestalk_kinesis::KinesisSettings {
        stream_template: format!("{prefix}-{{domain}}"),
        ..settings().kinesis
    };
    let client = salestalk_kinesis::client(&kinesis).await;
    let domains = [
        "classification",
        "narrative",
        "conversation",
        "metrics",
        "tenant",
    ];
    for domain in domains {
        create(&client, &kinesis.stream_for(domain), 2)
            .await
            .unwrap_or_else(|e| panic!("creating the {domain} stream ({e}); deploy/services/up"));
    }
    let env = vec![(
        "SALESTALK__KINESIS__STREAM_TEMPLATE",
        kinesis.stream_template.clone(),
    )];
    let traffic = [
        "--seed",
        "29",
        "--count",
        "800",
        "--tenants",
        "12",
        "--duplicates",
        "0.02",
        "--invalid",
        "0.02",
    ];
    let file = std::env::temp_dir().join(format!("{prefix}.jsonl"));
    let file = file.to_string_lossy().into_owned();
    let mut to_file = vec!["generate", "--output", &file];
    to_file.extend(traffic);
    stdout_of(&salestalk(&to_file, &env));
    let mut to_kinesis = vec!["generate", "--kinesis"];
    to_kinesis.extend(traffic);
    let report: serde_json::Value =
        serde_json::from_str(stdout_of(&salestalk(&to_kinesis, &env)).trim()).expect("report");
    let written = std::fs::read_to_string(&file).expect("traffic");
    let messages = written.lines().count();
    assert!(
        messages > 800,
        "the traffic's resends come on top: {messages}"
    );
    assert_eq!(report["delivered"], messages, "{report}");
    assert_eq!(report["failed"], 0, "{report}");

    // What the generator wrote, as (stream, partition key, data), against what the streams hold.
    let mut expected: BTreeMap<(String, String, Vec<u8>), usize> = BTreeMap::new();
    for line in written.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let event_type = event["eventType"].as_str().unwrap_or_default();
        // The generator routes what it cannot place (not JSON, no known type) by its own
        // rules; compare the events it routes by their type.
        let Some(domain) = domains
            .iter()
            .find(|d| event_type.starts_with(&format!("{d}.")))
        else {
            continue;
        };
        let tenant = event["tenantId"].as_str().unwrap_or_default().to_string();
        *expected
            .entry((kinesis.stream_for(domain), tenant, line.as_bytes().to_vec()))
            .or_default() += 1;
    }
    let mut got: BTreeMap<(String, String, Vec<u8>), usize> = BTreeMap::new();
    let mut shards_of: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut total = 0;
    for domain in domains {
        let stream = kinesis.stream_for(domain);
        for record in read_from_start(&client, &stream).await.expect("read back") {
            total += 1;
            shards_of
                .entry((stream.clone(), record.partition_key.clone()))
                .or_default()
                .insert(record.shard.clone());
            let event: serde_json::Value = serde_json::from_slice(&record.data).unwrap_or_default();
            if event["eventType"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{domain}.")))
            {
                *got.entry((stream.clone(), record.partition_key, record.data))
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(total, messages, "every generated message once");
    assert!(expected.len() > 700, "{}", expected.len());
    assert_eq!(
        got, expected,
        "each event in its domain's stream, keyed by its tenant"
    );
    assert!(
        shards_of.values().all(|shards| shards.len() == 1),
        "one tenant's records of a stream share a shard"
    );
    let _ = std::fs::remove_file(&file);
}
