//! Kinesis on the local emulator (kinesalite, started by `deploy/services/up`): generated
//! traffic put with `salestalk generate --kinesis` lands in its domain's stream, each event
//! once, with the tenant as partition key, so one tenant's events of a stream share a shard;
//! and `salestalk run` reading those streams gives exactly the batch recomputation's numbers:
//! left alone, killed with SIGKILL, across a shard split, as two instances, beside Kafka, and
//! fed by the ingest gateway.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use salestalk_kinesis::KinesisSettings;
use salestalk_kinesis::put::{Outcome, Record, put_records};
use salestalk_kinesis::streams::{create, read_from_start, shards, split};
use salestalk_operators::PublishPath;

use crate::exactness::{
    Input, LATENESS_MS, Setup, assert_views_equal, durable, kill_at_random_moments, pipeline_env,
    produce_to, read_back, recompute, recompute_lineage,
};
use crate::support::eventually::eventually;
use crate::support::{
    EVERY_EVENT_TYPE, Isolated, RUN_LIMIT, api_key_for_types, finish, salestalk, salestalk_command,
    settings, stdout_of, unique,
};

const DOMAINS: [&str; 5] = [
    "classification",
    "narrative",
    "conversation",
    "metrics",
    "tenant",
];

/// One test's streams, one per event domain.
struct Streams {
    kinesis: KinesisSettings,
    client: salestalk_kinesis::Client,
}

impl Streams {
    /// Streams named after `isolated`'s prefix, `shards` shards each.
    async fn create(isolated: &Isolated, shards: i32) -> Self {
        let kinesis = KinesisSettings {
            stream_template: format!("{}-{{domain}}", isolated.prefix),
            ..settings().kinesis
        };
        let client = salestalk_kinesis::client(&kinesis).await;
        let streams = Self {
            kinesis: KinesisSettings {
                streams: DOMAINS.iter().map(|d| kinesis.stream_for(d)).collect(),
                ..kinesis
            },
            client,
        };
        for stream in &streams.kinesis.streams {
            create(&streams.client, stream, shards)
                .await
                .unwrap_or_else(|e| panic!("creating {stream} ({e}); deploy/services/up"));
        }
        streams
    }

    /// The pipeline's settings for reading them (and only them).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SALESTALK__PIPELINE__SOURCES", "kinesis".to_string()),
            (
                "SALESTALK__KINESIS__STREAM_TEMPLATE",
                self.kinesis.stream_template.clone(),
            ),
            (
                "SALESTALK__KINESIS__STREAMS",
                self.kinesis.streams.join(","),
            ),
            ("SALESTALK__KINESIS__IDLE_POLL_MS", "100".to_string()),
            ("SALESTALK__KINESIS__SHARD_REFRESH_MS", "1000".to_string()),
        ]
    }

    /// Every shard's records in shard order, numbered from 0 as the pipeline's tasks number
    /// them, with their arrival time as broker time.
    async fn read_back(&self) -> Input {
        let mut input = Input::new();
        for stream in &self.kinesis.streams {
            for record in read_from_start(&self.client, stream)
                .await
                .expect("read back")
            {
                let number: i32 = record
                    .shard
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("a shard number");
                let messages = input
                    .entry((format!("kinesis:{stream}"), number))
                    .or_default();
                let offset = messages.len() as i64;
                messages.push((
                    offset,
                    record.arrival_ms.expect("an arrival time"),
                    record.data,
                ));
            }
        }
        input
    }

    /// Each shard's parents, as the recomputation keys them.
    async fn parents(&self) -> BTreeMap<(String, i32), Vec<(String, i32)>> {
        let number = |id: &str| -> i32 {
            id.rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("number")
        };
        let mut out = BTreeMap::new();
        for stream in &self.kinesis.streams {
            let topic = format!("kinesis:{stream}");
            for shard in shards(&self.client, stream).await.expect("shards") {
                let parents: Vec<(String, i32)> =
                    [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                        .into_iter()
                        .flatten()
                        .map(|id| (topic.clone(), number(id)))
                        .collect();
                out.insert((topic.clone(), number(shard.shard_id())), parents);
            }
        }
        out
    }
}

