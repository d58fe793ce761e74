//! The closed value sets of the contracts: event types and the enums inside payloads.
//!
//! The contract says adding enum values is backward compatible within a version, so the enums
//! that describe what a message was about (intent, subject, measure, AI provider, ingestion
//! source) are open: a value this build does not know yet is accepted as [`Open::New`] if it
//! looks like one (lower snake_case, at most [`MAX_NEW_VALUE_LEN`] characters), counted under
//! its own value, and surfaced so teams notice it (`docs/contracts.md`). `currency` stays
//! closed: an amount in another currency would be summed as dollars.

use strum::{EnumString, IntoStaticStr, VariantArray};

/// Values of `classification.intent` (and of `conversation.completed.intents`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
#[allow(missing_docs)]
pub enum Intent {
    FactRetrieval,
    Comparison,
    TrendAnalysis,
    RootCause,
    Prediction,
    List,
    Unknown,
}

/// Values of `classification.subject` (and of `conversation.completed.subjects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
#[allow(missing_docs)]
pub enum Subject {
    Revenue,
    Margin,
    Customers,
    Products,
    Pipeline,
    Deals,
    Unknown,
}

/// Values of `classification.measure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
#[allow(missing_docs)]
pub enum Measure {
    Total,
    Average,
    Count,
    Growth,
    Ratio,
    Rate,
}

/// Values of `narrative.generated` `aiModel.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
#[allow(missing_docs)]
pub enum AiProvider {
    Bedrock,
    Ollama,
}

/// Values of `metrics.ingested` `data.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
#[allow(missing_docs)]
pub enum IngestionSource {
    CsvUpload,
    Api,
    Integration,
}

/// Values of `narrative.generated` `cost.currency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
#[allow(missing_docs)]
pub enum Currency {
    #[strum(serialize = "USD")]
    Usd,
}

/// Longest new value an open enum accepts: a dimension of every metric that groups by it.
pub const MAX_NEW_VALUE_LEN: usize = 64;

/// A value of an open contract enum: one this build knows, or one added to the contract since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Open<'a, E> {
    /// A value the contract listed when this build was made.
    Known(E),
    /// A well-formed value this build does not know yet.
    New(&'a str),
}

impl<'a, E: ContractEnum> Open<'a, E> {
    /// Reads `text`: a known value, a new well-formed one, or `None`.
    pub fn from_wire(text: &'a str) -> Option<Self> {
        if let Some(known) = E::from_wire(text) {
            return Some(Self::Known(known));
        }
        let mut bytes = text.bytes();
        let well_formed = text.len() <= MAX_NEW_VALUE_LEN
            && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        well_formed.then_some(Self::New(text))
    }

    /// The wire value, known or new.
    pub fn as_wire(self) -> &'a str {
        match self {
            Self::Known(known) => known.as_wire(),
            Self::New(text) => text,
        }
    }

    /// The value if this build knows it.
    pub fn known(self) -> Option<E> {
        match self {
            Self::Known(known) => Some(known),
            Self::New(_) => None,
        }
    }
}

/// A contract enum: parsed from its wire string, with the full list for error messages.
pub trait ContractEnum: Sized + Copy + 'static {
    /// Every wire value, in contract order.
    const WIRE_VALUES: &'static [&'static str];
    /// Parses a wire value.
    fn from_wire(text: &str) -> Option<Self>;
    /// The wire value.
    fn as_wire(self) -> &'static str;
}

macro_rules! contract_enum {
    ($ty:ty, [$($value:literal),+ $(,)?]) => {
        impl ContractEnum for $ty {
            const WIRE_VALUES: &'static [&'static str] = &[$($value),+];
            fn from_wire(text: &str) -> Option<Self> {
                text.parse().ok()
            }
            fn as_wire(self) -> &'static str {
                self.into()
            }
        }
    };
}

contract_enum!(
    Intent,
    [
        "fact_retrieval",
        "comparison",
        "trend_analysis",
        "root_cause",
        "prediction",
        "list",
        "unknown"
    ]
);
contract_enum!(
    Subject,
    [
        "revenue",
        "margin",
        "customers",
        "products",
        "pipeline",
        "deals",
        "unknown"
    ]
);
contract_enum!(
    Measure,
    ["total", "average", "count", "growth", "ratio", "rate"]
);
contract_enum!(AiProvider, ["bedrock", "ollama"]);
contract_enum!(IngestionSource, ["csv_upload", "api", "integration"]);
contract_enum!(Currency, ["USD"]);

