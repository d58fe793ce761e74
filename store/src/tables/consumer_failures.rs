//! `consumer_failures`: the failures downstream consumer groups report on the dead-letter
//! topic, one row per report record (a report read twice replaces itself); part of
//! `consumer_outcomes` as consumer `group.<name>`. Written by `salestalk run`'s downstream
//! watch (`pipeline/src/run/downstream`).

use clickhouse::Row;
use serde::Serialize;

use super::Ddl;
use crate::{ClickHouseError, Endpoint};

/// Migration 11: one row per report record; a report read twice replaces itself.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.consumer_failures (\n\
         minute DateTime('UTC'),\n\
         consumer_group String,\n\
         tenant_id String,\n\
         event_id String,\n\
         event_type String,\n\
         error String,\n\
         partition Int32,\n\
         offset Int64\n\
         ) ENGINE = ReplacingMergeTree\n\
         PARTITION BY toYYYYMM(minute)\n\
         ORDER BY (consumer_group, tenant_id, partition, offset){}",
        ddl.ttl("minute", 90)
    )
}

/// One failure a consumer reported.
#[derive(Debug, Clone, Row, Serialize)]
pub struct FailureReport {
    /// The minute of the report record (Unix s).
    pub minute: u32,
    /// The reporting consumer group.
    pub consumer_group: String,
    /// The event's tenant.
    pub tenant_id: String,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// What the consumer said went wrong.
    pub error: String,
    /// The report record's partition (in the dead-letter topic).
    pub partition: i32,
    /// The report record's offset: with the partition, what makes a report read twice one.
    pub offset: i64,
}

impl Endpoint {
    /// Stores failure reports.
    pub async fn record_failure_reports(
        &self,
        reports: &[FailureReport],
    ) -> Result<(), ClickHouseError> {
        self.insert_rows::<FailureReport>("consumer_failures", reports)
            .await
    }
}
