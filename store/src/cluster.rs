//! Cluster mode (`[clickhouse] cluster`, ADR 0015): the same schema on a replicated cluster.
//! Every statement of the migrations and views is rewritten here, so the schema story stays
//! one: tables become `Replicated*MergeTree` created `ON CLUSTER`, each with a `Distributed`
//! twin `<table>_all` that the public views read (reads go through the cluster), while the
//! pipeline keeps inserting into, and restoring from, the local table of the one replica it
//! talks to (a flush stays one atomic insert, never split by a `Distributed` table).

/// Suffix of the `Distributed` table over each replicated one.
pub const DISTRIBUTED_SUFFIX: &str = "_all";

/// What a statement the whole cluster runs carries.
pub const ON_CLUSTER: &str = " ON CLUSTER ";

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS ";
const ALTER_TABLE: &str = "ALTER TABLE ";
const CREATE_VIEW: &str = "CREATE VIEW ";
const DROP_TABLE: &str = "DROP TABLE IF EXISTS ";

/// Where a cluster's statements go and what they name.
#[derive(Debug, Clone)]
pub struct ClusterSchema<'a> {
    /// The cluster's name (`system.clusters`); checked to be an identifier.
    pub cluster: &'a str,
    /// The pipeline's database.
    pub database: &'a str,
    /// The tables the migrations create (read from them with [`created_tables`]).
    pub tables: Vec<String>,
}

/// The tables `statements` create, as `CREATE TABLE IF NOT EXISTS db.name (` names them.
pub fn created_tables<'s>(statements: impl IntoIterator<Item = &'s String>) -> Vec<String> {
    statements
        .into_iter()
        .filter_map(|statement| {
            let rest = statement.strip_prefix(CREATE_TABLE)?;
            let name = qualified_name(rest);
            Some(name.rsplit('.').next().unwrap_or(name).to_string())
        })
        .collect()
}

/// The name at the start of `text`, up to whitespace or `(`.
fn qualified_name(text: &str) -> &str {
    let end = text
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(text.len());
    &text[..end]
}

