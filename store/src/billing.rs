//! Billing's monthly rollup: AI cost and tokens per tenant for one calendar month, read from
//! the public `tenant_cost_daily` view (deduplicated `narrative.generated` facts only). Costs
//! stay in integer nanodollars until the one rounding to cents, so a bill is exact to the cent.

use chrono::{Datelike, NaiveDate};
use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::endpoint::{ClickHouseError, Endpoint};

/// A calendar month, as billing names it (`YYYY-MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    first_day: NaiveDate,
}

impl Month {
    /// The month that holds `day`.
    pub fn of(day: NaiveDate) -> Self {
        Self {
            first_day: day.with_day(1).unwrap_or(day),
        }
    }

    /// Its first day.
    pub fn first_day(&self) -> NaiveDate {
        self.first_day
    }

    /// The first day of the following month.
    pub fn next_first_day(&self) -> NaiveDate {
        self.first_day
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDate::MAX)
    }
}

impl std::str::FromStr for Month {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || format!("'{text}' is not a month: expected YYYY-MM, e.g. 2026-11");
        let (year, month) = text.split_once('-').ok_or_else(wrong)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(wrong());
        }
        let year: i32 = year.parse().map_err(|_| wrong())?;
        let month: u32 = month.parse().map_err(|_| wrong())?;
        NaiveDate::from_ymd_opt(year, month, 1)
            .map(Self::of)
            .ok_or_else(wrong)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.first_day.format("%Y-%m"))
    }
}

/// One tenant's month.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct TenantMonth {
    /// Tenant.
    pub tenant_id: String,
    /// Narratives generated (each carries one cost).
    pub messages: u64,
    /// Sum of `tokenUsage.promptTokens`.
    pub prompt_tokens: u64,
    /// Sum of `tokenUsage.completionTokens`.
    pub completion_tokens: u64,
    /// Sum of `tokenUsage.totalTokens`.
    pub total_tokens: u64,
    /// Sum of `cost.amountUSD`, in nanodollars (exact).
    pub cost_nanos: i64,
}

impl TenantMonth {
    /// The cost rounded to whole cents, half away from zero (the amount billed).
    pub fn billed_cents(&self) -> i64 {
        cents(self.cost_nanos)
    }
}

/// Nanodollars rounded to whole cents, half away from zero.
pub fn cents(nanos: i64) -> i64 {
    const NANOS_PER_CENT: i64 = 10_000_000;
    let whole = nanos / NANOS_PER_CENT;
    let rest = nanos % NANOS_PER_CENT;
    if rest.abs() * 2 >= NANOS_PER_CENT {
        whole + rest.signum()
    } else {
        whole
    }
}

/// Nanodollars as a decimal USD amount with all nine places (`-0.000000001`, `12.500000000`).
pub fn usd_exact(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

/// Cents as a decimal USD amount with two places.
pub fn usd_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// What may still change a tenant's month: late events not yet counted by a correction, and
/// days with events that no check has looked at yet (copies counted twice are found there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Row, Deserialize)]
pub struct OpenCorrections {
    /// Tenant.
    pub tenant_id: String,
    /// Late events of the month waiting for their day's correction.
    pub pending_late: u64,
    /// Days of the month with events that were never checked.
    pub unchecked_days: u64,
}

impl Endpoint {
    /// Per tenant with anything open in `month` (ADR 0016), or of `only` these tenants.
    pub async fn open_corrections(
        &self,
        month: Month,
        only: Option<&[String]>,
    ) -> Result<Vec<OpenCorrections>, ClickHouseError> {
        let sql = format!(
            "SELECT tenant_id, toUInt64(sum(late)) AS pending_late, toUInt64(sum(unchecked)) AS unchecked_days \
             FROM (SELECT tenant_id, pending AS late, toUInt64(0) AS unchecked FROM late_events_pending \
             WHERE day >= toDate(?) AND day < toDate(?) \
             UNION ALL SELECT tenant_id, toUInt64(0) AS late, toUInt64(checked = 0) AS unchecked \
             FROM (SELECT tenant_id, day FROM metrics_volume_daily \
             WHERE day >= toDate(?) AND day < toDate(?) \
             GROUP BY tenant_id, day) AS live \
             ANY LEFT JOIN (SELECT tenant_id, day, toUInt8(1) AS checked FROM corrections \
             GROUP BY tenant_id, day) AS checks USING (tenant_id, day)) \
             WHERE late > 0 OR unchecked > 0{} GROUP BY tenant_id ORDER BY tenant_id",
            if only.is_some() {
                " AND has(?, tenant_id)"
            } else {
                ""
            }
        );
        let (first, next) = (
            month.first_day().to_string(),
            month.next_first_day().to_string(),
        );
        let mut query = self
            .query(&sql)
            .bind(&first)
            .bind(&next)
            .bind(&first)
            .bind(&next);
        if let Some(tenants) = only {
            query = query.bind(tenants);
        }
        query.fetch_all().await
    }

    /// The cost and tokens in `month` of every tenant, or of `only` these, by tenant (the
    /// condition is in the query: a reader's CSV never holds another tenant's row).
    pub async fn tenant_months(
        &self,
        month: Month,
        only: Option<&[String]>,
    ) -> Result<Vec<TenantMonth>, ClickHouseError> {
        let sql = format!(
            "SELECT tenant_id, toUInt64(sum(messages)) AS messages, \
             toUInt64(sum(prompt_tokens)) AS prompt_tokens, \
             toUInt64(sum(completion_tokens)) AS completion_tokens, \
             toUInt64(sum(total_tokens)) AS total_tokens, \
             toInt64(sum(cost_nanos)) AS cost_nanos \
             FROM tenant_cost_daily WHERE day >= toDate(?) AND day < toDate(?){} \
             GROUP BY tenant_id ORDER BY tenant_id",
            if only.is_some() {
                " AND has(?, tenant_id)"
            } else {
                ""
            }
        );
        let mut query = self
            .query(&sql)
            .bind(month.first_day().to_string())
            .bind(month.next_first_day().to_string());
        if let Some(tenants) = only {
            query = query.bind(tenants);
        }
        query.fetch_all().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly_and_know_their_bounds() {
        let month: Month = "2026-12".parse().expect("a month");
        assert_eq!(month.to_string(), "2026-12");
        assert_eq!(month.first_day().to_string(), "2026-12-01");
        assert_eq!(month.next_first_day().to_string(), "2027-01-01");
        for bad in [
            "2026-13",
            "2026-1",
            "26-11",
            "2026/11",
            "",
            "2026-11-01",
            "abcd-ef",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn cents_round_half_away_from_zero() {
        assert_eq!(cents(0), 0);
        assert_eq!(cents(4_999_999), 0);
        assert_eq!(cents(5_000_000), 1);
        assert_eq!(cents(14_999_999), 1);
        assert_eq!(cents(15_000_000), 2);
        assert_eq!(cents(-5_000_000), -1);
        assert_eq!(cents(-4_999_999), 0);
        assert_eq!(cents(123_456_789_012), 12_346);
    }

    #[test]
    fn amounts_print_every_place() {
        assert_eq!(usd_exact(0), "0.000000000");
        assert_eq!(usd_exact(21_700_000), "0.021700000");
        assert_eq!(usd_exact(12_500_000_001), "12.500000001");
        assert_eq!(usd_exact(-1), "-0.000000001");
        assert_eq!(usd_cents(12_346), "123.46");
        assert_eq!(usd_cents(5), "0.05");
        assert_eq!(usd_cents(-5), "-0.05");
    }
}
