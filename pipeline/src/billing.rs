//! The billing export: one CSV row per tenant for a calendar month, from the public views.
//! Shared by `salestalk billing export` and any page that offers the same file.

use std::io::Write;

use salestalk_store::billing::{Month, TenantMonth, usd_cents, usd_exact};

/// The export's columns, in order.
pub const COLUMNS: [&str; 8] = [
    "month",
    "tenant_id",
    "messages",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "billed_usd",
];

/// Writes `rows` as CSV with a header: `cost_usd` exact to the nanodollar, `billed_usd` that
/// cost rounded half away from zero to the cent.
pub fn write_csv(month: Month, rows: &[TenantMonth], out: impl Write) -> csv::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(COLUMNS)?;
    let month = month.to_string();
    for row in rows {
        writer.write_record([
            month.as_str(),
            &row.tenant_id,
            &row.messages.to_string(),
            &row.prompt_tokens.to_string(),
            &row.completion_tokens.to_string(),
            &row.total_tokens.to_string(),
            &usd_exact(row.cost_nanos),
            &usd_cents(row.billed_cents()),
        ])?;
    }
    writer.flush()?;
    Ok(())
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
        let mut out = Vec::new();
        write_csv("2026-11".parse().expect("month"), &rows, &mut out).expect("written");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "month,tenant_id,messages,prompt_tokens,completion_tokens,total_tokens,cost_usd,billed_usd\n\
             2026-11,tenant-a,2,10,5,15,0.021700000,0.02\n\
             2026-11,\"acme, \"\"inc\"\"\",1,1,1,2,0.004999999,0.00\n"
        );
    }
}
