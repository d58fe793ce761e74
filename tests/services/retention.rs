//! Retention on ClickHouse 18.16, which has no TTL: `salestalk retention` expires rows within a
//! day of the horizon by trusted time (broker time), whatever their month and whatever the
//! producer stamped: whole expired months are dropped, the expired rows of a month that holds
//! newer ones are deleted, rows a day inside the horizon stay, and a second run does nothing.

use crate::support::{Isolated, salestalk, stdout_of};

#[tokio::test]
async fn rows_a_day_past_the_horizon_go_and_rows_a_day_inside_stay() {
    let isolated = Isolated::create("it-retention", 1).await;
    stdout_of(&salestalk(&["migrate"], &isolated.env));
    let client = isolated.endpoint().client();
    let now = chrono::Utc::now().timestamp();
    let day = 86_400;
    // (event time, broker time) in days before now, for the archive's 90 days: months far
    // past, a day past and a day inside the horizon, an event stamped three years ahead that
    // the broker took a day past the horizon, and a late event stamped before the horizon
    // that arrived inside it.
    let archive = [
        (400, 400, "old"),
        (200, 200, "older"),
        (91, 91, "past"),
        (89, 89, "inside"),
        (-3 * 365, 91, "future"),
        (95, 89, "late"),
        (0, 0, "new"),
    ];
    for (stamped, arrived, id) in archive {
        let (at, broker) = (now - stamped * day, now - arrived * day);
        client
            .query(&format!(
                "INSERT INTO events_raw (tenant_id, event_id, timestamp, timestamp_ms, broker_time) \
                 VALUES ('tenant-a', '{id}', {at}, {}, {broker})",
                at * 1000
            ))
            .execute()
            .await
            .expect("archiving");
    }
    // The dead letters' 14 days.
    let letters = [(15, "past"), (13, "inside"), (0, "new")];
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
    // What was done to dead letters goes with them; the alerts' history with the archive.
    for (offset, (days, id)) in letters.iter().enumerate() {
        let at = now - days * day;
        client
            .query(&format!(
                "INSERT INTO dead_letter_actions (topic, partition, offset, action, acted_at, \
                 acted_at_ms, note) VALUES ('t', 0, {offset}, 'resolved', {at}, {}, '{id}')",
                at * 1000
            ))
            .execute()
            .await
            .expect("acting");
    }
    for (days, id) in [(91, "past"), (89, "inside"), (0, "new")] {
        let at = now - days * day;
        client
            .query(&format!(
                "INSERT INTO alerts (notified_at, notified_at_ms, fingerprint, rule, status) \
                 VALUES ({at}, {}, '{id}', 'Rule', 'firing')",
                at * 1000
            ))
            .execute()
            .await
            .expect("alerting");
    }
    let ids = |table: &'static str| {
        let client = client.clone();
        let column = match table {
            "dead_letter_actions" => "note",
            "alerts" => "fingerprint",
            _ => "event_id",
        };
        async move {
            let mut ids: Vec<String> = client
                .query(&format!("SELECT {column} FROM {table}"))
                .fetch_all()
                .await
                .expect("reading ids");
            ids.sort();
            ids
        }
    };

    let listed = stdout_of(&salestalk(&["retention", "--dry-run"], &isolated.env));
    assert!(listed.contains("would drop"), "{listed}");
    assert_eq!(
        ids("events_raw").await.len(),
        archive.len(),
        "a dry run drops nothing"
    );

    let expired = stdout_of(&salestalk(&["retention"], &isolated.env));
    assert_eq!(
        ids("events_raw").await,
        ["inside", "late", "new"],
        "{expired}"
    );
    for table in ["dead_letters", "dead_letter_actions", "alerts"] {
        assert_eq!(ids(table).await, ["inside", "new"], "{table}: {expired}");
    }

    let again = stdout_of(&salestalk(&["retention"], &isolated.env));
    assert_eq!(
        again, "dropped 0 expired partition(s) and 0 expired row(s) of newer partitions\n",
        "idempotent"
    );

    // The horizon comes from the settings: a shorter one from the environment reaches the
    // rows of 89 days too.
    let mut env = isolated.env.clone();
    env.push(("SALESTALK__RETENTION__ARCHIVE_DAYS", "30".into()));
    let shorter = stdout_of(&salestalk(&["retention"], &env));
    assert_eq!(ids("events_raw").await, ["new"], "{shorter}");
    isolated.remove().await;
}
