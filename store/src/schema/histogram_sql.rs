//! How SQL reads a latency histogram (`salestalk_operators::histogram`): the value a bucket
//! stands for and a quantile of merged buckets, the same arithmetic as the Rust side (ADR 0010).

use salestalk_operators::histogram::GAMMA;

/// SQL for the value a histogram bucket reports (see `salestalk_operators::histogram`).
pub fn bucket_value_sql(bucket: &str) -> String {
    format!(
        "if({bucket} <= 0, 0, 2 * pow({GAMMA}, {bucket}) / {})",
        GAMMA + 1.0
    )
}

/// SQL for the `q`-quantile of a merged histogram given as `(buckets, counts)` arrays.
pub fn quantile_sql(buckets: &str, counts: &str, q: f64) -> String {
    let index =
        format!("arrayFirstIndex(c -> c >= ceil({q} * arraySum({counts})), arrayCumSum({counts}))");
    format!(
        "if(arraySum({counts}) = 0, nan, {})",
        bucket_value_sql(&format!("arrayElement({buckets}, {index})"))
    )
}
