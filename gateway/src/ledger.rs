//! The gateway's ledger: what became of every entry it was given, counted per minute, tenant,
//! source and outcome, and the entries it refused for good, kept whole. Requests add to it
//! in memory; a background task stores it in ClickHouse every second (and once more at
//! shutdown), keeping what could not be stored for the next try. ClickHouse, not the broker,
//! holds it: a broker outage is when these counts matter most.
//!
//! Counts are operational, like the sinks' delivery outcomes: a crash loses at most the last
//! second's. Rows are bounded: a tenant's sources past its first `pipeline.max_sources_per_day`
//! of a UTC day count under `_overflow`, as in the pipeline's publish rows they are shown
//! beside. Memory is bounded: past [`MAX_KEYS`] distinct counters new ones fold into the
//! tenant's blank-source counter, and past [`MAX_PENDING_BYTES`] of refused entries waiting
//! for a ClickHouse that is down, further ones are counted but not kept (and logged).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use salestalk_contracts::OVERFLOW_VALUE;
use salestalk_operators::new_values::{NewValueBudget, SOURCE_FIELD};
use salestalk_operators::time::DAY_S;
use salestalk_sinks::clickhouse::ingest_ledger::{RefusedEntry, record_ingest};
use salestalk_store::Endpoint;
use salestalk_store::tables::ingest_outcomes::IngestOutcome;
use salestalk_store::tables::ingest_outcomes::OutcomeCount;

/// Distinct (minute, tenant, source, outcome) counters held before sources are folded.
pub const MAX_KEYS: usize = 100_000;
/// Bytes of refused entries held while they cannot be stored.
pub const MAX_PENDING_BYTES: usize = 64 << 20;
/// How often the ledger is stored.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

type Key = (i64, String, String, IngestOutcome);

#[derive(Debug, Default)]
struct Pending {
    counts: HashMap<Key, u64>,
    refused: Vec<RefusedEntry>,
    refused_bytes: usize,
    /// Refused entries not kept (memory bound reached), since the last write.
    not_kept: u64,
}

/// What the gateway has yet to store.
#[derive(Debug)]
pub struct Ledger {
    pending: Mutex<Pending>,
    /// Each tenant's sources of the day.
    sources: Mutex<NewValueBudget>,
}

impl Ledger {
    /// A ledger naming at most `max_sources_per_day` sources per tenant and UTC day.
    pub fn new(max_sources_per_day: usize) -> Self {
        Self {
            pending: Mutex::default(),
            sources: Mutex::new(NewValueBudget::new(max_sources_per_day)),
        }
    }

    /// Counts `entries` of `tenant` and `source` with `outcome`, submitted in the minute
    /// starting at `minute_s`.
    pub fn count(
        &self,
        minute_s: i64,
        tenant: &str,
        source: &str,
        outcome: IngestOutcome,
        entries: u64,
    ) {
        let admitted = self
            .sources
            .lock()
            .map(|mut budget| budget.admits(tenant, SOURCE_FIELD, minute_s, source))
            .unwrap_or(false);
        let source = if admitted { source } else { OVERFLOW_VALUE };
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let full = pending.counts.len() >= MAX_KEYS;
        let source = if full { "" } else { source };
        *pending
            .counts
            .entry((minute_s, tenant.to_string(), source.to_string(), outcome))
            .or_default() += entries;
    }

