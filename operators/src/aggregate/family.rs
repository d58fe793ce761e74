//! The metric families: what each window row of a family is keyed by and what it holds.
//!
//! These layouts are the single definition shared by the aggregator and the ClickHouse views
//! (the sinks crate builds the views' SQL from them), so a column can never mean one thing in
//! Rust and another in SQL.

/// A group of metrics sharing one key shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Distinct valid events per tenant, event type and source (event time).
    Volume,
    /// AI cost and tokens per tenant, event type and model (from `narrative.generated`).
    Cost,
    /// Classifications per tenant, intent, subject and measure.
    Intents,
    /// Conversations per tenant (from `conversation.completed`).
    Engagement,
    /// Narrative quality per tenant and model.
    Quality,
    /// Metric-ingestion batches per tenant and ingestion source.
    Ingestion,
    /// Tenants provisioned, per plan and region.
    Onboarding,
    /// Processing latency per tenant, event type and consumer.
    Latency,
    /// Messages read, failed as publishes and resent per tenant, source, topic and publish path
    /// (broker time).
    Publish,
    /// Messages sent to the dead-letter path per reason, event type and topic (broker time).
    DeadLetters,
    /// Events carrying an open enum's value this build does not know, per tenant, event type,
    /// field and value.
    NewEnumValues,
    /// Events that arrived after their window was final and wait for the correction of their
    /// day, per tenant, event type and event-time minute (broker time).
    LateArrivals,
    /// Accepted events departing from the contract's tables, per tenant, producer `source`,
    /// field and kind of departure (a contract warning).
    ContractWarnings,
}

/// How a family's window rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Name used in storage and views.
    pub name: &'static str,
    /// Names of the up-to-three string dimensions after `tenant_id` (empty = unused).
    pub dims: [&'static str; 3],
    /// Names of the integer counters, in storage order.
    pub ints: &'static [&'static str],
    /// Names of the floating-point sums, in storage order.
    pub floats: &'static [&'static str],
    /// What the histogram measures, if the family has one.
    pub histogram: Option<&'static str>,
}

impl Family {
    /// Every family, in storage order.
    pub const ALL: [Family; 13] = [
        Family::Volume,
        Family::Cost,
        Family::Intents,
        Family::Engagement,
        Family::Quality,
        Family::Ingestion,
        Family::Onboarding,
        Family::Latency,
        Family::Publish,
        Family::DeadLetters,
        Family::NewEnumValues,
        Family::LateArrivals,
        Family::ContractWarnings,
    ];

