//! The traffic model: tenants of skewed sizes holding conversations whose events chain the
//! way the real services emit them, in event-time order.
//!
//! A conversation is a few turns of `classification.performed` → `narrative.generated`
//! (same `sessionId` and `correlationId`, the narrative's `causationId` pointing at the
//! classification), closed by a `conversation.completed` whose totals are computed from its
//! turns. Tenants announce themselves with `tenant.provisioned` before their first event and
//! upload metrics (`metrics.ingested`) now and then.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Duration, Utc};
use rand::RngExt;
use rand::distr::weighted::WeightedIndex;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use salestalk_contracts::EventType;
use serde_json::{Value, json};

const INTENTS: &[(&str, u32)] = &[
    ("fact_retrieval", 40),
    ("comparison", 18),
    ("trend_analysis", 15),
    ("root_cause", 8),
    ("prediction", 4),
    ("list", 10),
    ("unknown", 5),
];
const SUBJECTS: &[(&str, u32)] = &[
    ("revenue", 35),
    ("margin", 12),
    ("customers", 15),
    ("products", 12),
    ("pipeline", 12),
    ("deals", 10),
    ("unknown", 4),
];
const MEASURES: &[&str] = &["total", "average", "count", "growth", "ratio", "rate"];
const QUESTIONS: &[&str] = &[
    "What was revenue in Q3?",
    "How does margin compare to last quarter?",
    "Which products grew fastest this year?",
    "Why did pipeline shrink in EMEA?",
    "List the top ten deals closing this month",
    "What is the average deal size for enterprise customers?",
    "Forecast revenue for next quarter",
    "How many new customers did we add in October?",
];
/// (provider, model, USD per million prompt tokens, USD per million completion tokens).
const MODELS: &[(&str, &str, u64, u64)] = &[
    ("bedrock", "anthropic.claude-v2", 8, 24),
    ("bedrock", "anthropic.claude-3-haiku", 1, 5),
    ("ollama", "llama3:8b", 0, 0),
];
const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];
const PLANS: &[(&str, u32)] = &[("starter", 5), ("standard", 4), ("enterprise", 1)];

/// One event of the clean stream, before any fault is applied.
pub struct CleanEvent {
    /// Event time.
    pub at: DateTime<Utc>,
    /// Its type.
    pub event_type: EventType,
    /// Its tenant (the message key).
    pub tenant_id: String,
    /// The event itself.
    pub json: Value,
}

struct Tenant {
    id: String,
    name: String,
    model: usize,
    plan: &'static str,
    region: &'static str,
    users: u32,
    provisioned: bool,
}

/// Produces the clean event stream in event-time order.
pub struct TrafficModel {
    rng: ChaCha8Rng,
    tenants: Vec<Tenant>,
    tenant_pick: WeightedIndex<f64>,
    intent_pick: WeightedIndex<u32>,
    subject_pick: WeightedIndex<u32>,
    /// Events already scheduled, by (time in ms, sequence number) so ties keep their order.
    pending: BinaryHeap<Reverse<(i64, u64, usize)>>,
    slots: Vec<Option<CleanEvent>>,
    free_slots: Vec<usize>,
    sequence: u64,
    next_conversation: DateTime<Utc>,
    next_upload: DateTime<Utc>,
    conversation_gap: Exp<f64>,
    upload_gap: Exp<f64>,
}

/// Mean number of events one conversation produces: 2 per turn plus the completion, with
/// 1 + Geometric(0.4) turns (mean 2.5), so `rate` events/s needs `rate / 6` conversations/s.
const EVENTS_PER_CONVERSATION: f64 = 6.0;

impl TrafficModel {
    /// A model for `tenants` tenants, tenant k picked with weight 1/k^`skew`, producing about
    /// `rate` events per second of event time.
    pub fn new(
        rng: ChaCha8Rng,
        tenants: usize,
        skew: f64,
        rate: f64,
        start: DateTime<Utc>,
    ) -> Self {
        let mut rng = rng;
        let tenants: Vec<Tenant> = (0..tenants.max(1))
            .map(|i| {
                let plan = pick_weighted(&mut rng, PLANS);
                Tenant {
                    id: format!("tenant-{i:04}"),
                    name: format!(
                        "{} {}",
                        ORG_WORDS[i % ORG_WORDS.len()],
                        ORG_SUFFIXES[(i / ORG_WORDS.len()) % ORG_SUFFIXES.len()]
                    ),
                    model: rng.random_range(0..MODELS.len()),
                    plan,
                    region: REGIONS[rng.random_range(0..REGIONS.len())],
                    users: rng.random_range(2..40),
                    provisioned: false,
                }
            })
            .collect();
        let weights: Vec<f64> = (1..=tenants.len())
            .map(|k| 1.0 / (k as f64).powf(skew))
            .collect();
        let conversations_per_second = (rate / EVENTS_PER_CONVERSATION).max(1e-6);
        let uploads_per_second = (rate / 500.0).max(1e-6);
        Self {
            tenant_pick: WeightedIndex::new(&weights).expect("positive weights"),
            intent_pick: WeightedIndex::new(INTENTS.iter().map(|(_, w)| *w))
                .expect("positive weights"),
            subject_pick: WeightedIndex::new(SUBJECTS.iter().map(|(_, w)| *w))
                .expect("positive weights"),
            rng,
            tenants,
            pending: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            sequence: 0,
            next_conversation: start,
            next_upload: start + Duration::seconds(5),
            conversation_gap: Exp::new(conversations_per_second).expect("positive rate"),
            upload_gap: Exp::new(uploads_per_second).expect("positive rate"),
        }
    }

