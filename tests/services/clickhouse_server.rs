//! The real ClickHouse server: probing its version and capabilities, creating a database,
//! and a RowBinary round trip through the official client as the sinks will use it.

use clickhouse::Row;
use salestalk_store::{Endpoint, InsertCompression, Version};
use serde::{Deserialize, Serialize};

use crate::support::{drop_database, endpoint, unique};

async fn server_version() -> String {
    let client = endpoint("default").server_client();
    client
        .query("SELECT version()")
        .fetch_one::<String>()
        .await
        .expect("query answers")
}

#[tokio::test]
async fn probe_reports_the_servers_version_and_features() {
    let endpoint = endpoint("default");
    let profile = endpoint.probe().await.unwrap_or_else(|e| {
        panic!("ClickHouse does not answer ({e}); start it with deploy/services/up")
    });
    let reported = server_version().await;
    let expected = Version::parse(&reported).expect("version string");
    assert_eq!(profile.version, expected);
    // Debian's server is 18.16: the probe must not promise what it lacks.
    if profile.version.major < 19 {
        assert!(!profile.ttl && !profile.datetime64 && !profile.is_modern());
    }
}

#[tokio::test]
async fn a_database_is_created_once_and_rows_round_trip() {
    #[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
    struct Probe {
        tenant_id: String,
        events: u64,
        cost_nanos: i64,
    }

    let database = unique("it_db").replace('-', "_");
    let endpoint = endpoint(&database);
    endpoint.ensure_database().await.expect("create database");
    endpoint
        .ensure_database()
        .await
        .expect("creating it again is a no-op");

    let client = endpoint.client();
    client
        .query("CREATE TABLE probe (tenant_id String, events UInt64, cost_nanos Int64) ENGINE = MergeTree ORDER BY tenant_id")
        .execute()
        .await
        .expect("create table");
    let rows = vec![
        Probe {
            tenant_id: "tenant-0001".into(),
            events: 3,
            cost_nanos: 21_700_000,
        },
        Probe {
            tenant_id: "tenant-0002".into(),
            events: 1,
            cost_nanos: 6_840_000,
        },
    ];
    // Once compressed (the default) and once as they are (`clickhouse.compression = "none"`).
    for compression in [InsertCompression::Lz4, InsertCompression::None] {
        let client = Endpoint {
            compression,
            ..endpoint.clone()
        }
        .client();
        client
            .query("TRUNCATE TABLE probe")
            .execute()
            .await
            .expect("empty");
        let mut insert = client.insert::<Probe>("probe").await.expect("insert");
        for row in &rows {
            insert.write(row).await.expect("write row");
        }
        insert.end().await.expect("insert commits");
        let back: Vec<Probe> = client
            .query("SELECT ?fields FROM probe ORDER BY tenant_id")
            .fetch_all()
            .await
            .expect("select");
        assert_eq!(back, rows, "{compression:?}");
    }
    drop_database(&database).await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_error() {
    let endpoint = Endpoint::new("http://127.0.0.1:1", "x");
    let error = endpoint
        .probe()
        .await
        .expect_err("nothing listens on port 1");
    assert!(error.is_retryable(), "{error}");
}

#[tokio::test]
async fn configured_settings_go_with_every_query() {
    let plain = endpoint("default");
    let limited = Endpoint {
        settings: [("max_result_rows", "1"), ("result_overflow_mode", "throw")]
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        ..plain.clone()
    };
    let two_rows = "SELECT number FROM system.numbers LIMIT 2";
    let rows = plain.server_client().query(two_rows).fetch_all::<u64>();
    assert_eq!(rows.await.expect("no limit without settings").len(), 2);
    let refused = limited.server_client().query(two_rows).fetch_all::<u64>();
    let error = refused
        .await
        .expect_err("the server applies max_result_rows = 1");
    assert!(error.to_string().contains("Limit for result"), "{error}");
}
