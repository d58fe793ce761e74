//! Integration tests against the real services `deploy/services/up` starts: a Kafka-protocol
//! broker (tansu) and ClickHouse. Endpoints come from the same configuration the binary
//! reads (`SALESTALK__KAFKA__BROKERS`, `SALESTALK__CLICKHOUSE__URL`, ...). These tests fail,
//! rather than skip, when a service is down: start them with `deploy/services/up`.

mod support;

mod alerts;
mod browser;
mod check_command;
mod clickhouse_schema;
mod clickhouse_server;
mod clickhouse_tls;
mod cluster;
mod contract_warnings;
mod corrections;
mod dashboards;
mod dead_letters;
mod deployment;
mod exactness;
mod faults;
mod fencing;
mod hostile;
mod immutability;
mod ingest;
mod kafka_roundtrip;
mod keys;
mod kinesis;
mod metrics_endpoint;
mod modern_clickhouse;
mod outages;
mod rebalance;
mod replay;
mod retention;
mod routing;
mod sealing;
mod trace;
mod versions;
