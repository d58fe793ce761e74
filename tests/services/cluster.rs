//! Cluster mode against a real ClickHouse cluster (`deploy/services/up cluster`: ZooKeeper and
//! three ClickHouse 18.16 servers, two replicas of shard 1 and one of shard 2): the schema made
//! on every shard, the pipeline writing to one replica of shard 1 while the other is stopped
//! mid-run, restarted while it is away, the writer itself stopped and the pipeline failed over
//! to the other replica, and every view exact, read through the cluster from either replica
//! and from shard 2, which holds none of the rows.

use crate::exactness::{
    PARTITIONS, Setup, assert_views_match, durable, pipeline_env, produce, read_back, wait_durable,
};
use crate::support::{
    Isolated, past_a_dead_members_session, salestalk_command, services_script, session_timeout_env,
};

/// The cluster `deploy/services/up cluster` starts, and its servers' HTTP ports (replicas 1
/// and 2 of shard 1, then replica 3, shard 2).
const CLUSTER: &str = "salestalk";
fn replica_url(n: usize) -> String {
    let ports = std::env::var("SALESTALK_CLUSTER_HTTP_PORTS").unwrap_or("8211 8212 8213".into());
    let port = ports
        .split_whitespace()
        .nth(n - 1)
        .expect("three replica ports");
    format!("http://127.0.0.1:{port}")
}

/// `deploy/services/<script> <service>` (`down replica2`, `up replica2`) on the shared cluster.
fn services(script: &str, service: &str) {
    services_script(script, &[service], &[]);
}

