//! Fencing a task's writers (ADR 0014). An owner that stalls past its session timeout (a GC
//! pause, a network partition, SIGSTOP) loses its partitions without knowing; when it wakes it
//! may still flush. Two things keep such a "zombie" from changing any number:
//!
//! - every restore **claims** a generation no other owner of the task holds (`task_claims`),
//!   and a task's epochs carry it in their high bits, so the new owner's rows outrank whatever
//!   the zombie writes under its older generation (views and restores take the highest epoch);
//! - a restore reads only rows of its checkpoint's **lineage**: the generations that led to
//!   that checkpoint, each up to the epoch the next one resumed from. A zombie's rows written
//!   after its successor resumed are outside it, so a later restore never counts them, even
//!   for rows its successor has not rewritten yet.
//!
//! The restore reads the lineage here and filters with it in SQL (`restore`); the runtime
//! claims after reading the state it resumes from.

use std::collections::{BTreeMap, HashMap};

use clickhouse::Row;
use salestalk_operators::time::epoch::generation_of;
#[cfg(test)]
use salestalk_operators::time::epoch::{GENERATION_SHIFT, generation_sql};
use serde::{Deserialize, Serialize};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 13: each restore of a task claims a generation; a second row confirms a claim no other owner made at the same moment.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.task_claims (\n\
         task String,\n\
         generation UInt64,\n\
         base_epoch UInt64,\n\
         owner String,\n\
         nonce UInt64,\n\
         confirmed UInt8,\n\
         claimed_at_ms Int64\n\
         ) ENGINE = MergeTree\n\
         ORDER BY (task, generation)"
    )
}

/// The SQL form of [`Lineage::admits`]: a condition on `epoch` binding `unrecorded_below`,
/// `checkpoint_epoch`, `generations` and `limits` (see [`Lineage::bind`]). A macro so the
/// queries that use it stay constants.
macro_rules! lineage_condition {
    () => {
        "epoch <= if(intDiv(epoch, 4294967296) < ?, ?, \
         transform(intDiv(epoch, 4294967296), ?, ?, toUInt64(0)))"
    };
}
pub(crate) use lineage_condition;

/// How many times a claim is tried when other owners claim the same generation at the same
/// moment (each try takes the next free one).
const CLAIM_ATTEMPTS: usize = 8;

/// One row of `task_claims`: an owner's claim of a generation, and, once no other owner
/// claimed the same one, its confirmation.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
struct ClaimRecord {
    task: String,
    generation: u64,
    base_epoch: u64,
    owner: String,
    nonce: u64,
    confirmed: u8,
    claimed_at_ms: i64,
}

#[derive(Debug, Row, Deserialize)]
struct ConfirmedClaim {
    generation: u64,
    base_epoch: u64,
}

/// The generations that led to a checkpoint and how far each counts: a row of generation
/// `g` belongs to the checkpoint's state when its epoch is at most `g`'s limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// Generations of the chain, newest first.
    pub generations: Vec<u64>,
    /// The last epoch of each of them that counts (the checkpoint's own epoch for the newest).
    pub limits: Vec<u64>,
    /// Generations below this one were written before claims were recorded: their rows count
    /// up to the checkpoint's epoch, as before fencing (0 when the chain is complete).
    pub unrecorded_below: u64,
    /// The checkpoint's epoch.
    pub checkpoint_epoch: u64,
}

impl Lineage {
    /// The chain back from `checkpoint_epoch` through the confirmed claims' base epochs
    /// (generation → the epoch it resumed from; 0 for a task that started from nothing).
    pub fn trace(bases: &BTreeMap<u64, u64>, checkpoint_epoch: u64) -> Self {
        let mut lineage = Self {
            generations: Vec::new(),
            limits: Vec::new(),
            unrecorded_below: 0,
            checkpoint_epoch,
        };
        let mut epoch = checkpoint_epoch;
        loop {
            let generation = generation_of(epoch);
            lineage.generations.push(generation);
            lineage.limits.push(epoch);
            match bases.get(&generation) {
                None => {
                    lineage.unrecorded_below = generation;
                    break;
                }
                // A claim always resumes from an older generation; anything else is not a
                // chain this code wrote, and following it could loop.
                Some(&base) if base == 0 || generation_of(base) >= generation => break,
                Some(&base) => epoch = base,
            }
        }
        lineage
    }

