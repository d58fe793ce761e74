//! `narrative.generated.v1`: an AI narrative answered a user message. Carries the
//! per-message AI cost and token usage that billing is built from.

use crate::checker::{self as read, Checker, MAX_SAFE_INTEGER, Object};
use crate::enums::{AiProvider, Currency, Intent, Measure, Open, Subject};
use crate::limits::MAX_DATA_REFERENCES;

/// Payload of `narrative.generated.v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct NarrativeGenerated<'a> {
    /// `messageId` of the assistant message.
    pub message_id: &'a str,
    /// `conversationId`.
    pub conversation_id: &'a str,
    /// `userMessageId`: the message this answers.
    pub user_message_id: &'a str,
    /// `narrativeText`.
    pub narrative_text: &'a str,
    /// `classification` context.
    pub classification: NarrativeClassification<'a>,
    /// `dataReferences`.
    pub data_references: Vec<DataReference<'a>>,
    /// `aiModel`.
    pub ai_model: AiModel<'a>,
    /// `performance` timing breakdown (each part `None` when not given).
    pub performance: Performance,
    /// `tokenUsage` (each count `None` when not given).
    pub token_usage: TokenUsage,
    /// `cost`.
    pub cost: Cost,
    /// `qualityMetrics` (each result `None` when not given).
    pub quality: QualityMetrics,
}

/// The simplified classification a narrative carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NarrativeClassification<'a> {
    /// `intent` (open: new values are accepted).
    pub intent: Open<'a, Intent>,
    /// `subject` (open).
    pub subject: Open<'a, Subject>,
    /// `measure` (open).
    pub measure: Open<'a, Measure>,
}

/// One data point a narrative cites.
#[derive(Debug, Clone, PartialEq)]
pub struct DataReference<'a> {
    /// `metric`.
    pub metric: &'a str,
    /// `period`.
    pub period: &'a str,
    /// `value`.
    pub value: f64,
    /// `unit`.
    pub unit: &'a str,
}

/// The model that generated the narrative.
#[derive(Debug, Clone, PartialEq)]
pub struct AiModel<'a> {
    /// `provider` (open).
    pub provider: Open<'a, AiProvider>,
    /// `modelId`.
    pub model_id: &'a str,
    /// `temperature` in `[0, 1]`.
    pub temperature: f64,
    /// `maxTokens`, at least 1.
    pub max_tokens: u64,
}

/// Timing breakdown, in milliseconds. A part not given is `None` (accepted with a contract
/// warning: a narrative stays billable when its producer leaves a timing out).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Performance {
    /// `totalTimeMs`.
    pub total_ms: Option<f64>,
    /// `classificationMs`.
    pub classification_ms: Option<f64>,
    /// `dataRetrievalMs`.
    pub data_retrieval_ms: Option<f64>,
    /// `aiGenerationMs`.
    pub ai_generation_ms: Option<f64>,
    /// `validationMs`.
    pub validation_ms: Option<f64>,
}

/// Token consumption; a count not given is `None` (with a contract warning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// `promptTokens`.
    pub prompt: Option<u64>,
    /// `completionTokens`.
    pub completion: Option<u64>,
    /// `totalTokens`. Not checked against the sum: a mismatch is a data-quality signal.
    pub total: Option<u64>,
}

/// Estimated cost of the generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// `amountUSD`.
    pub amount_usd: f64,
    /// `currency`, if given (only `USD` exists).
    pub currency: Option<Currency>,
}

/// Quality and validation results; a result not given is `None` (with a contract warning).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QualityMetrics {
    /// `hallucinationDetected`.
    pub hallucination_detected: Option<bool>,
    /// `factsVerified`.
    pub facts_verified: Option<u64>,
    /// `factsTotal`.
    pub facts_total: Option<u64>,
    /// `confidenceScore` in `[0, 1]`.
    pub confidence_score: Option<f64>,
}

