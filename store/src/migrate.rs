//! Bringing a database to the current schema: the migrations it has not seen, then the
//! public views when their definitions changed.

use crate::cluster::{ClusterSchema, created_tables};
use crate::endpoint::{
    ClickHouseError, DUPLICATE_COLUMN, Endpoint, UNKNOWN_DATABASE, UNKNOWN_TABLE, server_code,
};
use crate::profile::ServerProfile;
use crate::schema;

impl Endpoint {
    /// Applies the migrations this server has not seen yet, in order, recreates the views,
    /// and returns how many migrations were applied.
    ///
    /// A schema already current is read, not written: no DDL runs, so on a cluster no
    /// `ON CLUSTER` statement waits for every replica, and a process (re)starts with a
    /// replica down. Changes are for `salestalk migrate` (a Job before an upgrade) or the
    /// first process of a new version.
    pub async fn migrate(&self, profile: &ServerProfile) -> Result<usize, ClickHouseError> {
        self.check_cluster().await?;
        let migrations = schema::migrations(profile, &self.database);
        let cluster = self.cluster_schema(&migrations);
        if self.schema_is_current(&migrations, cluster.as_ref()).await {
            return Ok(0);
        }
        self.ensure_database().await?;
        let bookkeeping = |statement: String| match &cluster {
            Some(cluster) => cluster.replicated_table(&statement),
            None => statement,
        };
        self.query(&bookkeeping(format!(
                "CREATE TABLE IF NOT EXISTS {}.schema_migrations \
                 (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version",
                self.database
            )))
            .execute()
            .await?;
        let applied: Vec<u32> = self
            .query("SELECT DISTINCT version FROM schema_migrations")
            .fetch_all()
            .await?;
        let mut count = 0;
        for migration in &migrations {
            if applied.contains(&migration.version) {
                continue;
            }
            let statements: Vec<String> = match &cluster {
                Some(cluster) => migration
                    .statements
                    .iter()
                    .flat_map(|statement| cluster.rewrite(statement))
                    .collect(),
                None => migration.statements.clone(),
            };
            for statement in &statements {
                // On several shards, what a cluster does not run everywhere (a replicated
                // table's ALTER, a backfill over the local rows) runs on each shard's writer
                // and replicates within its shard (ADR 0022).
                let on_each_shard = cluster.is_some()
                    && self.is_sharded()
                    && !statement.contains(crate::cluster::ON_CLUSTER);
                let servers = if on_each_shard {
                    self.shard_writers()
                } else {
                    vec![self.clone()]
                };
                for server in &servers {
                    match server.query(statement).execute().await {
                        // A migration interrupted after adding a column left it there; servers
                        // before 19.x have no `ADD COLUMN IF NOT EXISTS`.
                        Err(ClickHouseError::Rejected(clickhouse::error::Error::BadResponse(
                            text,
                        ))) if statement.contains(" ADD COLUMN ")
                            && server_code(&text) == Some(DUPLICATE_COLUMN) => {}
                        other => other?,
                    }
                }
            }
            self.query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())",
            )
            .bind(migration.version)
            .bind(migration.name)
            .execute()
            .await?;
            count += 1;
        }
        self.ensure_views(cluster.as_ref()).await?;
        Ok(count)
    }

    /// Whether every migration is recorded and the views are the current ones, read without
    /// changing anything (any failure, a missing table included, says no: the full path then
    /// runs and reports it).
    async fn schema_is_current(
        &self,
        migrations: &[schema::Migration],
        cluster: Option<&ClusterSchema<'_>>,
    ) -> bool {
        let Ok(applied) = self
            .query("SELECT DISTINCT version FROM schema_migrations")
            .fetch_all::<u32>()
            .await
        else {
            return false;
        };
        if !migrations.iter().all(|m| applied.contains(&m.version)) {
            return false;
        }
        let fingerprint = views_fingerprint(&self.views_statements(cluster));
        self.query("SELECT fingerprint FROM schema_views ORDER BY applied_at_ms DESC LIMIT 1")
            .fetch_all::<String>()
            .await
            .is_ok_and(|current| current.first() == Some(&fingerprint))
    }

    /// The view statements as this endpoint runs them (rewritten for a cluster).
    fn views_statements(&self, cluster: Option<&ClusterSchema<'_>>) -> Vec<String> {
        match cluster {
            Some(cluster) => schema::views(&self.database)
                .iter()
                .flat_map(|statement| cluster.rewrite(statement))
                .collect(),
            None => schema::views(&self.database),
        }
    }

    /// The rewriting of `migrations`' statements for `clickhouse.cluster`, if one is set.
    fn cluster_schema(&self, migrations: &[schema::Migration]) -> Option<ClusterSchema<'_>> {
        if self.cluster.is_empty() {
            return None;
        }
        Some(ClusterSchema {
            cluster: &self.cluster,
            database: &self.database,
            tables: created_tables(migrations.iter().flat_map(|m| &m.statements)),
        })
    }

    /// With `clickhouse.cluster` set: the server knows the cluster, and it is one shard of
    /// replicas, or as many shards as `clickhouse.shard_urls` names, each URL a replica of its
    /// shard, in order. A task's rows must all be on the writer it restores from (ADR 0015,
    /// ADR 0022).
    async fn check_cluster(&self) -> Result<(), ClickHouseError> {
        if self.cluster.is_empty() {
            return Ok(());
        }
        if self.is_sharded() {
            return self.check_shards().await;
        }
        let (shards, replicas): (u64, u64) = self
            .server_query(
                "SELECT uniqExact(shard_num), count() FROM system.clusters WHERE cluster = ?",
            )
            .bind(&self.cluster)
            .fetch_one()
            .await?;
        match shards {
            0 => Err(ClickHouseError::NotSent(format!(
                "clickhouse.cluster: the server at {} has no cluster '{}' in system.clusters",
                self.url, self.cluster
            ))),
            1 => Ok(()),
            _ => Err(ClickHouseError::NotSent(format!(
                "clickhouse.cluster: '{}' has {shards} shards ({replicas} replicas); name each \
                 shard's writer in clickhouse.shard_urls (docs/operations.md, \"A ClickHouse \
                 cluster\"; ADR 0022)",
                self.cluster
            ))),
        }
    }

    /// `clickhouse.shard_urls` against the cluster: as many shards, each URL on a shard of its
    /// own (the `shard` macro), and no shard holding a checkpoint of a task whose home is
    /// another (the shards were reordered, or their number changed since the tasks were
    /// written: moving them is a reshard, which the pipeline does not do). Every problem is
    /// listed.
    async fn check_shards(&self) -> Result<(), ClickHouseError> {
        let shards: u64 = self
            .server_query("SELECT uniqExact(shard_num) FROM system.clusters WHERE cluster = ?")
            .bind(&self.cluster)
            .fetch_one()
            .await?;
        let mut problems = Vec::new();
        if shards != self.shard_urls.len() as u64 {
            problems.push(format!(
                "clickhouse.shard_urls: {} URLs, but cluster '{}' has {shards} shards",
                self.shard_urls.len(),
                self.cluster
            ));
        }
        // Each writer must be a replica of a shard no other writer is on: its `{shard}` macro
        // (system.clusters' `is_local` is no help: 18.16 showed it 1 and then 0 for the
        // same server). Which shard is which position is then held by the tasks' homes below.
        let mut seen: Vec<String> = Vec::new();
        for (index, writer) in self.shard_writers().iter().enumerate() {
            let shard: Vec<String> = writer
                .server_query("SELECT substitution FROM system.macros WHERE macro = 'shard'")
                .fetch_all()
                .await?;
            let Some(shard) = shard.into_iter().next() else {
                problems.push(format!(
                    "clickhouse.shard_urls[{index}]: the server at {} has no shard macro",
                    writer.url
                ));
                continue;
            };
            if seen.contains(&shard) {
                problems.push(format!(
                    "clickhouse.shard_urls[{index}]: the server at {} is on shard '{shard}', as \
                     an earlier URL is: name one writer per shard",
                    writer.url
                ));
                continue;
            }
            seen.push(shard);
            let tasks: Vec<String> = match writer
                .query("SELECT DISTINCT task FROM window_state WHERE family = ?")
                .bind(crate::tables::window_state::CHECKPOINT_FAMILY)
                .fetch_all()
                .await
            {
                Ok(tasks) => tasks,
                // A database or table not made yet holds no tasks; any other failure is one.
                Err(ClickHouseError::Rejected(clickhouse::error::Error::BadResponse(text)))
                    if matches!(server_code(&text), Some(UNKNOWN_TABLE | UNKNOWN_DATABASE)) =>
                {
                    Vec::new()
                }
                Err(other) => return Err(other),
            };
            let strangers: Vec<&String> = tasks
                .iter()
                .filter(|task| self.home_shard_of_task(task) != index)
                .collect();
            if let Some(first) = strangers.first() {
                problems.push(format!(
                    "clickhouse.shard_urls[{index}]: shard {} holds checkpoints of {} tasks whose \
                     home is another shard (first: {first}); were the shards reordered or their \
                     number changed? That needs a reshard (ADR 0022)",
                    index + 1,
                    strangers.len()
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ClickHouseError::NotSent(problems.join("; ")))
        }
    }

    /// Recreates the public views when their definitions changed since the last start. Not on
    /// every start: between a view's DROP and CREATE, readers (dashboards, alerts, another
    /// instance starting) see it missing. Two processes that start together on a new
    /// definition may still collide; the loser retries and then finds the work done.
    async fn ensure_views(
        &self,
        cluster: Option<&ClusterSchema<'_>>,
    ) -> Result<(), ClickHouseError> {
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {}.schema_views \
             (fingerprint String, applied_at_ms UInt64) ENGINE = MergeTree ORDER BY applied_at_ms",
            self.database
        );
        self.query(&cluster.map_or(create.clone(), |c| c.replicated_table(&create)))
            .execute()
            .await?;
        let statements = self.views_statements(cluster);
        let fingerprint = views_fingerprint(&statements);
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let current: Vec<String> = self
                .query("SELECT fingerprint FROM schema_views ORDER BY applied_at_ms DESC LIMIT 1")
                .fetch_all()
                .await?;
            if current.first() == Some(&fingerprint) {
                return Ok(());
            }
            let mut created = Ok(());
            for statement in &statements {
                created = self.query(statement).execute().await;
                if created.is_err() {
                    break;
                }
            }
            match created {
                Ok(()) => {
                    let now_ms = salestalk_operators::time::now_ms();
                    return self
                        .query(
                            "INSERT INTO schema_views (fingerprint, applied_at_ms) VALUES (?, ?)",
                        )
                        .bind(&fingerprint)
                        .bind(now_ms)
                        .execute()
                        .await;
                }
                Err(_) if attempt < ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt)))
                        .await;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The fingerprint recorded in `schema_views` for `statements`.
fn views_fingerprint(statements: &[String]) -> String {
    fnv1a(statements.join(";\n").as_bytes())
}

/// FNV-1a, 64 bits, in hex: a fingerprint stable across builds and Rust versions.
fn fnv1a(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}