/// A replica stopped for a while: started again when dropped, also when the test fails
/// before it could, so the tests after it find the cluster whole.
struct Stopped(&'static str);

impl Stopped {
    fn replica(name: &'static str) -> Self {
        services("down", name);
        Self(name)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/services/up");
        // No assertion here: a panic while a failing test unwinds would abort the suite.
        let _ = std::process::Command::new(path).arg(self.0).output();
    }
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

/// Setup whose runs and reads go to replica `n` of the cluster, which also writes shard 1's
/// tasks; replica 3 writes shard 2's.
fn cluster_setup(isolated: Isolated, n: usize) -> Setup {
    let isolated = on_replica(&isolated, n);
    let mut env = pipeline_env(&isolated);
    env.retain(|(key, _)| *key != "SALESTALK__CLICKHOUSE__URL");
    env.extend([
        ("SALESTALK__CLICKHOUSE__URL", replica_url(n)),
        ("SALESTALK__CLICKHOUSE__CLUSTER", CLUSTER.to_string()),
        session_timeout_env(),
        (
            "SALESTALK__CLICKHOUSE__SHARD_URLS",
            format!(
                "{},{}",
                replica_url(if n == 3 { 1 } else { n }),
                replica_url(3)
            ),
        ),
    ]);
    Setup { isolated, env }
}

/// The tasks whose checkpoints the server at replica `n` holds in its own table.
async fn local_tasks(isolated: &Isolated, n: usize) -> Vec<String> {
    on_replica(isolated, n)
        .endpoint()
        .client()
        .query("SELECT DISTINCT task FROM window_state WHERE family = 'checkpoint' ORDER BY task")
        .fetch_all()
        .await
        .expect("a replica's own checkpoints")
}

/// Messages in the test's topics now.
fn messages(setup: &Setup) -> i64 {
    read_back(&setup.isolated)
        .values()
        .map(|m| m.len() as i64)
        .sum()
}

/// Traffic arrives in three parts: before, while and after replica 2 is away, so the stop is
/// mid-run whatever the machine's speed.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_stopped_a_restart_and_a_writer_failover_change_no_view_read_through_the_cluster()
{
    let isolated = Isolated::create("it-cluster", PARTITIONS).await;
    let setup = cluster_setup(isolated, 1);
    produce(&setup.env, 61, 20_000, 60);
    let mut reaper = crate::support::KillIfPanicking::default();
    let mut run = salestalk_command(&["run"], &setup.env)
        .spawn()
        .expect("salestalk run starts");
    reaper.watch(&run);
    assert!(
        wait_durable(&setup, 1, &mut [&mut run]).await > 0,
        "the run made progress"
    );
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
    let shard_two = on_replica(&setup.isolated, 3).endpoint();
    let shards: Vec<u32> = shard_two
        .client()
        .query(
            "SELECT DISTINCT shard_num FROM system.clusters WHERE cluster = ? ORDER BY shard_num",
        )
        .bind(CLUSTER)
        .fetch_all()
        .await
        .expect("the cluster's shards");
    let macro_shard: String = shard_two
        .client()
        .query("SELECT substitution FROM system.macros WHERE macro = 'shard'")
        .fetch_one()
        .await
        .expect("replica 3's shard");
    assert_eq!(
        (shards, macro_shard.as_str()),
        (vec![1, 2], "2"),
        "two shards, and replica 3 is shard 2"
    );

    let away = Stopped::replica("replica2");
    let at_stop = durable(&setup.isolated).await;
    produce(&setup.env, 62, 20_000, 60);
    let while_away = wait_durable(&setup, messages(&setup), &mut [&mut run]).await;
    assert!(
        while_away > at_stop,
        "the run went on while replica 2 was away: {at_stop} then {while_away}"
    );
    // A restart while a replica is away: the schema is current, so start-up runs no
    // ON CLUSTER statement (which would wait for replica 2) and the pipeline starts.
    crate::faults::terminate(run);
    produce(&setup.env, 64, 5_000, 60);
    let mut run = salestalk_command(&["run"], &setup.env)
        .spawn()
        .expect("salestalk run starts again");
    reaper.watch(&run);
    let total = messages(&setup);
    assert_eq!(
        wait_durable(&setup, total, &mut [&mut run]).await,
        total,
        "restarted with replica 2 away, durable once each"
    );
    drop(away);
    produce(&setup.env, 63, 5_000, 60);
    let total = messages(&setup);
    assert_eq!(
        wait_durable(&setup, total, &mut [&mut run]).await,
        total,
        "durable once each"
    );

    // Writer failover: replica 1, the writer, goes away mid-run, and the pipeline is started
    // again pointed at replica 2 (what was acknowledged on replica 1 and not yet replicated is
    // replayed from replica 2's older checkpoints; replica 1's copies, replicated when it
    // returns, are fenced).
    let writer_away = Stopped::replica("replica1");
    produce(&setup.env, 65, 5_000, 60);
    run.kill()
        .expect("the run pointed at the stopped writer is replaced");
    run.wait().expect("stopped");
    // The replacement joins once the group has given up on the killed run.
    past_a_dead_members_session().await;
    let failover = cluster_setup(on_replica(&setup.isolated, 2), 2);
    let mut run = salestalk_command(&["run"], &failover.env)
        .spawn()
        .expect("salestalk run starts on replica 2");
    reaper.watch(&run);
    let total = messages(&setup);
    assert_eq!(
        wait_durable(&failover, total, &mut [&mut run]).await,
        total,
        "after the failover every message is durable on replica 2, once"
    );
    crate::faults::terminate(run);
    drop(writer_away);
    // Both replicas hold everything once replication has caught up.
    for replica in [1, 2] {
        let endpoint = on_replica(&setup.isolated, replica).endpoint();
        for table in ["window_state", "events_raw", "dead_letters", "task_claims"] {
            endpoint
                .client()
                .query(&format!(
                    "SYSTEM SYNC REPLICA {}.{table}",
                    endpoint.database
                ))
                .execute()
                .await
                .unwrap_or_else(|e| panic!("syncing {table} on replica {replica}: {e}"));
        }
    }

    // Every view, read through the cluster on replica 2, the writer now, then on replica 1
    // with replica 2 stopped (the cluster's reads go to the replica that is up).
    assert_views_match(&failover).await;
    let away = Stopped::replica("replica2");
    assert_views_match(&setup).await;
    drop(away);
    // Each task's checkpoints are on its home shard only, and both shards hold tasks.
    let shards = [
        local_tasks(&setup.isolated, 1).await,
        local_tasks(&setup.isolated, 3).await,
    ];
    for (index, tasks) in shards.iter().enumerate() {
        assert!(!tasks.is_empty(), "shard {} holds tasks", index + 1);
        for task in tasks {
            let (topic, partition) = task.rsplit_once('/').expect("a task name");
            let partition: i32 = partition.parse().expect("a partition");
            assert_eq!(
                salestalk_store::shards::home_shard(topic, partition, 2),
                index,
                "{task} is on shard {} only",
                index + 1
            );
        }
    }
    // Read on shard 2, every view gets shard 1's rows through the cluster.
    assert_views_match(&cluster_setup(on_replica(&setup.isolated, 3), 3)).await;
    let on_two = failover;
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
