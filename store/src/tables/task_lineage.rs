//! Which rows of a task the views count (ADR 0014): the lineage of the task's newest
//! confirmed claim, recorded by the claimer once its claim is confirmed.
//!
//! A restore resumes from one checkpoint and counts the rows of that checkpoint's lineage
//! (`task_claims::Lineage`); the views must count the same rows, or a number shown would not
//! be the state the task goes on from. The lineage is a chain through the claims' base
//! epochs, which SQL cannot follow without recursion, so the claimer, which has just read
//! it, writes it down here and the views look up the newest one per task. When a broker
//! hands a partition to two instances at once, their claims branch (two generations resumed
//! from different epochs of the same one); a rule read off the claims alone (fence each
//! generation at the lowest epoch any later one resumed from) then hides rows the chain that
//! won still counts, which this table replaces.
//!
//! One row per claim, folded to the newest per task by merges: the table stays one row per
//! task whatever the number of restarts, each row as long as its chain.

use clickhouse::Row;
use serde::Serialize;

use super::Ddl;
use super::task_claims::Lineage;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 19: the lineage each confirmed claim resumes, the newest per task kept.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.task_lineage (\n\
         task String,\n\
         generation UInt64,\n\
         base_epoch UInt64,\n\
         generations Array(UInt64),\n\
         limits Array(UInt64),\n\
         unrecorded_below UInt64\n\
         ) ENGINE = ReplacingMergeTree(generation)\n\
         ORDER BY task"
    )
}

/// The fence the views join every window row with, on `(task, generation)`: `admitted_to`,
/// the last epoch of that generation that counts.
///
/// For a task whose newest confirmed claim recorded its lineage, every generation up to that
/// claim is listed: the claim's own without a limit, its lineage's up to their limits, the
/// rest with 0 (none of their rows count). For a task whose newest claim did not (claims from
/// before this table, or a claimer that stopped between confirming and recording), the rule
/// read off the claims alone: a generation counts up to the lowest epoch a later one resumed
/// from (exact while claims do not branch). Rows of generations not listed (tasks without
/// claims, from before fencing) all count: their `fenced` is then 0. The rule of one kind of
/// task is computed over empty arrays for the other, so neither pays for both.
pub(crate) fn fences_sql(database: &str, generation_of_base: &str) -> String {
    const ALL: &str = "toUInt64(18446744073709551615)";
    format!(
        "SELECT task, generation, toUInt8(1) AS fenced, \
         if(use_lineage, \
         if(generation = latest, {ALL}, \
         if(indexOf(lineage_generations, generation) > 0, \
         lineage_limits[indexOf(lineage_generations, generation)], \
         if(generation < unrecorded_below, lineage_base, toUInt64(0)))), \
         if(empty(later), {ALL}, arrayReduce('min', later))) AS admitted_to \
         FROM (SELECT task, generation, use_lineage, latest, lineage_generations, lineage_limits, \
         unrecorded_below, lineage_base, \
         arrayFilter((b, g) -> g > generation, if(use_lineage, emptyArrayUInt64(), bases), \
         if(use_lineage, emptyArrayUInt64(), gens)) AS later \
         FROM (SELECT task, gens, bases, has_lineage = 1 AND latest = arrayReduce('max', gens) AS use_lineage, \
         latest, lineage_generations, lineage_limits, unrecorded_below, lineage_base \
         FROM (SELECT task, groupArray(generation) AS gens, groupArray(base_epoch) AS bases \
         FROM {database}.task_claims WHERE confirmed = 1 GROUP BY task) AS claims \
         ANY LEFT JOIN (SELECT task, toUInt8(1) AS has_lineage, max(generation) AS latest, \
         argMax(generations, generation) AS lineage_generations, \
         argMax(limits, generation) AS lineage_limits, \
         argMax(unrecorded_below, generation) AS unrecorded_below, \
         argMax(base_epoch, generation) AS lineage_base \
         FROM {database}.task_lineage GROUP BY task) AS lineage USING task) \
         ARRAY JOIN if(use_lineage, range(latest + 1), \
         arrayDistinct(arrayConcat(gens, arrayMap(b -> {generation_of_base}, bases)))) AS generation)"
    )
}

/// One row of `task_lineage`: a confirmed claim and the chain it resumed.
#[derive(Debug, Clone, Row, Serialize)]
struct LineageRecord {
    task: String,
    generation: u64,
    base_epoch: u64,
    generations: Vec<u64>,
    limits: Vec<u64>,
    unrecorded_below: u64,
}

impl Endpoint {
    /// Records that `generation` of `task`, confirmed, resumed the state of `lineage`: from
    /// now on the views count that chain's rows and the generation's own.
    pub(crate) async fn record_lineage(
        &self,
        task: &str,
        generation: u64,
        lineage: &Lineage,
    ) -> Result<(), ClickHouseError> {
        let record = LineageRecord {
            task: task.to_string(),
            generation,
            base_epoch: lineage.checkpoint_epoch,
            generations: lineage.generations.clone(),
            limits: lineage.limits.clone(),
            unrecorded_below: lineage.unrecorded_below,
        };
        self.insert_rows::<LineageRecord>("task_lineage", std::slice::from_ref(&record))
            .await
    }
}
