//! The `data` payloads of the five v1 events, one module each, with the rules to read them.
//!
//! Where the contract's tables list an object without breaking it down (`performance`,
//! `tokenUsage`, ...), the fields its example shows are required with the example's types;
//! see `docs/adr/0001-contract-interpretation.md`.

mod classification_performed;
mod conversation_completed;
mod metrics_ingested;
mod narrative_generated;
mod tenant_provisioned;

pub use classification_performed::{Classification, ClassificationPerformed, TimeRange};
pub use conversation_completed::{ActionsTaken, ConversationCompleted};
pub use metrics_ingested::{IngestedMetric, MetricsIngested, ValidationResults};
pub use narrative_generated::{
    AiModel, Cost, DataReference, NarrativeClassification, NarrativeGenerated, Performance,
    QualityMetrics, TokenUsage,
};
pub use tenant_provisioned::{Resources, TenantProvisioned};
