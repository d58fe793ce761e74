//! `[corrections]`: how far back a late event is still counted, and how often `salestalk run`
//! looks for days to correct (ADR 0016).

use salestalk_operators::time::DAY_MS;
use serde::Deserialize;

/// `[corrections]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct CorrectionSettings {
    /// How far before its broker time an event whose window is final may be stamped and still
    /// be counted (archived for the correction of its day); older ones are dead-lettered as
    /// `too_late`.
    pub horizon_ms: i64,
    /// How often `salestalk run` checks the past days that may need a correction, ms; 0: never
    /// (then only `salestalk replay run --backfill` corrects).
    pub interval_ms: u64,
}

impl CorrectionSettings {
    /// Every problem with these settings, each naming its key; `archive_days` is how long the
    /// archive keeps what a correction reads.
    pub fn problems(&self, archive_days: u32) -> Vec<String> {
        let mut problems = Vec::new();
        // A correction reads the whole day from the archive, which must still hold all of it.
        let most = (i64::from(archive_days) - 1).max(0) * DAY_MS;
        if !(0..=most).contains(&self.horizon_ms) {
            problems.push(format!(
                "corrections.horizon_ms: {} is outside 0..={most} (the archive keeps \
                 retention.archive_days = {archive_days} days, and a correction reads a whole day)",
                self.horizon_ms
            ));
        }
        if self.interval_ms != 0 && !(1_000..=DAY_MS as u64).contains(&self.interval_ms) {
            problems.push(format!(
                "corrections.interval_ms: {} is outside 1000..=86400000; 0 turns the corrector off",
                self.interval_ms
            ));
        }
        problems
    }

    /// Whether `salestalk run` corrects past days by itself.
    pub fn scheduled(&self) -> bool {
        self.interval_ms > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_must_fit_in_the_archive() {
        let ok = CorrectionSettings {
            horizon_ms: 7 * DAY_MS,
            interval_ms: 60_000,
        };
        assert!(ok.problems(90).is_empty());
        let problems = ok.problems(7);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("retention.archive_days = 7"));
        let bad = CorrectionSettings {
            horizon_ms: -1,
            interval_ms: 10,
        };
        assert_eq!(bad.problems(90).len(), 2);
    }
}

/// Everything the corrector (and a recomputation) is built from: the `[corrections]`
/// section and what it shares with the live pipeline, so a recomputed day is counted by the
/// same rules as the live one.
#[derive(Debug, Clone)]
pub struct CorrectorSettings {
    /// Where the archive, the window rows and the records of corrections are.
    pub endpoint: salestalk_store::Endpoint,
    /// `[corrections]`.
    pub corrections: CorrectionSettings,
    /// The live tasks' rules (lateness, clock skew, dedup, sizes).
    pub task: salestalk_operators::task::TaskSettings,
    /// The aggregates the graph runs (`graph.aggregates`).
    pub aggregates: Vec<&'static str>,
    /// Which events the metrics count (`[routing]`).
    pub routing: salestalk_operators::routing::RoutingSettings,
    /// Days the archive keeps (`retention.archive_days`).
    pub archive_days: u32,
}
