//! Cluster mode against a real ClickHouse cluster (`deploy/services/up cluster`: ZooKeeper and
//! two ClickHouse 18.16 replicas of one shard): the schema made on the cluster, the pipeline
//! writing to one replica while the other is stopped mid-run and started again, and every view
//! exact, read through the cluster from either replica.

use std::time::{Duration, Instant};

use crate::exactness::{
    PARTITIONS, Setup, assert_views_match, durable, pipeline_env, produce, read_back,
};
use crate::support::{Isolated, RUN_LIMIT, finish, salestalk_command, services_script};

/// The cluster `deploy/services/up cluster` starts, and its replicas' HTTP ports.
const CLUSTER: &str = "salestalk";
fn replica_url(n: usize) -> String {
    let ports = std::env::var("SALESTALK_CLUSTER_HTTP_PORTS").unwrap_or("8211 8212".into());
    let port = ports
        .split_whitespace()
        .nth(n - 1)
        .expect("two replica ports");
    format!("http://127.0.0.1:{port}")
}

/// `deploy/services/<script> <service>` (`down replica2`, `up replica2`) on the shared cluster.
fn services(script: &str, service: &str) {
    services_script(script, &[service], &[]);
}

/// `isolated` with its database read on replica `n`.
fn on_replica(isolated: &Isolated, n: usize) -> Isolated {
    Isolated {
        prefix: isolated.prefix.clone(),
        topics: isolated.topics.clone(),
        env: isolated.env.clone(),
        brokers: isolated.brokers.clone(),
        clickhouse_url: replica_url(n),
        partitions: isolated.partitions,
    }
}

/// Setup whose runs and reads go to replica `n` of the cluster.
fn cluster_setup(isolated: Isolated, n: usize) -> Setup {
    let isolated = on_replica(&isolated, n);
    let mut env = pipeline_env(&isolated);
    env.retain(|(key, _)| *key != "SALESTALK__CLICKHOUSE__URL");
    env.extend([
        ("SALESTALK__CLICKHOUSE__URL", replica_url(n)),
        ("SALESTALK__CLICKHOUSE__CLUSTER", CLUSTER.to_string()),
    ]);
    Setup { isolated, env }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_stopped_mid_run_changes_no_view_read_through_the_cluster() {
    let isolated = Isolated::create("it-cluster", PARTITIONS).await;
    let setup = cluster_setup(isolated, 1);
    produce(&setup.env, 61, 40_000, 60);
    let total: i64 = read_back(&setup.isolated)
        .values()
        .map(|m| m.len() as i64)
        .sum();

    let run = salestalk_command(&["run", "--idle-exit", "8s"], &setup.env)
        .spawn()
        .expect("salestalk run starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while durable(&setup.isolated).await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The schema is on both replicas, replicated, with Distributed twins for the views.
    let engines: Vec<(String, String)> = setup
        .isolated
        .endpoint()
        .client()
        .query(
            "SELECT name, engine FROM system.tables WHERE database = currentDatabase() \
             AND name IN ('window_state', 'window_state_all', 'events_raw', 'task_claims')",
        )
        .fetch_all()
        .await
        .expect("engines");
    assert!(
        engines.contains(&("window_state".into(), "ReplicatedReplacingMergeTree".into()))
            && engines.contains(&("window_state_all".into(), "Distributed".into()))
            && engines.contains(&("task_claims".into(), "ReplicatedMergeTree".into())),
        "{engines:?}"
    );

    services("down", "replica2");
    let stopped_at = durable(&setup.isolated).await;
    assert!(
        stopped_at < total,
        "replica 2 stopped mid-run: {stopped_at} of {total}"
    );
    // The run goes on against replica 1 while replica 2 is away.
    let deadline = Instant::now() + Duration::from_secs(120);
    while durable(&setup.isolated).await < stopped_at + 5_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    services("up", "replica2");
    let out = finish(run, RUN_LIMIT, "salestalk run on the cluster");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(durable(&setup.isolated).await, total, "durable once each");

    // Replica 2 catches up on what it missed.
    let replica2 = on_replica(&setup.isolated, 2).endpoint();
    for table in ["window_state", "events_raw", "dead_letters", "task_claims"] {
        replica2
            .client()
            .query(&format!(
                "SYSTEM SYNC REPLICA {}.{table}",
                replica2.database
            ))
            .execute()
            .await
            .unwrap_or_else(|e| panic!("syncing {table} on replica 2: {e}"));
    }

    // Every view, read through the cluster on replica 1, then on replica 2 with replica 1
    // stopped (the cluster's reads go to the replica that is up).
    assert_views_match(&setup).await;
    services("down", "replica1");
    let on_two = cluster_setup(on_replica(&setup.isolated, 2), 2);
    assert_views_match(&on_two).await;
    services("up", "replica1");
    on_two
        .isolated
        .endpoint()
        .server_client()
        .query(&format!(
            "DROP DATABASE IF EXISTS {} ON CLUSTER {CLUSTER}",
            on_two.isolated.database()
        ))
        .execute()
        .await
        .expect("dropping the database on the cluster");
}
