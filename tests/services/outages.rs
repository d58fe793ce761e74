//! Processes that start and stay up through a ClickHouse outage, as an orchestrator sees them:
//! `run`, `serve` and `ingest` started while ClickHouse is stopped answer `/health/live` at once
//! and are not ready until ClickHouse is back, then ready, without a restart; a gateway that
//! was running keeps accepting a known publisher's entries throughout, and its outcome counts
//! land once ClickHouse returns.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::exactness::pipeline_env;
use crate::ingest::{entries, gateway, gateway_env, post};
use crate::support::eventually::eventually;
use crate::support::{
    Isolated, KillOnDrop, PrivateServices, api_key, free_port, http_get, one_heavy_test_at_a_time,
    salestalk_command,
};

/// How long ClickHouse stays away.
const OUTAGE: Duration = Duration::from_secs(60);

/// The status `path` answers on `port`, if anything answers.
fn status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).map(|(status, _)| status)
}

/// Posts `count` classifications of `tenant-a` numbered from `from`: how many were accepted.
fn publish(port: u16, key: &str, from: u32, count: u32) -> (u16, u64, String) {
    let (code, _, answer) = post(
        port,
        "/v1/events",
        Some(key),
        &entries(from, count, "tenant-a"),
    );
    let failed = serde_json::from_str::<Value>(&answer)
        .ok()
        .and_then(|a| a["failedEntryCount"].as_u64())
        .unwrap_or(u64::from(count));
    (code, u64::from(count) - failed, answer)
}

/// Whether `child` is still the process that was started (it never exited).
fn still_running(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_start_during_a_clickhouse_outage_and_the_gateway_takes_known_keys_throughout() {
    let _heavy = one_heavy_test_at_a_time().await;
    let services = PrivateServices::start("it-start-outage");
    let isolated = Isolated::create_at(
        "it-start-outage",
        2,
        &services.brokers,
        &services.clickhouse_url,
    )
    .await;
    let (env, running_port) = gateway_env(&isolated, &[]);
    let publisher = api_key(&env, "publisher", &["tenant-a"]);
    let _running = gateway(&env, running_port).await;
    let (code, mut accepted, answer) = publish(running_port, &publisher, 0, 5);
    assert_eq!((code, accepted), (200, 5), "before the outage: {answer}");
    let mut next = 5;

    services.stop("clickhouse");
    let stopped = Instant::now();
    let (run_port, serve_port, ingest_port) = (free_port(), free_port(), free_port());
    let with = |key: &'static str, value: String| {
        let mut env = pipeline_env(&isolated);
        env.push((key, value));
        env
    };
    let mut run_env = with(
        "SALESTALK__TELEMETRY__LISTEN",
        format!("127.0.0.1:{run_port}"),
    );
    run_env.push(("SALESTALK__KAFKA__INSTANCE_ID", "outage-start".to_string()));
    let mut started: Vec<(&str, u16, KillOnDrop)> = vec![
        (
            "run",
            run_port,
            KillOnDrop(salestalk_command(&["run"], &run_env).spawn().expect("run")),
        ),
        (
            "serve",
            serve_port,
            KillOnDrop(
                salestalk_command(
                    &["serve"],
                    &with(
                        "SALESTALK__SERVE__LISTEN",
                        format!("127.0.0.1:{serve_port}"),
                    ),
                )
                .spawn()
                .expect("serve"),
            ),
        ),
        (
            "ingest",
            ingest_port,
            KillOnDrop(
                salestalk_command(
                    &["ingest"],
                    &with(
                        "SALESTALK__INGEST__LISTEN",
                        format!("127.0.0.1:{ingest_port}"),
                    ),
                )
                .spawn()
                .expect("ingest"),
            ),
        ),
    ];
    for (name, port, _) in &started {
        let live = eventually(
            Duration::from_secs(5),
            || async { status(*port, "/health/live") },
            |s| *s == Some(200),
        )
        .await;
        assert_eq!(live, Some(200), "{name}: /health/live within 5 s");
        let ready = http_get(*port, "/health");
        assert!(
            matches!(ready, Some((503, ref body)) if body.contains("waiting_for")),
            "{name}: not ready while ClickHouse is away, saying why: {ready:?}"
        );
    }
    // The new gateway cannot check a key it never saw: it refuses work, it does not guess.
    let (code, _, _) = publish(ingest_port, &publisher, 1_000, 1);
    assert_eq!(code, 503, "a gateway that has not started answers 503");

    // The running gateway takes the known key's entries for the whole outage.
    while stopped.elapsed() < OUTAGE {
        let (code, taken, answer) = publish(running_port, &publisher, next, 5);
        assert_eq!(
            (code, taken),
            (200, 5),
            "{} s into the outage: {answer}",
            stopped.elapsed().as_secs()
        );
        accepted += taken;
        next += 5;
        for (name, port, child) in &mut started {
            assert!(
                still_running(&mut child.0),
                "{name} exited during the outage"
            );
            assert_eq!(
                status(*port, "/health"),
                Some(503),
                "{name}: ready while ClickHouse is away"
            );
            assert_eq!(status(*port, "/health/live"), Some(200), "{name}: alive");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    services.restart("clickhouse");
    for (name, port, child) in &mut started {
        let ready = eventually(
            Duration::from_secs(180),
            || async { status(*port, "/health") },
            |s| *s == Some(200),
        )
        .await;
        assert_eq!(ready, Some(200), "{name}: ready once ClickHouse is back");
        assert!(still_running(&mut child.0), "{name} was not restarted");
    }
    let (code, taken, answer) = publish(ingest_port, &publisher, next, 5);
    assert_eq!(
        (code, taken),
        (200, 5),
        "the gateway started in the outage: {answer}"
    );
    accepted += taken;

    // Every accepted entry is counted once ClickHouse has the ledgers.
    let endpoint = isolated.endpoint();
    let counted = eventually(
        Duration::from_secs(60),
        || async {
            endpoint
                .client()
                .query(
                    "SELECT toUInt64(sum(entries)) FROM ingest_outcomes \
                     WHERE tenant_id = 'tenant-a' AND outcome = 'accepted'",
                )
                .fetch_one::<u64>()
                .await
                .unwrap_or(0)
        },
        |counted| *counted >= accepted,
    )
    .await;
    assert_eq!(
        counted, accepted,
        "accepted entries counted in ingest_outcomes"
    );
    isolated.remove().await;
}