    /// Keeps `entry` until it is stored (unless too much already waits).
    pub fn refuse(&self, entry: RefusedEntry) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.refused_bytes + entry.letter.raw.len() > MAX_PENDING_BYTES {
            pending.not_kept += 1;
            return;
        }
        pending.refused_bytes += entry.letter.raw.len();
        pending.refused.push(entry);
    }

    /// Stores everything pending; on failure keeps it (merged with what came meanwhile).
    pub async fn write(&self, endpoint: &Endpoint) {
        let taken = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if let Ok(mut budget) = self.sources.lock() {
            // Yesterday's sources still count late requests of its last minutes.
            let now_s = (salestalk_operators::time::now_ms() / 1000) as i64;
            budget.forget_before(now_s - DAY_S);
        }
        if taken.not_kept > 0 {
            tracing::warn!(
                not_kept = taken.not_kept,
                "refused entries counted but not kept: ClickHouse has been unreachable and \
                 {MAX_PENDING_BYTES} bytes of them already wait"
            );
        }
        if taken.counts.is_empty() && taken.refused.is_empty() {
            return;
        }
        let counts: Vec<OutcomeCount> = taken
            .counts
            .iter()
            .map(
                |((minute_s, tenant, source, outcome), entries)| OutcomeCount {
                    minute_s: *minute_s,
                    tenant_id: tenant.clone(),
                    source: source.clone(),
                    outcome: *outcome,
                    entries: *entries,
                },
            )
            .collect();
        let now_ms = salestalk_operators::time::now_ms();
        if let Err(error) = record_ingest(endpoint, &counts, &taken.refused, now_ms).await {
            tracing::warn!(%error, "storing the gateway's outcomes; kept for the next try");
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            for (key, entries) in taken.counts {
                *pending.counts.entry(key).or_default() += entries;
            }
            // The dead letters may have been stored before the counts failed: a second write
            // of the same address replaces, not adds (ReplacingMergeTree).
            pending.refused_bytes += taken.refused_bytes;
            pending.refused.extend(taken.refused);
        }
    }

    /// Stores the ledger every [`WRITE_EVERY`] until `stop` resolves, then once more.
    pub async fn run(&self, endpoint: Endpoint, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut tick = tokio::time::interval(WRITE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.write(&endpoint).await,
                () = &mut stop => break,
            }
        }
        self.write(&endpoint).await;
    }

    #[cfg(test)]
    fn snapshot(&self) -> (usize, usize, u64) {
        let pending = self.pending.lock().expect("lock");
        (
            pending.counts.len(),
            pending.refused.len(),
            pending.not_kept,
        )
    }
}

#[cfg(test)]
mod tests {
    use salestalk_operators::DeadLetterAddress;
    use salestalk_operators::dead_letter::DeadLetterReason;
    use salestalk_operators::flush::{Address, DeadLetter, Readable, Rejection};

    use super::*;

    fn refused(bytes: usize) -> RefusedEntry {
        RefusedEntry {
            address: DeadLetterAddress::Unassigned {
                topic: "t".into(),
                id: 1,
            },
            letter: DeadLetter::new(
                Address {
                    offset: 1,
                    broker_ms: 0,
                },
                Readable {
                    tenant: "a",
                    ..Readable::default()
                },
                Rejection::at_once(DeadLetterReason::RejectedAtIngest, "TooLarge".into()),
                vec![b'x'; bytes],
            ),
        }
    }

    #[test]
    fn counts_add_up_per_key_and_refused_entries_are_bounded() {
        let ledger = Ledger::new(100);
        ledger.count(60, "a", "s", IngestOutcome::Accepted, 2);
        ledger.count(60, "a", "s", IngestOutcome::Accepted, 3);
        ledger.count(60, "a", "s", IngestOutcome::Throttled, 1);
        assert_eq!(ledger.snapshot().0, 2);
        ledger.refuse(refused(MAX_PENDING_BYTES - 10));
        ledger.refuse(refused(11));
        ledger.refuse(refused(10));
        assert_eq!(ledger.snapshot(), (2, 2, 1));
    }

    #[test]
    fn past_the_key_bound_sources_fold_into_the_blank_one() {
        let ledger = Ledger::new(100);
        for n in 0..MAX_KEYS {
            ledger.count(0, &n.to_string(), "s", IngestOutcome::Accepted, 1);
        }
        ledger.count(0, "a", "new", IngestOutcome::Accepted, 1);
        ledger.count(0, "a", "newer", IngestOutcome::Accepted, 1);
        assert_eq!(ledger.snapshot().0, MAX_KEYS + 1);
    }

    #[test]
    fn a_tenants_sources_past_the_days_budget_count_under_overflow() {
        let ledger = Ledger::new(3);
        for n in 0..10 {
            ledger.count(60, "a", &format!("svc-{n}"), IngestOutcome::Accepted, 1);
        }
        ledger.count(60, "b", "svc-9", IngestOutcome::Accepted, 1);
        ledger.count(DAY_S + 60, "a", "svc-9", IngestOutcome::Accepted, 1);
        let pending = ledger.pending.lock().expect("lock");
        let of = |tenant: &str, source: &str, minute: i64| {
            pending
                .counts
                .get(&(
                    minute,
                    tenant.into(),
                    source.into(),
                    IngestOutcome::Accepted,
                ))
                .copied()
        };
        assert_eq!(of("a", OVERFLOW_VALUE, 60), Some(7));
        assert_eq!(of("a", "svc-2", 60), Some(1));
        assert_eq!(of("b", "svc-9", 60), Some(1), "another tenant's own budget");
        assert_eq!(of("a", "svc-9", DAY_S + 60), Some(1), "a new day's");
        assert_eq!(pending.counts.len(), 6);
    }
}
