//! The billing page: AI cost per day, tenant, event type and model, to the cent, and message
//! costs reconciled against conversation totals.

use super::*;

/// The billing dashboard.
pub(super) fn billing() -> Dashboard {
    let days = "day >= toDate($__fromTime) AND day <= toDate($__toTime)";
    Dashboard {
        id: "billing",
        title: "SalesTalk billing: AI cost per tenant",
        panels: vec![
            panel(
                "daily_cost",
                "Cost per day (USD)",
                Chart::Timeseries,
                Unit::Usd,
                format!(
                    "SELECT toDateTime(day) AS time, 'cost' AS series, sum(cost_nanos) / 1e9 AS value \
                     FROM tenant_cost_daily WHERE {days} AND {TENANT} GROUP BY time, series ORDER BY time"
                ),
            ),
            panel(
                "top_tenants",
                "Top tenants by cost (USD)",
                Chart::Bar,
                Unit::Usd,
                format!(
                    "SELECT tenant_id AS label, sum(cost_nanos) / 1e9 AS value FROM tenant_cost_daily \
                     WHERE {days} AND {TENANT} GROUP BY label ORDER BY value DESC, label LIMIT 10"
                ),
            ),
            table(
                "tenants",
                "Cost and tokens per tenant",
                &[
                    ("tenant_id", Unit::Text),
                    ("messages", Unit::Count),
                    ("prompt_tokens", Unit::Count),
                    ("completion_tokens", Unit::Count),
                    ("total_tokens", Unit::Count),
                    ("cost_nanos", Unit::NanoUsd),
                ],
                format!(
                    "SELECT tenant_id, toUInt64(sum(messages)) AS messages, \
                     toUInt64(sum(prompt_tokens)) AS prompt_tokens, \
                     toUInt64(sum(completion_tokens)) AS completion_tokens, \
                     toUInt64(sum(total_tokens)) AS total_tokens, toInt64(sum(cost_nanos)) AS cost_nanos \
                     FROM tenant_cost_daily WHERE {days} AND {TENANT} \
                     GROUP BY tenant_id ORDER BY cost_nanos DESC, tenant_id"
                ),
            ),
            table(
                "by_model",
                "Cost per event type and model (only message costs are billed)",
                &[
                    ("event_type", Unit::Text),
                    ("model", Unit::Text),
                    ("billed", Unit::Text),
                    ("events", Unit::Count),
                    ("total_tokens", Unit::Count),
                    ("cost_nanos", Unit::NanoUsd),
                ],
                format!(
                    "SELECT event_type, model, billed, events, total_tokens, cost_nanos FROM (\
                     SELECT event_type, model, 'yes' AS billed, toUInt64(sum(messages)) AS events, \
                     toUInt64(sum(total_tokens)) AS total_tokens, toInt64(sum(cost_nanos)) AS cost_nanos \
                     FROM tenant_cost_daily WHERE {days} AND {TENANT} GROUP BY event_type, model \
                     UNION ALL \
                     SELECT 'conversation.completed' AS event_type, '' AS model, \
                     'no: a total of the messages above' AS billed, toUInt64(sum(conversations)) AS events, \
                     toUInt64(0) AS total_tokens, toInt64(sum(total_cost_nanos)) AS cost_nanos \
                     FROM {} HAVING events > 0) \
                     ORDER BY billed DESC, cost_nanos DESC, event_type, model",
                    rows(
                        Family::Engagement,
                        "conversations, total_cost_nanos",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "reconciliation",
                "Message costs against conversation totals, per day and tenant",
                &[
                    ("day", Unit::Text),
                    ("tenant_id", Unit::Text),
                    ("message_cost_nanos", Unit::NanoUsd),
                    ("conversation_total_nanos", Unit::NanoUsd),
                    ("difference_nanos", Unit::NanoUsd),
                ],
                format!(
                    "SELECT day, tenant_id, message_cost_nanos, conversation_total_nanos, \
                     difference_nanos FROM tenant_cost_reconciliation WHERE {days} AND {TENANT} \
                     ORDER BY abs(difference_nanos) DESC, day DESC, tenant_id LIMIT 100"
                ),
            ),
        ],
    }
}