/// The event types of the contracts, one variant per supported version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, VariantArray)]
pub enum EventType {
    /// `classification.performed.v1`
    ClassificationPerformedV1,
    /// `classification.performed.v2`
    ClassificationPerformedV2,
    /// `narrative.generated.v1`
    NarrativeGeneratedV1,
    /// `conversation.completed.v1`
    ConversationCompletedV1,
    /// `metrics.ingested.v1`
    MetricsIngestedV1,
    /// `tenant.provisioned.v1`
    TenantProvisionedV1,
}

/// An event without its version (`classification.performed`): what the aggregates, the
/// generator and the dashboards mean by "an event type", so every version of it counts alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, VariantArray)]
pub enum EventKind {
    /// `classification.performed`
    ClassificationPerformed,
    /// `narrative.generated`
    NarrativeGenerated,
    /// `conversation.completed`
    ConversationCompleted,
    /// `metrics.ingested`
    MetricsIngested,
    /// `tenant.provisioned`
    TenantProvisioned,
}

impl EventKind {
    /// The name, e.g. `classification.performed`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClassificationPerformed => "classification.performed",
            Self::NarrativeGenerated => "narrative.generated",
            Self::ConversationCompleted => "conversation.completed",
            Self::MetricsIngested => "metrics.ingested",
            Self::TenantProvisioned => "tenant.provisioned",
        }
    }

    /// The domain part (`classification`, `narrative`, ...), which also names its topic.
    pub fn domain(self) -> &'static str {
        self.name().split('.').next().unwrap_or_default()
    }
}

/// Why an `eventType` string was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTypeError {
    /// Does not match `{domain}.{action}.v{N}`.
    Malformed,
    /// Well formed, but no such event exists.
    Unknown,
    /// A known `{domain}.{action}` at a version this build does not read.
    UnsupportedVersion {
        /// The newest supported version of it, e.g. `classification.performed.v2`.
        supported: &'static str,
    },
}

impl EventType {
    /// The wire name, e.g. `classification.performed.v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClassificationPerformedV1 => "classification.performed.v1",
            Self::ClassificationPerformedV2 => "classification.performed.v2",
            Self::NarrativeGeneratedV1 => "narrative.generated.v1",
            Self::ConversationCompletedV1 => "conversation.completed.v1",
            Self::MetricsIngestedV1 => "metrics.ingested.v1",
            Self::TenantProvisionedV1 => "tenant.provisioned.v1",
        }
    }

    /// The event without its version: what aggregates read by, so every version counts.
    pub fn kind(self) -> EventKind {
        match self {
            Self::ClassificationPerformedV1 | Self::ClassificationPerformedV2 => {
                EventKind::ClassificationPerformed
            }
            Self::NarrativeGeneratedV1 => EventKind::NarrativeGenerated,
            Self::ConversationCompletedV1 => EventKind::ConversationCompleted,
            Self::MetricsIngestedV1 => EventKind::MetricsIngested,
            Self::TenantProvisionedV1 => EventKind::TenantProvisioned,
        }
    }

    /// The name without its version (`classification.performed`).
    pub fn name(self) -> &'static str {
        self.kind().name()
    }

    /// The domain part (`classification`, `narrative`, ...), which also names its topic.
    pub fn domain(self) -> &'static str {
        self.kind().domain()
    }

    /// Parses and classifies an `eventType` string.
    pub fn parse(text: &str) -> Result<Self, EventTypeError> {
        let mut parts = text.split('.');
        let (Some(domain), Some(action), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(EventTypeError::Malformed);
        };
        let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
        let version_ok = version.len() > 1
            && version.starts_with('v')
            && version[1..].bytes().all(|b| b.is_ascii_digit());
        if !lower(domain) || !lower(action) || !version_ok {
            return Err(EventTypeError::Malformed);
        }
        if let Some(known) = Self::VARIANTS.iter().copied().find(|t| t.as_str() == text) {
            return Ok(known);
        }
        let family = &text[..domain.len() + 1 + action.len()];
        // The newest version this build reads, to tell the producer what to send.
        match Self::VARIANTS
            .iter()
            .rev()
            .find(|t| t.as_str().starts_with(family) && t.as_str()[family.len()..].starts_with('.'))
        {
            Some(supported) => Err(EventTypeError::UnsupportedVersion {
                supported: supported.as_str(),
            }),
            None => Err(EventTypeError::Unknown),
        }
    }
}