    /// Whether a row written at `epoch` is part of the checkpoint's state.
    pub fn admits(&self, epoch: u64) -> bool {
        let generation = generation_of(epoch);
        if generation < self.unrecorded_below {
            return epoch <= self.checkpoint_epoch;
        }
        self.generations
            .iter()
            .zip(&self.limits)
            .any(|(g, limit)| *g == generation && epoch <= *limit)
    }

    /// [`Lineage::admits`] as a SQL condition on `epoch`, to bind with [`Lineage::bind`].
    pub const CONDITION: &str = lineage_condition!();

    /// `query` with [`Lineage::CONDITION`]'s values bound.
    pub fn bind(&self, query: crate::Query) -> crate::Query {
        query
            .bind(self.unrecorded_below)
            .bind(self.checkpoint_epoch)
            .bind(&self.generations)
            .bind(&self.limits)
    }
}

impl Endpoint {
    /// The lineage of `task`'s checkpoint at `checkpoint_epoch`.
    pub async fn lineage(
        &self,
        task: &str,
        checkpoint_epoch: u64,
    ) -> Result<Lineage, ClickHouseError> {
        let claims: Vec<ConfirmedClaim> = self
            .query(
                "SELECT generation, min(base_epoch) AS base_epoch FROM task_claims \
                 WHERE task = ? AND confirmed = 1 GROUP BY generation",
            )
            .bind(task)
            .fetch_all()
            .await?;
        let bases = claims
            .into_iter()
            .map(|claim| (claim.generation, claim.base_epoch))
            .collect();
        Ok(Lineage::trace(&bases, checkpoint_epoch))
    }

    /// The highest generation claimed of each of `tasks` (tasks never claimed are absent),
    /// each asked of its home shard's writer (ADR 0022). An owner whose generation is below
    /// its task's has been superseded: what it writes counts nowhere (ADR 0014), so it must
    /// restore before it goes on.
    pub async fn latest_generations(
        &self,
        tasks: &[String],
    ) -> Result<HashMap<String, u64>, ClickHouseError> {
        let mut per_shard: Vec<Vec<&String>> = vec![Vec::new(); self.shard_count()];
        for task in tasks {
            per_shard[self.home_shard_of_task(task)].push(task);
        }
        let mut latest = HashMap::with_capacity(tasks.len());
        for (shard, tasks) in per_shard.iter().enumerate() {
            if tasks.is_empty() {
                continue;
            }
            let rows: Vec<(String, u64)> = self
                .shard_writer(shard)
                .query(
                    "SELECT task, max(generation) FROM task_claims WHERE has(?, task) GROUP BY task",
                )
                .bind(tasks)
                .fetch_all()
                .await?;
            latest.extend(rows);
        }
        Ok(latest)
    }