/// A database of its own and `shards`-shard streams, with the exactness tests' settings.
async fn kinesis_setup(name: &str, shards: i32) -> (Setup, Streams) {
    let isolated = Isolated::create(name, 1).await;
    let streams = Streams::create(&isolated, shards).await;
    let mut env = pipeline_env(&isolated);
    env.extend(streams.env());
    (Setup { isolated, env }, streams)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_view_equals_the_batch_recomputation_from_kinesis() {
    let (setup, streams) = kinesis_setup("it-kin-exact", 2).await;
    produce_to("--kinesis", &setup.env, 77, 12_000, 20, 120);
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let input = streams.read_back().await;
    assert_eq!(
        input.len(),
        10,
        "five streams of two shards, all holding records"
    );
    let expected = assert_views_equal(&setup, recompute(&input), true).await;
    assert!(expected.shared_ids > 0 && expected.dead_letters.len() > 100);
    // Dead letters carry the shard's address: stream, shard number, the task's offset.
    let (topic, partition, offset, _) = expected.dead_letters.iter().next().expect("some");
    assert!(topic.starts_with("kinesis:") && *partition >= 0 && *offset >= 0);
    let client = setup.isolated.endpoint().client();
    let without_sequence: u64 = client
        .query("SELECT count() FROM dead_letters WHERE sequence = ''")
        .fetch_one()
        .await
        .expect("dead letters");
    assert_eq!(
        without_sequence, 0,
        "every Kinesis dead letter names its record's sequence number"
    );
    // The SRE page's lag table lists the shards (its panel reads this view).
    let sampled: Vec<String> = client
        .query("SELECT DISTINCT topic FROM consumer_lag WHERE consumer_group = 'source.kinesis' ORDER BY topic")
        .fetch_all()
        .await
        .expect("consumer_lag");
    let mut streams_read: Vec<String> = streams
        .kinesis
        .streams
        .iter()
        .map(|s| format!("kinesis:{s}"))
        .collect();
    streams_read.sort();
    assert_eq!(sampled, streams_read, "every stream's shards sampled");

    // A redrive puts the letters back to their streams; read again, each is judged again (and
    // dead-lettered again: the input's letters are invalid or late for good), nothing counted.
    let letters = expected.dead_letters.len() as u64;
    let redrive = salestalk(
        &["dlq", "redrive", "--reason", "schema_violation"],
        &setup.env,
    );
    stdout_of(&redrive);
    let redriven: u64 = client
        .query("SELECT count() FROM dead_letter_queue WHERE status = 'redriven'")
        .fetch_one()
        .await
        .expect("redriven");
    assert!(redriven > 10, "{redriven}");
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let again = streams.read_back().await;
    let more: u64 = again.values().map(|m| m.len() as u64).sum::<u64>()
        - input.values().map(|m| m.len() as u64).sum::<u64>();
    assert_eq!(more, redriven, "each redriven letter put back once");
    let pending_after: u64 = client
        .query("SELECT count() FROM dead_letter_queue WHERE status = 'pending'")
        .fetch_one()
        .await
        .expect("pending");
    assert_eq!(
        pending_after, letters,
        "the redriven letters are letters again, with new addresses"
    );
    let expected_again = recompute(&again);
    assert_eq!(
        expected_again.volume, expected.volume,
        "nothing more counted"
    );
    assert_views_equal(&setup, expected_again, true).await;
    setup.isolated.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_changes_no_view_from_kinesis() {
    let (setup, streams) = kinesis_setup("it-kin-kill", 2).await;
    produce_to("--kinesis", &setup.env, 78, 30_000, 60, 120);
    let input = streams.read_back().await;
    let total: i64 = input.values().map(|m| m.len() as i64).sum();
    kill_at_random_moments(&setup, total, 5, 2, 11, Duration::from_millis(1_500)).await;
    assert_views_equal(&setup, recompute(&input), true).await;
    setup.isolated.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_split_mid_stream_loses_and_duplicates_nothing() {
    let (setup, streams) = kinesis_setup("it-kin-split", 1).await;
    // The first part of the traffic, then a run that is reading it when every stream's shard
    // is split; then more traffic, into the children, with resends of the first part's
    // events among it (their ids were counted in the parent). Each part spans 10 minutes of
    // event time: the generator's late events come up to 10 minutes after their time, and only
    // a span longer than the allowed lateness (5 minutes) and a window makes some of them late.
    produce_to("--kinesis", &setup.env, 91, 12_000, 20, 700);
    let run = salestalk_command(&["run", "--idle-exit", "10s"], &setup.env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("salestalk run");
    eventually(
        Duration::from_secs(120),
        || durable(&setup.isolated),
        |n| *n > 0,
    )
    .await;
    let before_split = durable(&setup.isolated).await;
    for stream in &streams.kinesis.streams {
        split(&streams.client, stream, "shardId-000000000000")
            .await
            .expect("split");
    }
    produce_to("--kinesis", &setup.env, 91, 800, 20, 700);
    produce_to("--kinesis", &setup.env, 92, 12_000, 20, 60);
    let output = finish(run, RUN_LIMIT, "the run across the split");
    stdout_of(&output);
    let input = streams.read_back().await;
    let total: i64 = input.values().map(|m| m.len() as i64).sum();
    assert!(
        before_split < total / 2,
        "the split came while the parents were read: {before_split} of {total} durable"
    );
    let parents = streams.parents().await;
    let children: Vec<&(String, i32)> = parents
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(children.len(), 10, "two children per stream: {parents:?}");
    // The resends crossed the split: ids read in a parent are in its children too.
    let ids = |key: &(String, i32)| -> BTreeSet<String> {
        input
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|(_, _, bytes)| {
                let event: serde_json::Value = serde_json::from_slice(bytes).ok()?;
                Some(format!(
                    "{}/{}",
                    event["tenantId"].as_str()?,
                    event["eventId"].as_str()?
                ))
            })
            .collect()
    };
    let crossing: usize = children
        .iter()
        .map(|child| {
            let child_ids = ids(child);
            parents[*child]
                .iter()
                .map(|p| ids(p).intersection(&child_ids).count())
                .sum::<usize>()
        })
        .sum();
    assert!(crossing > 300, "resends across the split: {crossing}");
    assert_eq!(
        durable(&setup.isolated).await,
        total,
        "every record durable once"
    );
    let expected = recompute_lineage(&input, &parents, Some(LATENESS_MS));
    let late = expected.late_archived;
    eprintln!("{late} late events across the split");
    assert!(
        late > 10,
        "lateness exercised on both sides of the split: {late} late"
    );
    assert_views_equal(&setup, expected, true).await;
    setup.isolated.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_shards_and_count_as_one() {
    let (setup, streams) = kinesis_setup("it-kin-two", 2).await;
    produce_to("--kinesis", &setup.env, 79, 12_000, 20, 120);
    let runs: Vec<std::process::Child> = (0..2)
        .map(|index| {
            let mut env = setup.env.clone();
            env.push(("SALESTALK__KINESIS__INSTANCES", "2".to_string()));
            env.push(("SALESTALK__KINESIS__INSTANCE_INDEX", index.to_string()));
            salestalk_command(&["run", "--idle-exit", "6s"], &env)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("salestalk run")
        })
        .collect();
    let mut read = Vec::new();
    for run in runs {
        let tally: serde_json::Value =
            serde_json::from_str(stdout_of(&finish(run, RUN_LIMIT, "an instance")).trim())
                .expect("tally");
        read.push(tally["messages"].as_u64().unwrap_or_default());
    }
    let input = streams.read_back().await;
    let total: u64 = input.values().map(|m| m.len() as u64).sum();
    assert!(
        read.iter().all(|r| *r > total / 4),
        "each instance read its share: {read:?} of {total}"
    );
    assert_eq!(
        read.iter().sum::<u64>(),
        total,
        "each record read by one instance"
    );
    assert_views_equal(&setup, recompute(&input), true).await;
    setup.isolated.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_and_kinesis_feeding_one_run_give_the_sum() {
    let isolated = Isolated::create("it-kin-both", 2).await;
    let streams = Streams::create(&isolated, 2).await;
    let mut env = pipeline_env(&isolated);
    env.extend(streams.env());
    env.push(("SALESTALK__PIPELINE__SOURCES", "kafka,kinesis".to_string()));
    let setup = Setup { isolated, env };
    produce_to("--kafka", &setup.env, 80, 8_000, 20, 120);
    produce_to("--kinesis", &setup.env, 81, 8_000, 20, 120);
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let mut input = read_back(&setup.isolated);
    let from_kafka = input.len();
    input.extend(streams.read_back().await);
    assert!(
        from_kafka >= 10 && input.len() == from_kafka + 10,
        "{}",
        input.len()
    );
    assert_views_equal(&setup, recompute(&input), true).await;
    setup.isolated.remove().await;
}

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

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_with_records_not_yet_durable_is_a_waiting_source_until_read() {
    let (setup, streams) = kinesis_setup("it-kin-stall", 2).await;
    produce_to("--kinesis", &setup.env, 82, 3_000, 20, 120);
    // A run that stops early: some shards keep records it never made durable.
    let mut env = setup.env.clone();
    env.push(("SALESTALK__PIPELINE__BATCH_SIZE", "50".to_string()));
    stdout_of(&salestalk(&["run", "--max-messages", "50"], &env));
    let settings = salestalk::settings::Settings::load_from(
        None,
        Some(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
    )
    .expect("settings");
    let sources = salestalk::serve::stalls::WatchedSources::new(
        &settings.pipeline.source_kinds(),
        &settings.kafka,
        &settings.kinesis,
    );
    assert!(sources.kafka.is_none() && sources.kinesis.is_some());
    let endpoint = setup.isolated.endpoint();
    let mut stalls = salestalk::serve::stalls::Stalls::default();
    let now = chrono::Utc::now().timestamp_millis();
    let waiting: BTreeSet<String> = stalls
        .measure(&endpoint, &sources, &[], now)
        .await
        .expect("measured")
        .into_iter()
        .filter_map(|m| m.labels.get("source").cloned())
        .collect();
    let all: BTreeSet<String> = streams
        .kinesis
        .streams
        .iter()
        .map(|s| format!("kinesis:{s}"))
        .collect();
    assert!(
        !waiting.is_empty() && waiting.is_subset(&all),
        "{waiting:?}"
    );
    // Once every shard is read to its end and durable, no source waits.
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let after = stalls
        .measure(&endpoint, &sources, &[], now + 60_000)
        .await
        .expect("measured");
    assert!(after.is_empty(), "{after:?}");
    setup.isolated.remove().await;
}

/// The gateway puts the event types `ingest.kinesis_event_types` names to their domain's
/// stream, marked as its own in the partition key (Kinesis records have no headers), and the
/// rest to Kafka: a run reading both counts every event once, as the batch recomputation
/// does, and each publish once, under the gateway, none as a direct publish.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_puts_the_types_routed_to_kinesis_there_and_each_publish_counts_once() {
    let isolated = Isolated::create("it-kin-gateway", 2).await;
    let streams = Streams::create(&isolated, 2).await;
    let (mut env, port) = crate::ingest::gateway_env(&isolated, &[]);
    env.extend(streams.env());
    env.push(("SALESTALK__PIPELINE__SOURCES", "kafka,kinesis".to_string()));
    let routed = ["narrative.", "conversation."];
    env.push((
        "SALESTALK__INGEST__KINESIS_EVENT_TYPES",
        "narrative.*,conversation.completed.v1".to_string(),
    ));
    let tenants: Vec<String> = (0..25).map(|i| format!("tenant-{i:04}")).collect();
    let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
    let key = api_key_for_types(&env, "publisher", &names, &EVERY_EVENT_TYPE);
    let _gateway = crate::ingest::gateway(&env, port).await;

    let generated = crate::ingest::generate_file(&env, 31, 3_000);
    let mut with_key = env.clone();
    with_key.push(("SALESTALK_API_KEY", key));
    let output = salestalk(
        &[
            "publish",
            &generated.path.to_string_lossy(),
            "--batch",
            "100",
        ],
        &with_key,
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    let refused = listed.lines().filter(|l| l.starts_with("line ")).count() as u64;
    // A resend of an invalid event is refused again, on top of the generator's count.
    assert!(refused >= generated.invalid, "{listed}");

    // A few messages straight to each bus: direct publishes, dead-lettered.
    crate::support::produce_not_json(&isolated, 3).await;
    let direct = [Record {
        partition_key: "tenant-0001",
        data: b"not json either",
    }; 2];
    let stored = put_records(&streams.client, &streams.kinesis.streams[0], &direct)
        .await
        .expect("put");
    assert!(stored.iter().all(|o| matches!(o, Outcome::Stored { .. })));

    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));
    let from_kafka = read_back(&isolated);
    let from_kinesis = streams.read_back().await;
    let event_type = |bytes: &[u8]| -> String {
        serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default()["eventType"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let is_routed = |t: &str| routed.iter().any(|r| t.starts_with(r));
    let kafka_types: Vec<String> = from_kafka
        .values()
        .flatten()
        .map(|(_, _, bytes)| event_type(bytes))
        .collect();
    let kinesis_types: Vec<String> = from_kinesis
        .values()
        .flatten()
        .map(|(_, _, bytes)| event_type(bytes))
        .collect();
    assert!(
        kinesis_types.len() > 300 && kinesis_types.iter().all(|t| is_routed(t) || t.is_empty()),
        "only the routed types, on Kinesis: {kinesis_types:?}"
    );
    assert!(
        kafka_types.len() > 1_000 && !kafka_types.iter().any(|t| is_routed(t)),
        "the rest on Kafka"
    );
    let mut marked = 0;
    for stream in &streams.kinesis.streams {
        for record in read_from_start(&streams.client, stream)
            .await
            .expect("read back")
        {
            if record
                .partition_key
                .starts_with(PublishPath::KINESIS_KEY_PREFIX)
            {
                marked += 1;
            } else {
                assert_eq!(record.data, direct[0].data, "only the direct puts unmarked");
            }
        }
    }
    assert_eq!(
        (kafka_types.len() - 3 + marked) as u64,
        generated.messages - refused,
        "every accepted entry on one bus, once"
    );
    assert_eq!(marked + 2, kinesis_types.len());

    let client = isolated.endpoint().client();
    let by_path: Vec<(String, u64)> = client
        .query(
            "SELECT path, toUInt64(sum(submitted)) FROM publish_outcomes GROUP BY path ORDER BY path",
        )
        .fetch_all()
        .await
        .expect("publish outcomes");
    assert_eq!(
        by_path,
        [
            ("direct".to_string(), 5),
            ("gateway".to_string(), generated.messages)
        ],
        "each publish counted once, by its path"
    );
    let mut input = from_kafka;
    input.extend(from_kinesis);
    let setup = Setup { isolated, env };
    assert_views_equal(&setup, recompute(&input), false).await;
    setup.isolated.remove().await;
}
