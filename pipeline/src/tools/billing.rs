//! The billing export: one CSV row per tenant for a calendar month, from the public views.
//! Shared by `salestalk billing export` and any page that offers the same file.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::NaiveDate;
use salestalk_store::billing::{Month, OpenCorrections, TenantMonth, usd_cents, usd_exact};
use salestalk_store::{ClickHouseError, Endpoint};

/// The export's columns, in order.
pub const COLUMNS: [&str; 10] = [
    "month",
    "tenant_id",
    "messages",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "billed_usd",
    "may_change",
    "final_from",
];

/// A month's rows and whether each may still change.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingMonth {
    /// The month.
    pub month: Month,
    /// One row per tenant.
    pub rows: Vec<TenantMonth>,
    /// The first day no late event of the month is accepted any more: the day after the month
    /// plus the correction horizon (`corrections.horizon_ms`, rounded up to whole days).
    pub final_from: NaiveDate,
    /// Tenants with late events waiting for a correction or days never checked in the month.
    pub open: BTreeMap<String, OpenCorrections>,
    /// Today (UTC).
    pub today: NaiveDate,
}

impl BillingMonth {
    /// `month` of every tenant, or of `only` these, as the views hold it now; `horizon_ms`
    /// is `corrections.horizon_ms`.
    pub async fn read(
        endpoint: &Endpoint,
        month: Month,
        only: Option<&[String]>,
        horizon_ms: i64,
    ) -> Result<Self, ClickHouseError> {
        let rows = endpoint.tenant_months(month, only).await?;
        let open = endpoint
            .open_corrections(month, only)
            .await?
            .into_iter()
            .map(|o| (o.tenant_id.clone(), o))
            .collect();
        let horizon_days = (horizon_ms.max(0) as u64).div_ceil(86_400_000);
        Ok(Self {
            month,
            rows,
            final_from: month
                .next_first_day()
                .checked_add_days(chrono::Days::new(horizon_days))
                .unwrap_or(NaiveDate::MAX),
            open,
            today: chrono::Utc::now().date_naive(),
        })
    }

    /// Whether `tenant`'s row may still change: a late event of the month may still arrive,
    /// or a correction of one of its days is still to come.
    pub fn may_change(&self, tenant: &str) -> bool {
        self.today < self.final_from || self.open.contains_key(tenant)
    }
}

/// Writes `month` as CSV with a header: `cost_usd` exact to the nanodollar, `billed_usd` that
/// cost rounded half away from zero to the cent, and whether the row may still change (late
/// events and corrections, ADR 0016) and from which day on it no longer takes late events.
pub fn write_csv(month: &BillingMonth, out: impl Write) -> csv::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(COLUMNS)?;
    let final_from = month.final_from.to_string();
    let name = month.month.to_string();
    for row in &month.rows {
        writer.write_record([
            name.as_str(),
            &spreadsheet_safe(&row.tenant_id),
            &row.messages.to_string(),
            &row.prompt_tokens.to_string(),
            &row.completion_tokens.to_string(),
            &row.total_tokens.to_string(),
            &usd_exact(row.cost_nanos),
            &usd_cents(row.billed_cents()),
            if month.may_change(&row.tenant_id) {
                "true"
            } else {
                "false"
            },
            &final_from,
        ])?;
    }
    writer.flush()?;
    Ok(())
}

/// `text` as a cell a spreadsheet shows and never evaluates: a cell starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return is a formula to Excel and its kin (OWASP's "CSV
/// injection"), so it is prefixed with `'`. Only tenant ids are text here, and they come from
/// the network.
fn spreadsheet_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_quoted_when_needed_and_amounts_are_exact() {
        let rows = [
            TenantMonth {
                tenant_id: "tenant-a".into(),
                messages: 2,
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
                cost_nanos: 21_700_000,
            },
            TenantMonth {
                tenant_id: "acme, \"inc\"".into(),
                messages: 1,
                prompt_tokens: 1,
                completion_tokens: 1,
                total_tokens: 2,
                cost_nanos: 4_999_999,
            },
        ];
        let month: Month = "2026-11".parse().expect("month");
        let mut billing = BillingMonth {
            month,
            rows: rows.to_vec(),
            final_from: "2026-12-08".parse().expect("day"),
            open: BTreeMap::new(),
            today: "2026-12-08".parse().expect("day"),
        };
        billing.open.insert(
            "tenant-a".into(),
            OpenCorrections {
                tenant_id: "tenant-a".into(),
                pending_late: 2,
                unchecked_days: 0,
            },
        );
        let mut out = Vec::new();
        write_csv(&billing, &mut out).expect("written");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "month,tenant_id,messages,prompt_tokens,completion_tokens,total_tokens,cost_usd,billed_usd,may_change,final_from\n\
             2026-11,tenant-a,2,10,5,15,0.021700000,0.02,true,2026-12-08\n\
             2026-11,\"acme, \"\"inc\"\"\",1,1,1,2,0.004999999,0.00,false,2026-12-08\n"
        );
        for formula in ["=HYPERLINK(\"x\")", "+1", "-1+1", "@SUM(A1)", "\tx", "\rx"] {
            billing.rows[1].tenant_id = formula.into();
            let mut out = Vec::new();
            write_csv(&billing, &mut out).expect("written");
            let text = String::from_utf8(out).expect("utf-8");
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let cells: Vec<String> = reader
                .records()
                .map(|r| r.expect("record")[1].to_string())
                .collect();
            assert_eq!(cells, ["tenant-a".to_string(), format!("'{formula}")]);
        }
        // Before the horizon has passed, any row may still change.
        billing.today = "2026-12-07".parse().expect("day");
        assert!(billing.may_change("acme, \"inc\""));
    }
}