    /// The family's layout.
    pub const fn layout(self) -> Layout {
        match self {
            Family::Volume => Layout {
                name: "volume",
                dims: ["event_type", "source", ""],
                ints: &["events"],
                floats: &[],
                histogram: None,
            },
            Family::Cost => Layout {
                name: "cost",
                dims: ["event_type", "model", ""],
                ints: &[
                    "cost_nanos",
                    "prompt_tokens",
                    "completion_tokens",
                    "total_tokens",
                    "messages",
                ],
                floats: &[],
                histogram: None,
            },
            Family::Intents => Layout {
                name: "intents",
                dims: ["intent", "subject", "measure"],
                ints: &["classifications", "low_confidence"],
                floats: &["confidence_sum"],
                histogram: None,
            },
            Family::Engagement => Layout {
                name: "engagement",
                dims: ["", "", ""],
                ints: &[
                    "conversations",
                    "messages",
                    "user_messages",
                    "assistant_messages",
                    "rated",
                    "rating_sum",
                    "insight_saved",
                    "insight_shared",
                    "data_exported",
                    "follow_up_created",
                    "total_cost_nanos",
                ],
                // Ints and floats are append-only: stored rows are positional. `rating_sum`
                // held whole ratings until ratings became numbers (issue 30); every rating
                // since is in `satisfaction_sum`, and satisfaction reads both.
                floats: &[
                    "duration_seconds_sum",
                    "response_time_ms_sum",
                    "satisfaction_sum",
                ],
                histogram: Some("duration_seconds"),
            },
            Family::Quality => Layout {
                name: "quality",
                dims: ["model", "", ""],
                ints: &[
                    "narratives",
                    "hallucinations",
                    "facts_verified",
                    "facts_total",
                    "total_tokens",
                    // Narratives that did not report the result (accepted with a contract
                    // warning): the rates' denominators leave them out.
                    "hallucination_unknown",
                    "confidence_unknown",
                ],
                floats: &["confidence_sum"],
                histogram: Some("generation_ms"),
            },
            Family::Ingestion => Layout {
                name: "ingestion",
                dims: ["source", "", ""],
                ints: &[
                    "batches",
                    "records",
                    "valid_records",
                    "invalid_records",
                    "warnings",
                ],
                floats: &["processing_ms_sum"],
                histogram: None,
            },
            Family::Onboarding => Layout {
                name: "onboarding",
                dims: ["plan", "region", ""],
                ints: &["tenants", "sample_data_seeded"],
                floats: &["provisioning_ms_sum"],
                histogram: Some("provisioning_ms"),
            },
            Family::Latency => Layout {
                name: "latency",
                dims: ["event_type", "consumer", ""],
                ints: &["events"],
                floats: &["latency_ms_sum"],
                histogram: Some("latency_ms"),
            },
            Family::Publish => Layout {
                name: "publish",
                dims: ["source", "topic", "path"],
                ints: &[
                    "submitted",
                    "rejected",
                    "duplicates",
                    "conflicting_duplicates",
                ],
                floats: &[],
                histogram: None,
            },
            Family::DeadLetters => Layout {
                name: "dead_letters",
                dims: ["reason", "event_type", "topic"],
                ints: &["messages"],
                floats: &[],
                histogram: None,
            },
            Family::NewEnumValues => Layout {
                name: "new_enum_values",
                dims: ["event_type", "field", "value"],
                ints: &["events"],
                floats: &[],
                histogram: None,
            },
            Family::LateArrivals => Layout {
                name: "late_arrivals",
                dims: ["event_type", "event_window", ""],
                ints: &["events"],
                floats: &[],
                histogram: None,
            },
            Family::ContractWarnings => Layout {
                name: "contract_warnings",
                dims: ["source", "field", "kind"],
                ints: &["events"],
                floats: &[],
                histogram: None,
            },
        }
    }

    /// Whether the family's rows are sums over counted events in their event-time windows: what
    /// a correction of a past day recomputes from the archive. The others record how messages
    /// arrived (reads, dead letters, latency, late arrivals), which a correction leaves alone.
    pub const fn counts_events(self) -> bool {
        !matches!(
            self,
            Family::Latency | Family::Publish | Family::DeadLetters | Family::LateArrivals
        )
    }

    /// Which dimension holds the producer's `source` (budgeted per tenant and day, the rest
    /// counted under `_overflow`), if the family has one; `ingestion`'s `source` is the
    /// payload's data source, an enum, not this.
    pub const fn producer_source_dim(self) -> Option<usize> {
        match self {
            Family::Volume => Some(1),
            Family::Publish | Family::ContractWarnings => Some(0),
            _ => None,
        }
    }

    /// Position of a named integer counter; evaluated in a `const`, a name the layout lacks
    /// fails the build.
    pub const fn int_slot(self, name: &str) -> usize {
        slot(self.layout().ints, name)
    }

    /// Position of a named float sum; see [`Family::int_slot`].
    pub const fn float_slot(self, name: &str) -> usize {
        slot(self.layout().floats, name)
    }
}

const fn slot(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        if same(names[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("the family's layout has no column of that name");
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_dims_are_packed_left() {
        let mut names: Vec<&str> = Family::ALL.iter().map(|f| f.layout().name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Family::ALL.len());
        for family in Family::ALL {
            let dims = family.layout().dims;
            let used = dims.iter().take_while(|d| !d.is_empty()).count();
            assert!(dims[used..].iter().all(|d| d.is_empty()), "{family:?}");
        }
    }
}
