//! Retention on ClickHouse 18.16, which has no TTL: `salestalk retention` drops the archive's
//! and the dead letters' month partitions whose newest row is past the horizon, keeps the
//! rest, and a second run drops nothing.

use clickhouse::Row;
use serde::Deserialize;

use crate::support::{Isolated, salestalk, stdout_of};

#[derive(Debug, Row, Deserialize)]
struct Count {
    n: u64,
}

#[tokio::test]
async fn expired_partitions_are_dropped_and_newer_data_stays() {
    let isolated = Isolated::create("it-retention", 1).await;
    stdout_of(&salestalk(&["migrate"], &isolated.env));
    let client = isolated.endpoint().client();
    let now = chrono::Utc::now().timestamp();
    let day = 86_400;
    // Archive: one month far past 90 days, one just inside, one current; dead letters: one
    // month past 14 days, one current. Partitions are months, so ages are picked to keep
    // each row in a month of its own whatever today's date.
    let archive = [(400, "old"), (200, "older"), (60, "kept"), (0, "new")];
    let letters = [(100, "old"), (0, "new")];
    for (days, id) in archive {
        let at = now - days * day;
        client
            .query(&format!(
                "INSERT INTO events_raw (tenant_id, event_id, timestamp, timestamp_ms) \
                 VALUES ('tenant-a', '{id}', {at}, {})",
                at * 1000
            ))
            .execute()
            .await
            .expect("archiving");
    }
    for (offset, (days, id)) in letters.iter().enumerate() {
        let at = now - days * day;
        client
            .query(&format!(
                "INSERT INTO dead_letters (topic, partition, offset, broker_time, reason, event_id) \
                 VALUES ('t', 0, {offset}, {at}, 'late', '{id}')"
            ))
            .execute()
            .await
            .expect("dead-lettering");
    }
    let ids = |table: &'static str| {
        let client = client.clone();
        async move {
            let mut ids: Vec<String> = client
                .query(&format!("SELECT event_id FROM {table} ORDER BY event_id"))
                .fetch_all()
                .await
                .expect("reading ids");
            ids.sort();
            ids
        }
    };

    let listed = stdout_of(&salestalk(&["retention", "--dry-run"], &isolated.env));
    assert!(
        listed.ends_with("would drop 3 expired partition(s)\n"),
        "{listed}"
    );
    assert_eq!(ids("events_raw").await.len(), 4, "a dry run drops nothing");

    let dropped = stdout_of(&salestalk(&["retention"], &isolated.env));
    assert!(
        dropped.ends_with("dropped 3 expired partition(s)\n"),
        "{dropped}"
    );
    assert_eq!(ids("events_raw").await, ["kept", "new"]);
    assert_eq!(ids("dead_letters").await, ["new"]);

    let again = stdout_of(&salestalk(&["retention"], &isolated.env));
    assert_eq!(again, "dropped 0 expired partition(s)\n", "idempotent");

    // A shorter horizon from the environment reaches the 60-day month too.
    let mut env = isolated.env.clone();
    env.push(("SALESTALK__RETENTION__ARCHIVE_DAYS", "30".into()));
    let shorter = stdout_of(&salestalk(&["retention"], &env));
    assert!(
        shorter.ends_with("dropped 1 expired partition(s)\n"),
        "{shorter}"
    );
    assert_eq!(ids("events_raw").await, ["new"]);
    let total: Count = client
        .query("SELECT count() AS n FROM dead_letters")
        .fetch_one()
        .await
        .expect("counting");
    assert_eq!(total.n, 1);
    isolated.remove().await;
}
