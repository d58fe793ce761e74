//! The product page: conversations, engagement, intents per tenant, quality and hallucination
//! rate per model, tenants onboarded ("tenant tracking") and metric ingestion, by event time.

use super::*;

/// The product dashboard.
pub(super) fn product() -> Dashboard {
    let time = bucket("window_start");
    Dashboard {
        id: "product",
        title: "SalesTalk product: engagement and quality",
        panels: vec![
            panel(
                "conversations",
                "Conversations completed",
                Chart::Timeseries,
                Unit::Count,
                format!(
                    "SELECT {time} AS time, 'conversations' AS series, toFloat64(sum(conversations)) AS value \
                     FROM {} GROUP BY time, series ORDER BY time",
                    rows(Family::Engagement, "conversations", Bucketed::Yes)
                ),
            ),
            table(
                "engagement",
                "Engagement",
                &[
                    ("completed", Unit::Count),
                    ("avg_duration_s", Unit::Seconds),
                    ("satisfaction", Unit::Number),
                    ("avg_response_ms", Unit::Milliseconds),
                    ("insights_saved", Unit::Count),
                    ("insights_shared", Unit::Count),
                    ("data_exported", Unit::Count),
                    ("follow_ups", Unit::Count),
                ],
                format!(
                    "SELECT toUInt64(sum(conversations)) AS completed, \
                     if(sum(conversations) = 0, 0, sum(duration_seconds_sum) / sum(conversations)) AS avg_duration_s, \
                     if(sum(rated) = 0, 0, (sum(rating_sum) + sum(satisfaction_sum)) / sum(rated)) AS satisfaction, \
                     if(sum(conversations) = 0, 0, sum(response_time_ms_sum) / sum(conversations)) AS avg_response_ms, \
                     toUInt64(sum(insight_saved)) AS insights_saved, toUInt64(sum(insight_shared)) AS insights_shared, \
                     toUInt64(sum(data_exported)) AS data_exported, toUInt64(sum(follow_up_created)) AS follow_ups \
                     FROM {}",
                    rows(
                        Family::Engagement,
                        "conversations, duration_seconds_sum, rated, rating_sum, satisfaction_sum, \
                         response_time_ms_sum, \
                         insight_saved, insight_shared, data_exported, follow_up_created",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "intents",
                "Intents per tenant",
                &[
                    ("tenant_id", Unit::Text),
                    ("intent", Unit::Text),
                    ("classified", Unit::Count),
                    ("avg_confidence", Unit::Number),
                    ("low_confidence_share", Unit::Share),
                ],
                format!(
                    "SELECT tenant_id, intent, toUInt64(sum(classifications)) AS classified, \
                     sum(confidence_sum) / sum(classifications) AS avg_confidence, \
                     sum(low_confidence) / sum(classifications) AS low_confidence_share \
                     FROM {} \
                     GROUP BY tenant_id, intent ORDER BY classified DESC, tenant_id, intent LIMIT 50",
                    rows(
                        Family::Intents,
                        "intent, classifications, confidence_sum, low_confidence",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "quality",
                "Quality per model",
                &[
                    ("model", Unit::Text),
                    ("generated", Unit::Count),
                    ("hallucination_rate", Unit::Share),
                    ("facts_verified_share", Unit::Share),
                    ("mean_confidence", Unit::Number),
                    ("total_tokens", Unit::Count),
                ],
                format!(
                    "SELECT model, toUInt64(sum(narratives)) AS generated, \
                     {HALLUCINATION_RATE} AS hallucination_rate, \
                     if(sum(facts_total) = 0, 0, sum(facts_verified) / sum(facts_total)) AS facts_verified_share, \
                     if(sum(narratives) = sum(confidence_unknown), 0, \
                     sum(confidence_sum) / (sum(narratives) - sum(confidence_unknown))) AS mean_confidence, \
                     toUInt64(sum(total_tokens)) AS total_tokens \
                     FROM {} GROUP BY model ORDER BY generated DESC, model",
                    rows(
                        Family::Quality,
                        "model, narratives, hallucinations, hallucination_unknown, facts_verified, \
                         facts_total, confidence_sum, confidence_unknown, total_tokens",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "onboarding",
                "Tenants onboarded by plan and region",
                &[
                    ("plan", Unit::Text),
                    ("region", Unit::Text),
                    ("onboarded", Unit::Count),
                    ("seeded_with_samples", Unit::Count),
                    ("avg_provisioning_ms", Unit::Milliseconds),
                ],
                format!(
                    "SELECT plan, region, toUInt64(sum(tenants)) AS onboarded, \
                     toUInt64(sum(sample_data_seeded)) AS seeded_with_samples, \
                     if(sum(tenants) = 0, 0, sum(provisioning_ms_sum) / sum(tenants)) \
                     AS avg_provisioning_ms \
                     FROM {} GROUP BY plan, region ORDER BY onboarded DESC, plan, region",
                    rows(
                        Family::Onboarding,
                        "plan, region, tenants, sample_data_seeded, provisioning_ms_sum",
                        Bucketed::No
                    )
                ),
            ),
            table(
                "ingestion",
                "Metric ingestion by source",
                &[
                    ("source", Unit::Text),
                    ("uploads", Unit::Count),
                    ("records_in", Unit::Count),
                    ("valid", Unit::Count),
                    ("invalid", Unit::Count),
                    ("invalid_share", Unit::Share),
                    ("with_warnings", Unit::Count),
                    ("avg_processing_ms", Unit::Milliseconds),
                ],
                format!(
                    "SELECT source, toUInt64(sum(batches)) AS uploads, \
                     toUInt64(sum(records)) AS records_in, \
                     toUInt64(sum(valid_records)) AS valid, \
                     toUInt64(sum(invalid_records)) AS invalid, \
                     if(sum(valid_records) + sum(invalid_records) = 0, 0, \
                     sum(invalid_records) / (sum(valid_records) + sum(invalid_records))) \
                     AS invalid_share, toUInt64(sum(warnings)) AS with_warnings, \
                     if(sum(batches) = 0, 0, sum(processing_ms_sum) / sum(batches)) \
                     AS avg_processing_ms \
                     FROM {} GROUP BY source ORDER BY records_in DESC, source",
                    rows(
                        Family::Ingestion,
                        "source, batches, records, valid_records, invalid_records, warnings, \
                         processing_ms_sum",
                        Bucketed::No
                    )
                ),
            ),
            panel(
                "hallucination_rate",
                "Hallucination rate by model",
                Chart::Timeseries,
                Unit::Share,
                format!(
                    "SELECT {time} AS time, model AS series, \
                     {HALLUCINATION_RATE} AS value \
                     FROM {} GROUP BY time, series ORDER BY time, series",
                    rows(
                        Family::Quality,
                        "model, narratives, hallucinations, hallucination_unknown",
                        Bucketed::Yes
                    )
                ),
            ),
        ],
    }
}

/// Hallucinations over the narratives that reported whether they hallucinated (one that did
/// not is accepted with a contract warning and counted in `hallucination_unknown`).
const HALLUCINATION_RATE: &str = "if(sum(narratives) = sum(hallucination_unknown), 0, \
     sum(hallucinations) / (sum(narratives) - sum(hallucination_unknown)))";