    /// The next event in event-time order (the stream is endless).
    pub fn next_event(&mut self) -> CleanEvent {
        loop {
            let earliest = self.pending.peek().map(|Reverse((at, _, _))| *at);
            let next_spawn = self.next_conversation.min(self.next_upload);
            if earliest.is_some_and(|at| at <= next_spawn.timestamp_millis()) {
                let Some(Reverse((_, _, slot))) = self.pending.pop() else {
                    continue;
                };
                self.free_slots.push(slot);
                if let Some(event) = self.slots[slot].take() {
                    return event;
                }
                continue;
            }
            if self.next_conversation <= self.next_upload {
                let at = self.next_conversation;
                self.spawn_conversation(at);
                self.next_conversation = at + seconds(self.conversation_gap.sample(&mut self.rng));
            } else {
                let at = self.next_upload;
                self.spawn_upload(at);
                self.next_upload = at + seconds(self.upload_gap.sample(&mut self.rng));
            }
        }
    }

    fn schedule(&mut self, event: CleanEvent) {
        let key = (event.at.timestamp_millis(), self.sequence);
        self.sequence += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.pending.push(Reverse((key.0, key.1, slot)));
    }

    fn pick_tenant(&mut self, at: DateTime<Utc>) -> usize {
        let index = self.tenant_pick.sample(&mut self.rng);
        if !self.tenants[index].provisioned {
            self.tenants[index].provisioned = true;
            // Stamped like the rest (at the tenant's first event, scheduled before it, so it
            // still comes first): a stamp a minute early read as a minute of latency for
            // every consumer of onboarding events.
            let event = self.provisioned_event(index, at);
            self.schedule(event);
        }
        index
    }

