//! A mergeable latency histogram with a stated relative error, readable from SQL.
//!
//! Values are grouped into logarithmic buckets: bucket `i ≥ 1` holds `(γ^(i-1), γ^i]` with
//! `γ = 1.02`, bucket 0 holds everything up to 1. Reporting a bucket by the value
//! `2γ^i / (γ + 1)` is off by at most `(γ - 1) / (γ + 1)`, under 1 %, from any value in it
//! (the DDSketch mapping). Histograms merge by adding counts per bucket, so percentiles can be
//! read for any set of windows, tenants or consumers, and across instances, without ever
//! averaging percentiles. ClickHouse merges them with `sumMap` and reads percentiles with the
//! same formula (see `sinks`).

/// Bucket growth factor γ.
pub const GAMMA: f64 = 1.02;

/// Largest relative error of a reported percentile: `(γ - 1) / (γ + 1)`.
pub const RELATIVE_ERROR: f64 = (GAMMA - 1.0) / (GAMMA + 1.0);

/// Highest bucket index; larger values (beyond about 10^17) are clamped into it.
pub const MAX_BUCKET: i16 = 2_000;

/// Counts per logarithmic bucket.
///
/// A window row's histogram holds a handful of buckets, so they are a vector sorted by bucket
/// (16 bytes each) rather than a B-tree (a 128-byte node for the first one); at most
/// `MAX_BUCKET + 1` of them, so an insertion stays cheap whatever the values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogHistogram {
    buckets: Vec<(i16, u64)>,
}

/// The bucket a non-negative value falls in.
pub fn bucket_of(value: f64) -> i16 {
    if value.is_nan() || value <= 1.0 {
        return 0;
    }
    let index = (value.ln() / GAMMA.ln()).ceil();
    if index >= f64::from(MAX_BUCKET) {
        MAX_BUCKET
    } else {
        index as i16
    }
}

/// The value reported for a bucket.
pub fn bucket_value(bucket: i16) -> f64 {
    if bucket <= 0 {
        0.0
    } else {
        2.0 * GAMMA.powi(i32::from(bucket)) / (GAMMA + 1.0)
    }
}

impl LogHistogram {
    /// Adds `count` to `bucket`, keeping the buckets sorted.
    fn add(&mut self, bucket: i16, count: u64) {
        match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(at) => self.buckets[at].1 += count,
            Err(at) => self.buckets.insert(at, (bucket, count)),
        }
    }

    /// Counts one value.
    pub fn record(&mut self, value: f64) {
        self.add(bucket_of(value), 1);
    }

    /// Counts `count` values of `value`.
    pub fn record_n(&mut self, value: f64, count: u64) {
        if count > 0 {
            self.add(bucket_of(value), count);
        }
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Self) {
        for &(bucket, count) in &other.buckets {
            self.add(bucket, count);
        }
    }

    /// Number of values counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, count)| count).sum()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The `q`-quantile (0 < q ≤ 1) by nearest rank: the reported value of the first bucket
    /// whose cumulative count reaches `ceil(q · n)`. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for &(bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(bucket_value(bucket));
            }
        }
        None
    }

    /// Buckets and counts in bucket order, as stored in ClickHouse.
    pub fn to_arrays(&self) -> (Vec<i16>, Vec<u64>) {
        self.buckets.iter().copied().unzip()
    }

    /// Rebuilds a histogram from stored arrays (pairs beyond the shorter array are ignored).
    pub fn from_arrays(buckets: &[i16], counts: &[u64]) -> Self {
        let mut histogram = Self::default();
        for (&bucket, &count) in buckets.iter().zip(counts) {
            histogram.add(bucket, count);
        }
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_reported_within_the_stated_error() {
        let mut value = 1.0001;
        while value < 1e12 {
            let reported = bucket_value(bucket_of(value));
            let error = (reported - value).abs() / value;
            assert!(
                error <= RELATIVE_ERROR + 1e-12,
                "{value}: reported {reported}"
            );
            value *= 1.003;
        }
    }

    #[test]
    fn small_values_land_in_bucket_zero() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(1.0), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_value(0), 0.0);
    }

    #[test]
    fn huge_values_are_clamped() {
        assert_eq!(bucket_of(1e300), MAX_BUCKET);
    }

    #[test]
    fn quantiles_match_exact_nearest_rank_within_the_error() {
        let values: Vec<f64> = (1..=10_000).map(|i| f64::from(i) * 1.7).collect();
        let mut histogram = LogHistogram::default();
        values.iter().for_each(|v| histogram.record(*v));
        for q in [0.5, 0.95, 0.99, 1.0] {
            let exact = values[(q * values.len() as f64).ceil() as usize - 1];
            let estimate = histogram.quantile(q).expect("not empty");
            assert!(
                (estimate - exact).abs() / exact <= RELATIVE_ERROR + 1e-12,
                "q={q}: {estimate} vs {exact}"
            );
        }
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (
            LogHistogram::default(),
            LogHistogram::default(),
            LogHistogram::default(),
        );
        for i in 0..1000 {
            let v = f64::from(i * i % 9973);
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        let (buckets, counts) = all.to_arrays();
        assert_eq!(LogHistogram::from_arrays(&buckets, &counts), all);
    }

    #[test]
    fn empty_histograms_have_no_quantiles() {
        assert_eq!(LogHistogram::default().quantile(0.5), None);
    }
}
