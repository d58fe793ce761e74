//! Time in one place: the wall clock, the minute a millisecond falls in, the `DateTime`
//! seconds ClickHouse stores, and the flush epochs with their restore generations.
//!
//! The pipeline meets time in four encodings: Unix milliseconds as `i64` (event time, the
//! contract's `timestamp`), as `u64` (broker and wall-clock instants, never negative), Unix
//! seconds as `u32` (ClickHouse `DateTime` columns: minutes, days, `written_at`) and
//! `chrono::DateTime<Utc>` at the command line. Every conversion between them is a function
//! here, so "which minute is this" has one answer in the task, the sinks, the gateway and the
//! tests.

/// Milliseconds in a minute: the length of a base window.
pub const MINUTE_MS: i64 = 60_000;
/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
/// Seconds in a UTC day.
pub const DAY_S: i64 = 86_400;

/// The wall clock, Unix milliseconds (0 for a clock set before 1970).
pub fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// The wall clock, Unix seconds.
pub fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The wall clock as a ClickHouse `DateTime` (Unix seconds, clamped to its range).
pub fn now_datetime() -> u32 {
    datetime(now_s())
}

/// Unix seconds as a ClickHouse `DateTime`, clamped to `0..=u32::MAX` (1970 to 2106) rather
/// than wrapped: a bad instant stays at an end of the range instead of landing mid-range.
pub fn datetime(seconds: i64) -> u32 {
    seconds.clamp(0, i64::from(u32::MAX)) as u32
}

/// The start (Unix seconds) of the minute holding `at_ms` (Unix milliseconds). Floors toward
/// minus infinity, so an instant before 1970 lands in its own minute, not the next one.
pub fn minute_start(at_ms: i64) -> i64 {
    minute_index(at_ms) * 60
}

/// [`minute_start`] of a wall-clock or broker instant, as the `DateTime` a minute column holds.
pub fn minute_datetime(at_ms: u64) -> u32 {
    datetime(minute_start(i64::try_from(at_ms).unwrap_or(i64::MAX)))
}

/// Minutes since the Unix epoch of `at_ms`: what the dedup filter buckets sightings by.
pub fn minute_index(at_ms: i64) -> i64 {
    at_ms.div_euclid(MINUTE_MS)
}

/// Flush epochs. A task numbers its flushes; the high bits of the number count how often the
/// partition was restored (its generation), the low bits count one owner's flushes. A
/// restored owner starts at the next generation, so its rows outrank everything the previous
/// owner wrote, even an insert still in flight when it was killed (ADR 0014).
pub mod epoch {
    /// Bits of an epoch that count one owner's flushes; the bits above count restores.
    pub const GENERATION_SHIFT: u32 = 32;

    /// The generation `epoch` belongs to.
    pub fn generation_of(epoch: u64) -> u64 {
        epoch >> GENERATION_SHIFT
    }

    /// The first epoch of `generation`.
    pub fn generation_start(generation: u64) -> u64 {
        generation << GENERATION_SHIFT
    }

    /// The first epoch of the generation after `epoch`'s.
    pub fn next_generation(epoch: u64) -> u64 {
        generation_start(generation_of(epoch) + 1)
    }

    /// The lowest epoch a correction writes (ADR 0016); live epochs stay far below it (a
    /// generation per restore would need 2^31 restores of one task to reach it).
    pub const CORRECTION_EPOCH: u64 = 1 << 63;

    /// The epoch of a correction made at `corrected_at_ms`: later corrections of a day win.
    pub fn correction_epoch(corrected_at_ms: u64) -> u64 {
        CORRECTION_EPOCH | (corrected_at_ms & (CORRECTION_EPOCH - 1))
    }

    /// Whether `epoch` was written by a correction.
    pub fn is_correction(epoch: u64) -> bool {
        epoch >= CORRECTION_EPOCH
    }

    /// [`generation_of`] in SQL, of the `UInt64` expression `epoch`.
    pub fn generation_sql(epoch: &str) -> String {
        format!("intDiv({epoch}, {})", 1u64 << GENERATION_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::epoch::*;
    use super::*;

    #[test]
    fn a_minute_starts_at_its_floor_on_both_sides_of_1970() {
        assert_eq!(minute_start(0), 0);
        assert_eq!(minute_start(59_999), 0);
        assert_eq!(minute_start(60_000), 60);
        assert_eq!(minute_start(-1), -60);
        assert_eq!(minute_index(-60_000), -1);
        assert_eq!(minute_datetime(1_762_646_461_000), 1_762_646_460);
    }

    #[test]
    fn datetime_clamps_instead_of_wrapping() {
        assert_eq!(datetime(-5), 0);
        assert_eq!(datetime(i64::from(u32::MAX) + 5), u32::MAX);
        assert_eq!(datetime(1_762_646_400), 1_762_646_400);
        assert_eq!(minute_datetime(u64::MAX), u32::MAX);
    }

    #[test]
    fn generations_split_an_epoch() {
        let epoch = generation_start(3) + 9;
        assert_eq!(generation_of(epoch), 3);
        assert_eq!(next_generation(epoch), generation_start(4));
        assert_eq!(next_generation(0), 1 << 32);
        assert_eq!(generation_sql("epoch"), "intDiv(epoch, 4294967296)");
    }

    #[test]
    fn corrections_outrank_every_live_epoch_and_later_corrections_win() {
        // A task restored a billion times still writes below every correction.
        let mut live = 0;
        for _ in 0..1_000 {
            live = next_generation(live);
        }
        let far = generation_start(1 << 30);
        assert!(!is_correction(live) && !is_correction(far | 0xffff_ffff));
        let first = correction_epoch(1_764_806_400_000);
        let later = correction_epoch(1_764_806_400_001);
        assert!(is_correction(first) && later > first && first > far);
    }
}