impl<'a> NarrativeGenerated<'a> {
    pub(crate) fn read(c: &mut Checker, data: &'a Object<'a>) -> Option<Self> {
        let message_id = c.required(data, "messageId", read::non_empty);
        let conversation_id = c.required(data, "conversationId", read::non_empty);
        let user_message_id = c.required(data, "userMessageId", read::non_empty);
        let narrative_text = c.required(data, "narrativeText", read::string);
        let classification = c.required_object(data, "classification", |c, o| {
            let intent = c.required(o, "intent", read::open_enum_value::<Intent>);
            let subject = c.required(o, "subject", read::open_enum_value::<Subject>);
            let measure = c.required(o, "measure", read::open_enum_value::<Measure>);
            Some(NarrativeClassification {
                intent: intent?,
                subject: subject?,
                measure: measure?,
            })
        });
        let data_references =
            c.required_array(data, "dataReferences", MAX_DATA_REFERENCES, |c, item| {
                let o = c.here(item, read::object)?;
                let metric = c.required(o, "metric", read::non_empty);
                let period = c.required(o, "period", read::string);
                let value = c.required(o, "value", read::number);
                let unit = c.required(o, "unit", read::string);
                Some(DataReference {
                    metric: metric?,
                    period: period?,
                    value: value?,
                    unit: unit?,
                })
            });
        let ai_model = c.required_object(data, "aiModel", |c, o| {
            let provider = c.required(o, "provider", read::open_enum_value::<AiProvider>);
            let model_id = c.required(o, "modelId", read::non_empty);
            let temperature = c.required(o, "temperature", read::unit_interval);
            let max_tokens =
                c.required(o, "maxTokens", |v| read::integer_in(v, 1, MAX_SAFE_INTEGER));
            Some(AiModel {
                provider: provider?,
                model_id: model_id?,
                temperature: temperature?,
                max_tokens: max_tokens?,
            })
        });
        // The tables require these three objects and every part of them, but a narrative
        // missing a timing, a token count or a quality result is still billable: each part
        // not given is read as `None`, with a contract warning (ADR 0001).
        let performance = c.wanted_object(data, "performance", |c, o| {
            Some(Performance {
                total_ms: c.wanted(o, "totalTimeMs", read::non_negative),
                classification_ms: c.wanted(o, "classificationMs", read::non_negative),
                data_retrieval_ms: c.wanted(o, "dataRetrievalMs", read::non_negative),
                ai_generation_ms: c.wanted(o, "aiGenerationMs", read::non_negative),
                validation_ms: c.wanted(o, "validationMs", read::non_negative),
            })
        });
        let token_usage = c.wanted_object(data, "tokenUsage", |c, o| {
            Some(TokenUsage {
                prompt: c.wanted(o, "promptTokens", read::count),
                completion: c.wanted(o, "completionTokens", read::count),
                total: c.wanted(o, "totalTokens", read::count),
            })
        });
        let cost = c.required_object(data, "cost", |c, o| {
            let amount_usd = c.required(o, "amountUSD", read::non_negative);
            let currency = c.optional(o, "currency", read::enum_value::<Currency>);
            Some(Cost {
                amount_usd: amount_usd?,
                currency,
            })
        });
        let quality = c.wanted_object(data, "qualityMetrics", |c, o| {
            Some(QualityMetrics {
                hallucination_detected: c.wanted(o, "hallucinationDetected", read::boolean),
                facts_verified: c.wanted(o, "factsVerified", read::count),
                facts_total: c.wanted(o, "factsTotal", read::count),
                confidence_score: c.wanted(o, "confidenceScore", read::unit_interval),
            })
        });
        Some(Self {
            message_id: message_id?,
            conversation_id: conversation_id?,
            user_message_id: user_message_id?,
            narrative_text: narrative_text?,
            classification: classification?,
            data_references: data_references?,
            ai_model: ai_model?,
            performance: performance?.unwrap_or_default(),
            token_usage: token_usage?.unwrap_or_default(),
            cost: cost?,
            quality: quality?.unwrap_or_default(),
        })
    }
}