    fn uuid(&mut self) -> String {
        // Version 4, RFC 4122 variant, from the seeded generator so output is reproducible.
        let raw: u128 = self.rng.random();
        let v4 = (raw & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        salestalk_contracts::formats::format_uuid(v4)
    }

    fn envelope(
        &mut self,
        event_type: EventType,
        at: DateTime<Utc>,
        tenant: usize,
        user: Option<String>,
    ) -> Value {
        json!({
            "eventId": self.uuid(),
            "eventType": event_type.as_str(),
            "eventVersion": "1.0",
            "source": match event_type {
                EventType::MetricsIngestedV1 => "metrics-handler",
                EventType::TenantProvisionedV1 => "tenant-onboard",
                _ => "chat-handler",
            },
            "timestamp": rfc3339(at),
            "tenantId": self.tenants[tenant].id,
            "userId": user,
            "metadata": {
                "correlationId": self.uuid(),
                "traceId": format!("1-{:08x}-{:024x}", at.timestamp(), self.rng.random::<u128>() >> 32),
            },
        })
    }

    fn spawn_conversation(&mut self, start: DateTime<Utc>) {
        let tenant = self.pick_tenant(start);
        let user = format!(
            "user-{}-{:03}",
            &self.tenants[tenant].id[7..],
            self.rng.random_range(0..self.tenants[tenant].users)
        );
        let session = self.uuid();
        let (provider, model, prompt_price, completion_price) = MODELS[self.tenants[tenant].model];
        let turns = 1 + (self.rng.random::<f64>().ln() / 0.6f64.ln()) as u32 % 8;
        let think = LogNormal::<f64>::new(2.5, 0.6).expect("valid");
        let generation = LogNormal::<f64>::new(7.2, 0.35).expect("valid");
        let mut at = start;
        let (mut subjects, mut intents) = (Vec::new(), Vec::new());
        let (mut total_cost_micros, mut response_ms_sum) = (0u64, 0u64);
        for _ in 0..turns {
            let intent = INTENTS[self.intent_pick.sample(&mut self.rng)].0;
            let subject = SUBJECTS[self.subject_pick.sample(&mut self.rng)].0;
            let measure = MEASURES[self.rng.random_range(0..MEASURES.len())];
            push_unique(&mut intents, intent);
            push_unique(&mut subjects, subject);
            let classify_ms = self.rng.random_range(40..160u64);
            let question = QUESTIONS[self.rng.random_range(0..QUESTIONS.len())];
            let confidence = if intent == "unknown" {
                self.rng.random_range(0.2..0.6)
            } else {
                1.0 - self.rng.random::<f64>().powi(3) * 0.5
            };
            let confidence = (confidence * 100.0).round() / 100.0;

            let mut classification = self.envelope(
                EventType::ClassificationPerformedV1,
                at,
                tenant,
                Some(user.clone()),
            );
            classification["sessionId"] = json!(session);
            let user_message = self.uuid();
            classification["data"] = json!({
                "messageId": user_message,
                "originalText": question,
                "classification": {
                    "intent": intent, "subject": subject, "measure": measure,
                    "timeRange": {"period": "quarter", "value": format!("Q{}", self.rng.random_range(1..=4)), "year": 2025},
                    "filters": [],
                    "confidence": confidence,
                },
                "classifierModel": "trm-classifier-v1.2",
                "processingTimeMs": classify_ms,
            });
            let correlation = classification["metadata"]["correlationId"].clone();
            let classification_id = classification["eventId"].clone();

            let generation_ms = generation.sample(&mut self.rng).round() as u64;
            let retrieval_ms = self.rng.random_range(50..400u64);
            let validation_ms = self.rng.random_range(20..120u64);
            let total_ms = classify_ms + retrieval_ms + generation_ms + validation_ms;
            let prompt_tokens = self.rng.random_range(250..1500u64);
            let completion_tokens = self.rng.random_range(60..420u64);
            let cost_micros = prompt_tokens * prompt_price + completion_tokens * completion_price;
            total_cost_micros += cost_micros;
            response_ms_sum += total_ms;
            let facts_total = self.rng.random_range(1..=5u64);
            let hallucination = self.rng.random_bool(0.03);
            let narrative_at = at + Duration::milliseconds(total_ms as i64);
            let mut narrative = self.envelope(
                EventType::NarrativeGeneratedV1,
                narrative_at,
                tenant,
                Some(user.clone()),
            );
            narrative["sessionId"] = json!(session);
            narrative["metadata"]["correlationId"] = correlation;
            narrative["metadata"]["causationId"] = classification_id;
            narrative["data"] = json!({
                "messageId": self.uuid(),
                "conversationId": session,
                "userMessageId": user_message,
                "narrativeText": format!("{subject} for the period moved as expected; {facts_total} figures cited."),
                "classification": {"intent": intent, "subject": subject, "measure": measure},
                "dataReferences": (0..facts_total).map(|i| json!({
                    "metric": subject, "period": format!("2025-Q{}", 1 + i % 4),
                    "value": self.rng.random_range(1_000..5_000_000u64), "unit": "USD",
                })).collect::<Vec<_>>(),
                "aiModel": {"provider": provider, "modelId": model, "temperature": 0.3, "maxTokens": 500},
                "performance": {
                    "totalTimeMs": total_ms, "classificationMs": classify_ms,
                    "dataRetrievalMs": retrieval_ms, "aiGenerationMs": generation_ms,
                    "validationMs": validation_ms,
                },
                "tokenUsage": {
                    "promptTokens": prompt_tokens, "completionTokens": completion_tokens,
                    "totalTokens": prompt_tokens + completion_tokens,
                },
                "cost": {"amountUSD": micros_to_usd(cost_micros), "currency": "USD"},
                "qualityMetrics": {
                    "hallucinationDetected": hallucination,
                    "factsVerified": facts_total - u64::from(hallucination),
                    "factsTotal": facts_total,
                    "confidenceScore": (self.rng.random_range(0.7..1.0f64) * 100.0).round() / 100.0,
                },
            });
            self.schedule(CleanEvent {
                at,
                event_type: EventType::ClassificationPerformedV1,
                tenant_id: self.tenants[tenant].id.clone(),
                json: classification,
            });
            self.schedule(CleanEvent {
                at: narrative_at,
                event_type: EventType::NarrativeGeneratedV1,
                tenant_id: self.tenants[tenant].id.clone(),
                json: narrative,
            });
            at = narrative_at + seconds(think.sample(&mut self.rng));
        }
        let end = at;
        let completed_at = end + Duration::seconds(30);
        let mut completed = self.envelope(
            EventType::ConversationCompletedV1,
            completed_at,
            tenant,
            Some(user),
        );
        completed["sessionId"] = json!(session);
        completed["data"] = json!({
            "conversationId": session,
            "startTime": rfc3339(start),
            "endTime": rfc3339(end),
            "durationSeconds": (end - start).num_seconds(),
            "messageCount": 2 * turns,
            "userMessageCount": turns,
            "assistantMessageCount": turns,
            "subjects": subjects,
            "intents": intents,
            "actionsTaken": {
                "insightSaved": self.rng.random_bool(0.3),
                "insightShared": self.rng.random_bool(0.1),
                "dataExported": self.rng.random_bool(0.05),
                "followUpCreated": self.rng.random_bool(0.2),
            },
            "totalCostUSD": micros_to_usd(total_cost_micros),
            "averageResponseTimeMs": response_ms_sum / u64::from(turns),
        });
        if self.rng.random_bool(0.7) {
            let rating = [1, 2, 3, 4, 4, 5, 5, 5][self.rng.random_range(0..8)];
            completed["data"]["satisfactionRating"] = json!(rating);
        }
        let tenant_id = self.tenants[tenant].id.clone();
        self.schedule(CleanEvent {
            at: completed_at,
            event_type: EventType::ConversationCompletedV1,
            tenant_id,
            json: completed,
        });
    }

    fn spawn_upload(&mut self, at: DateTime<Utc>) {
        let tenant = self.pick_tenant(at);
        let records = self.rng.random_range(10..5_000u64);
        let invalid = if self.rng.random_bool(0.2) {
            self.rng.random_range(1..=records / 10 + 1)
        } else {
            0
        };
        let source = ["csv_upload", "api", "integration"][self.rng.random_range(0..3)];
        let mut event = self.envelope(
            EventType::MetricsIngestedV1,
            at,
            tenant,
            Some(format!("admin-{}", &self.tenants[tenant].id[7..])),
        );
        event["data"] = json!({
            "batchId": self.uuid(),
            "source": source,
            "recordCount": records,
            "metricsIngested": [{
                "subject": "revenue", "period": "2025-Q3",
                "value": self.rng.random_range(10_000..9_000_000u64), "unit": "USD",
                "dimensions": {"region": "North America", "productLine": "Enterprise"},
            }],
            "validationResults": {"valid": records - invalid, "invalid": invalid, "warnings": self.rng.random_range(0..20u64)},
            "processingTimeMs": self.rng.random_range(100..5_000u64),
        });
        if source == "csv_upload" {
            event["data"]["fileName"] = json!(format!("upload-{}.csv", at.format("%Y%m%d-%H%M")));
        }
        let tenant_id = self.tenants[tenant].id.clone();
        self.schedule(CleanEvent {
            at,
            event_type: EventType::MetricsIngestedV1,
            tenant_id,
            json: event,
        });
    }

    fn provisioned_event(&mut self, tenant: usize, at: DateTime<Utc>) -> CleanEvent {
        let t = &self.tenants[tenant];
        let (id, name, plan, region) = (t.id.clone(), t.name.clone(), t.plan, t.region);
        let mut event = self.envelope(
            EventType::TenantProvisionedV1,
            at,
            tenant,
            Some(format!("admin-{}", &id[7..])),
        );
        event["data"] = json!({
            "tenantId": id,
            "organizationName": name,
            "ownerEmail": format!("admin@{}.example.com", id),
            "plan": plan,
            "region": region,
            "resources": {
                "messagesTableName": format!("{id}-messages"),
                "metricsTableName": format!("{id}-metrics"),
                "s3Prefix": format!("{id}/"),
            },
            "provisioningTimeMs": self.rng.random_range(1_500..9_000u64),
            "sampleDataSeeded": self.rng.random_bool(0.5),
        });
        CleanEvent {
            at,
            event_type: EventType::TenantProvisionedV1,
            tenant_id: id,
            json: event,
        }
    }
}

const ORG_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
];
const ORG_SUFFIXES: &[&str] = &["Corporation", "Industries", "Labs", "Group", "Holdings"];

fn pick_weighted(rng: &mut ChaCha8Rng, options: &[(&'static str, u32)]) -> &'static str {
    let total: u32 = options.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for (value, weight) in options {
        if roll < *weight {
            return value;
        }
        roll -= weight;
    }
    options[0].0
}

fn push_unique(values: &mut Vec<&'static str>, value: &'static str) {
    if !values.contains(&value) {
        values.push(value);
    }
}

fn seconds(s: f64) -> Duration {
    Duration::milliseconds((s * 1000.0).round() as i64)
}

/// Formats a time as the contracts' examples do: UTC, milliseconds, `Z`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Micro-dollars as a JSON number of dollars (exact to the micro-dollar when printed).
fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}