/// Stored as its wire name (`classification.performed.v1`); a stored name this build does not
/// read is an error, not a guess.
impl serde::Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        EventType::parse(&text)
            .map_err(|_| serde::de::Error::custom(format_args!("not an event type: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_s_kind_is_its_name_without_the_version() {
        for event_type in EventType::VARIANTS {
            let (name, version) = event_type
                .as_str()
                .rsplit_once('.')
                .expect("a versioned name");
            assert_eq!(event_type.kind().name(), name);
            assert!(version.starts_with('v'));
            assert_eq!(EventType::parse(event_type.as_str()), Ok(*event_type));
        }
        for kind in EventKind::VARIANTS {
            assert!(
                EventType::VARIANTS.iter().any(|t| t.kind() == *kind),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn wire_values_match_the_variants() {
        fn check<E: ContractEnum + VariantArray>() {
            let wire: Vec<&str> = E::VARIANTS.iter().map(|v| v.as_wire()).collect();
            assert_eq!(wire, E::WIRE_VALUES);
            for value in E::WIRE_VALUES {
                assert!(E::from_wire(value).is_some(), "{value}");
            }
        }
        check::<Intent>();
        check::<Subject>();
        check::<Measure>();
        check::<AiProvider>();
        check::<IngestionSource>();
        check::<Currency>();
    }

    #[test]
    fn open_enums_take_new_well_formed_values_only() {
        assert_eq!(
            Open::<Intent>::from_wire("fact_retrieval"),
            Some(Open::Known(Intent::FactRetrieval))
        );
        assert_eq!(
            Open::<Intent>::from_wire("small_talk_2"),
            Some(Open::New("small_talk_2"))
        );
        let longest = "a".repeat(MAX_NEW_VALUE_LEN);
        assert!(Open::<Intent>::from_wire(&longest).is_some());
        for bad in [
            "",
            "Small_talk",
            "2fast",
            "_x",
            "small-talk",
            "small talk",
            "é",
        ] {
            assert_eq!(Open::<Intent>::from_wire(bad), None, "{bad}");
        }
        assert_eq!(Open::<Intent>::from_wire(&format!("{longest}a")), None);
    }

    #[test]
    fn enums_are_case_sensitive() {
        assert_eq!(Intent::from_wire("Fact_Retrieval"), None);
        assert_eq!(Currency::from_wire("usd"), None);
    }

    #[test]
    fn event_types_parse_and_classify() {
        for t in EventType::VARIANTS {
            assert_eq!(EventType::parse(t.as_str()), Ok(*t));
        }
        assert_eq!(
            EventType::parse("classification.performed.v3"),
            Err(EventTypeError::UnsupportedVersion {
                supported: "classification.performed.v2"
            })
        );
        assert_eq!(
            EventType::parse("narrative.generated.v2"),
            Err(EventTypeError::UnsupportedVersion {
                supported: "narrative.generated.v1"
            })
        );
        assert_eq!(
            EventType::ClassificationPerformedV2.name(),
            "classification.performed"
        );
        assert_eq!(
            EventType::parse("invoice.paid.v1"),
            Err(EventTypeError::Unknown)
        );
        for malformed in [
            "",
            "classification.performed",
            "Classification.performed.v1",
            "classification.performed.1",
            "classification.performed.v",
            "classification.performed.v1.extra",
            "classification-performed.v1",
            "classification.performed.v1 ",
        ] {
            assert_eq!(
                EventType::parse(malformed),
                Err(EventTypeError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn domain_names_the_topic_family() {
        assert_eq!(EventType::NarrativeGeneratedV1.domain(), "narrative");
    }
}