    /// Claims for `owner` a generation of `task` no other owner holds, resuming from the
    /// checkpoint at `base_epoch`; its flushes are then the epochs from `generation << 32`.
    /// Two owners claiming together both see the other's claim and try the next generation,
    /// so at most one of them keeps any generation.
    pub async fn claim_generation(
        &self,
        task: &str,
        base_epoch: u64,
        owner: &str,
    ) -> Result<u64, ClickHouseError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let highest: u64 = self
                .query("SELECT max(generation) FROM task_claims WHERE task = ?")
                .bind(task)
                .fetch_one()
                .await?;
            let mut claim = ClaimRecord {
                task: task.to_string(),
                generation: highest.max(generation_of(base_epoch)) + 1,
                base_epoch,
                owner: owner.to_string(),
                nonce: rand::random(),
                confirmed: 0,
                claimed_at_ms: salestalk_operators::time::now_ms() as i64,
            };
            self.insert_rows::<ClaimRecord>("task_claims", std::slice::from_ref(&claim))
                .await?;
            let nonces: Vec<u64> = self
                .query("SELECT nonce FROM task_claims WHERE task = ? AND generation = ?")
                .bind(task)
                .bind(claim.generation)
                .fetch_all()
                .await?;
            if nonces == [claim.nonce] {
                claim.confirmed = 1;
                self.insert_rows::<ClaimRecord>("task_claims", std::slice::from_ref(&claim))
                    .await?;
                // The chain this generation continues, for the views (`task_lineage`): fixed
                // once confirmed, since it names only confirmed claims of older generations.
                let lineage = self.lineage(task, base_epoch).await?;
                self.record_lineage(task, claim.generation, &lineage)
                    .await?;
                return Ok(claim.generation);
            }
        }
        Err(ClickHouseError::Contended(format!(
            "{CLAIM_ATTEMPTS} generations of task {task} were claimed by other owners at the same moment"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << GENERATION_SHIFT;

    #[test]
    fn the_sql_condition_takes_generations_as_generation_sql_does() {
        // The condition is a literal (the restore query is a constant): kept in step here.
        assert!(Lineage::CONDITION.contains(&generation_sql("epoch")));
    }

    #[test]
    fn a_fresh_task_admits_its_own_generation_only() {
        let bases = BTreeMap::from([(1, 0)]);
        let lineage = Lineage::trace(&bases, G + 5);
        assert!(lineage.admits(G + 1) && lineage.admits(G + 5));
        assert!(!lineage.admits(G + 6), "after the checkpoint");
        assert!(!lineage.admits(3), "generation 0 never led here");
    }

    #[test]
    fn a_zombie_s_writes_after_its_successor_resumed_are_outside_the_lineage() {
        // Generation 1 flushed up to epoch G+4; generation 2 resumed from G+4, then the
        // stalled owner of generation 1 woke and flushed G+5 and G+6.
        let bases = BTreeMap::from([(1, 0), (2, G + 4)]);
        let lineage = Lineage::trace(&bases, 2 * G + 3);
        assert_eq!(lineage.generations, vec![2, 1]);
        assert!(lineage.admits(G + 4) && lineage.admits(2 * G + 3));
        assert!(!lineage.admits(G + 5) && !lineage.admits(G + 6));
        assert!(!lineage.admits(2 * G + 4));
    }

    #[test]
    fn a_generation_claimed_but_abandoned_is_outside_the_lineage() {
        // Generation 2 resumed from G+4 and stalled at once; generation 3 resumed from G+4 too.
        let bases = BTreeMap::from([(1, 0), (2, G + 4), (3, G + 4)]);
        let lineage = Lineage::trace(&bases, 3 * G + 2);
        assert_eq!(lineage.generations, vec![3, 1]);
        assert!(!lineage.admits(2 * G + 1));
        assert!(lineage.admits(G + 2) && lineage.admits(3 * G + 2));
    }

    #[test]
    fn generations_from_before_claims_count_up_to_the_checkpoint() {
        // Generations 0 and 1 were written before claims; 2 is the first claimed.
        let bases = BTreeMap::from([(2, G + 9)]);
        let lineage = Lineage::trace(&bases, 2 * G + 1);
        assert_eq!(lineage.unrecorded_below, 1);
        assert!(lineage.admits(7) && lineage.admits(G + 9));
        assert!(!lineage.admits(G + 10), "generation 1's limit is known");
        let legacy = Lineage::trace(&BTreeMap::new(), G + 3);
        assert!(legacy.admits(5) && legacy.admits(G + 3) && !legacy.admits(G + 4));
    }

    #[test]
    fn a_chain_that_does_not_go_back_in_time_stops() {
        let bases = BTreeMap::from([(2, 2 * G + 1)]);
        let lineage = Lineage::trace(&bases, 2 * G + 5);
        assert_eq!(lineage.generations, vec![2]);
    }
}