impl ClusterSchema<'_> {
    fn on_cluster(&self) -> String {
        format!("{ON_CLUSTER}{}", self.cluster)
    }

    /// `statement` as the cluster runs it, with the statements it brings along (a table's
    /// `Distributed` twin, the same column on the twin).
    pub fn rewrite(&self, statement: &str) -> Vec<String> {
        if let Some(rest) = statement.strip_prefix(CREATE_TABLE) {
            let name = qualified_name(rest);
            let table = name.rsplit('.').next().unwrap_or(name);
            return vec![self.replicated_table(statement), self.twin(table)];
        }
        if let Some(rest) = statement.strip_prefix(ALTER_TABLE) {
            let name = qualified_name(rest);
            let table = name.rsplit('.').next().unwrap_or(name);
            let change = &rest[name.len()..];
            // A replicated table's ALTER is replicated by the table itself to the other
            // replicas of its shard (the cluster has one), so it runs here only: ON CLUSTER,
            // 18.16 ran it on both replicas at once now and then, the second found the column
            // already there, and its DDL worker stopped on a ZooKeeper error ("Node exists
            // .../executed"), leaving every later ON CLUSTER statement waiting past
            // `distributed_ddl_task_timeout` (seen in the cluster test). The server refuses
            // ALTER ... ON CLUSTER of the (unreplicated) Distributed twin on a replicated
            // shard, so the twin is made again, on every host, with the table's new columns.
            return vec![
                format!("{ALTER_TABLE}{name}{change}"),
                format!(
                    "{DROP_TABLE}{name}{DISTRIBUTED_SUFFIX}{}",
                    self.on_cluster()
                ),
                self.twin(table),
            ];
        }
        if let Some(rest) = statement.strip_prefix(DROP_TABLE) {
            let name = qualified_name(rest);
            let tail = &rest[name.len()..];
            return vec![format!("{DROP_TABLE}{name}{}{tail}", self.on_cluster())];
        }
        if let Some(rest) = statement.strip_prefix(CREATE_VIEW) {
            let name = qualified_name(rest);
            let body = self.through_the_cluster(&rest[name.len()..]);
            return vec![format!("{CREATE_VIEW}{name}{}{body}", self.on_cluster())];
        }
        // Inserts (a migration's backfill) run on this replica and replicate.
        vec![statement.to_string()]
    }

    /// The `Distributed` twin of `table`, with its columns.
    fn twin(&self, table: &str) -> String {
        format!(
            "{CREATE_TABLE}{db}.{table}{DISTRIBUTED_SUFFIX}{on} AS {db}.{table} \
             ENGINE = Distributed({cluster}, {db}, {table})",
            db = self.database,
            on = self.on_cluster(),
            cluster = self.cluster,
        )
    }

    /// A `CREATE TABLE IF NOT EXISTS db.name (...) ENGINE = *MergeTree` statement made
    /// `ON CLUSTER` and replicated, without a twin (the schema's own bookkeeping tables); any
    /// other statement as it is.
    pub fn replicated_table(&self, statement: &str) -> String {
        let Some(rest) = statement.strip_prefix(CREATE_TABLE) else {
            return statement.to_string();
        };
        let name = qualified_name(rest);
        let table = name.rsplit('.').next().unwrap_or(name);
        format!(
            "{CREATE_TABLE}{name}{}{}",
            self.on_cluster(),
            self.replicated_engine(&rest[name.len()..], table)
        )
    }

    /// The table body with its `*MergeTree` engine made `Replicated*MergeTree`, keyed in
    /// ZooKeeper by shard, database and table.
    fn replicated_engine(&self, body: &str, table: &str) -> String {
        const ENGINE: &str = "ENGINE = ";
        let Some(at) = body.find(ENGINE) else {
            return body.to_string();
        };
        let start = at + ENGINE.len();
        let engine_len = body[start..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(body.len() - start);
        let engine = &body[start..start + engine_len];
        if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
            return body.to_string();
        }
        let mut after = start + engine_len;
        let mut arguments = String::new();
        if body[after..].starts_with('(')
            && let Some(close) = body[after..].find(')')
        {
            let inner = body[after + 1..after + close].trim();
            if !inner.is_empty() {
                arguments = format!(", {inner}");
            }
            after += close + 1;
        }
        format!(
            "{}Replicated{engine}('/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'{arguments}){}",
            &body[..start],
            &body[after..],
            db = self.database,
        )
    }

    /// A view's body reading each base table through its `Distributed` twin.
    fn through_the_cluster(&self, body: &str) -> String {
        let mut out = String::with_capacity(body.len() + 64);
        let mut rest = body;
        let prefix = format!("{}.", self.database);
        while let Some(at) = rest.find(&prefix) {
            let name_start = at + prefix.len();
            let name_len = rest[name_start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - name_start);
            let name = &rest[name_start..name_start + name_len];
            out.push_str(&rest[..name_start + name_len]);
            if self.tables.iter().any(|table| table == name) {
                out.push_str(DISTRIBUTED_SUFFIX);
            }
            rest = &rest[name_start + name_len..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> ClusterSchema<'static> {
        ClusterSchema {
            cluster: "salestalk",
            database: "db",
            tables: vec!["window_state".into(), "alerts".into()],
        }
    }

    #[test]
    fn a_table_becomes_replicated_on_the_cluster_with_a_distributed_twin() {
        let statements = schema().rewrite(
            "CREATE TABLE IF NOT EXISTS db.window_state (\nepoch UInt64\n) ENGINE = ReplacingMergeTree(epoch)\nORDER BY (family)",
        );
        assert_eq!(
            statements,
            [
                "CREATE TABLE IF NOT EXISTS db.window_state ON CLUSTER salestalk (\nepoch UInt64\n) \
                 ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/window_state', '{replica}', epoch)\nORDER BY (family)",
                "CREATE TABLE IF NOT EXISTS db.window_state_all ON CLUSTER salestalk AS db.window_state \
                 ENGINE = Distributed(salestalk, db, window_state)",
            ]
        );
        let plain = schema().rewrite(
            "CREATE TABLE IF NOT EXISTS db.alerts (a UInt8) ENGINE = MergeTree\nORDER BY a",
        );
        assert!(plain[0].contains(
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/alerts', '{replica}')\nORDER BY a"
        ));
    }

    #[test]
    fn columns_are_added_on_the_cluster_and_the_twin_is_made_again_with_them() {
        assert_eq!(
            schema().rewrite("ALTER TABLE db.alerts ADD COLUMN x String"),
            [
                "ALTER TABLE db.alerts ADD COLUMN x String",
                "DROP TABLE IF EXISTS db.alerts_all ON CLUSTER salestalk",
                "CREATE TABLE IF NOT EXISTS db.alerts_all ON CLUSTER salestalk AS db.alerts \
                 ENGINE = Distributed(salestalk, db, alerts)",
            ]
        );
    }

    #[test]
    fn views_read_base_tables_through_the_cluster_and_other_views_as_they_are() {
        let statements = schema().rewrite(
            "CREATE VIEW db.metrics_volume AS SELECT 1 FROM db.window_state WHERE x IN (SELECT y FROM db.window_states) UNION ALL SELECT 2 FROM db.metrics_cost",
        );
        assert_eq!(
            statements,
            [
                "CREATE VIEW db.metrics_volume ON CLUSTER salestalk AS SELECT 1 FROM db.window_state_all WHERE x IN (SELECT y FROM db.window_states) UNION ALL SELECT 2 FROM db.metrics_cost"
            ]
        );
        assert_eq!(
            schema().rewrite("DROP TABLE IF EXISTS db.metrics_volume"),
            ["DROP TABLE IF EXISTS db.metrics_volume ON CLUSTER salestalk"]
        );
        let insert = "INSERT INTO db.window_state SELECT 1";
        assert_eq!(schema().rewrite(insert), [insert]);
    }

    #[test]
    fn the_created_tables_are_read_from_the_statements() {
        let statements = [
            "CREATE TABLE IF NOT EXISTS db.window_state (a UInt8) ENGINE = MergeTree".to_string(),
            "ALTER TABLE db.window_state ADD COLUMN b UInt8".to_string(),
        ];
        assert_eq!(created_tables(&statements), ["window_state"]);
    }
}
