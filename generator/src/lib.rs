//! Realistic, reproducible synthetic SalesTalk traffic: what `salestalk generate`, the demo,
//! the benches and the tests publish.
//!
//! [`model`] produces the clean stream in event-time order; [`faults`] decides what goes
//! wrong with each event; this module orders delivery (holding back late and out-of-order
//! events, resending duplicates) and keeps the ground truth of what it did.

pub mod evolution;
pub mod faults;
pub mod model;
pub mod produce;

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use salestalk_contracts::EventType;

pub use faults::{Corruption, Fault, FaultRates};
use model::TrafficModel;

/// When the generator stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many events of the clean stream (deliveries add duplicates on top).
    Count(u64),
    /// When event time passes `start` plus this.
    Duration(Duration),
}

/// The skew of tenant sizes unless told otherwise: Zipf-like, as SaaS tenants are.
pub const DEFAULT_TENANT_SKEW: f64 = 1.1;

/// Everything that shapes the traffic; the same options give the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorOptions {
    /// Seed of the random stream.
    pub seed: u64,
    /// Event time of the first event.
    pub start: DateTime<Utc>,
    /// Mean events per second of event time.
    pub rate: f64,
    /// Number of tenants.
    pub tenants: usize,
    /// How skewed tenant sizes are: tenant k is picked with weight 1/k^skew
    /// ([`DEFAULT_TENANT_SKEW`]: a few tenants dominate; 0: every tenant alike).
    pub tenant_skew: f64,
    /// When to stop.
    pub stop: Stop,
    /// Fault shares.
    pub faults: FaultRates,
}

/// One message to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// Event time of the event as the model produced it (before any clock skew), Unix ms:
    /// when a live producer would have sent it.
    pub at_ms: i64,
    /// The event type it was generated as (its topic), even if it was then corrupted.
    pub event_type: EventType,
    /// Message key.
    pub tenant_id: String,
    /// The message.
    pub bytes: Vec<u8>,
    /// What was done to it.
    pub fault: Fault,
}

/// Counts of what was delivered, by fault.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GenerationStats {
    /// Messages delivered (including duplicates).
    pub messages: u64,
    /// Distinct events of the clean stream.
    pub events: u64,
    /// Delivered messages per fault.
    pub by_fault: BTreeMap<String, u64>,
}

/// The delivery-ordered stream of messages. Finite; see [`Stop`].
pub struct Generator {
    model: TrafficModel,
    rng: ChaCha8Rng,
    options: GeneratorOptions,
    taken: u64,
    delivered: u64,
    sequence: u64,
    exhausted: bool,
    /// Due now, in order.
    ready: VecDeque<Emitted>,
    /// Held back until this many messages have been delivered.
    held: BTreeMap<(u64, u64), Emitted>,
    /// Held back until event time reaches the key (ms).
    late: BTreeMap<(i64, u64), Emitted>,
    /// The last valid event's tenant and `eventId`, for [`Fault::SharedId`].
    last_id: Option<(String, serde_json::Value)>,
    stats: GenerationStats,
}

impl Generator {
    /// A generator for `options`.
    pub fn new(options: GeneratorOptions) -> Self {
        let mut seed_rng = ChaCha8Rng::seed_from_u64(options.seed);
        let model_rng = ChaCha8Rng::seed_from_u64(seed_rng.random());
        Self {
            model: TrafficModel::new(
                model_rng,
                options.tenants,
                options.tenant_skew,
                options.rate,
                options.start,
            ),
            rng: seed_rng,
            options,
            taken: 0,
            delivered: 0,
            sequence: 0,
            exhausted: false,
            ready: VecDeque::new(),
            held: BTreeMap::new(),
            late: BTreeMap::new(),
            last_id: None,
            stats: GenerationStats::default(),
        }
    }

    /// What has been delivered so far.
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    fn record(&mut self, message: Emitted) -> Emitted {
        self.delivered += 1;
        self.stats.messages += 1;
        let name = match message.fault {
            Fault::Invalid(c) => format!(
                "invalid_{}",
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        };
        *self.stats.by_fault.entry(name).or_default() += 1;
        if message.fault != Fault::Duplicate && faults::resend(&mut self.rng, &self.options.faults)
        {
            let after = self.delivered + self.rng.random_range(1..200u64);
            let key = (after, self.next_sequence());
            self.held.insert(
                key,
                Emitted {
                    fault: Fault::Duplicate,
                    ..message.clone()
                },
            );
        }
        message
    }

    fn due_held(&mut self) -> Option<Emitted> {
        let (&key, _) = self.held.first_key_value()?;
        (key.0 <= self.delivered || self.exhausted)
            .then(|| self.held.remove(&key))
            .flatten()
    }

    fn due_late(&mut self, now_ms: i64) -> Option<Emitted> {
        let (&key, _) = self.late.first_key_value()?;
        (key.0 <= now_ms || self.exhausted)
            .then(|| self.late.remove(&key))
            .flatten()
    }

    fn finished(&self, at: DateTime<Utc>) -> bool {
        match self.options.stop {
            Stop::Count(n) => self.taken >= n,
            Stop::Duration(d) => at > self.options.start + d,
        }
    }
}

impl Iterator for Generator {
    type Item = Emitted;

    fn next(&mut self) -> Option<Emitted> {
        loop {
            if let Some(message) = self.ready.pop_front().or_else(|| self.due_held()) {
                return Some(self.record(message));
            }
            if self.exhausted {
                let message = self.due_late(i64::MAX)?;
                return Some(self.record(message));
            }
            let mut event = self.model.next_event();
            if self.finished(event.at) {
                self.exhausted = true;
                continue;
            }
            self.taken += 1;
            self.stats.events += 1;
            let now = event.at.timestamp_millis();
            while let Some(message) = self.due_late(now) {
                self.ready.push_back(message);
            }
            let rates = self.options.faults;
            if faults::rolls(&mut self.rng, rates.v2) {
                evolution::upgrade_to_v2(&mut self.rng, &mut event);
            }
            let mut fault = faults::choose(&mut self.rng, &rates, &mut event);
            if fault == Fault::None {
                fault = self.maybe_share_id(&mut event);
            }
            if fault == Fault::None
                && faults::rolls(&mut self.rng, rates.new_enum_values)
                && evolution::add_new_enum_value(&mut self.rng, &mut event)
            {
                fault = Fault::NewEnumValue;
            }
            let message = self.package(&event, fault);
            match fault {
                Fault::Late => {
                    let release = now + self.rng.random_range(120_000..600_000i64);
                    let key = (release, self.next_sequence());
                    self.late.insert(key, message);
                }
                Fault::OutOfOrder => {
                    let key = (
                        self.delivered + self.rng.random_range(1..50u64),
                        self.next_sequence(),
                    );
                    self.held.insert(key, message);
                }
                _ => self.ready.push_back(message),
            }
        }
    }
}

impl Generator {
    /// Gives an on-time event the last valid event's `eventId` when that was another
    /// tenant's and the fault's roll says so; remembers this event's id otherwise.
    fn maybe_share_id(&mut self, event: &mut model::CleanEvent) -> Fault {
        if let Some((tenant, id)) = &self.last_id
            && *tenant != event.tenant_id
            && faults::share_id(&mut self.rng, &self.options.faults)
        {
            event.json["eventId"] = id.clone();
            return Fault::SharedId;
        }
        self.last_id = Some((event.tenant_id.clone(), event.json["eventId"].clone()));
        Fault::None
    }

    fn package(&mut self, event: &model::CleanEvent, fault: Fault) -> Emitted {
        let mut bytes = serde_json::to_vec(&event.json).unwrap_or_default();
        if fault == Fault::Invalid(Corruption::Truncated) {
            faults::truncate(&mut self.rng, &mut bytes);
        }
        Emitted {
            at_ms: event.at.timestamp_millis(),
            event_type: event.event_type,
            tenant_id: event.tenant_id.clone(),
            bytes,
            fault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    use salestalk_contracts::{EventData, check, parse, validate};

    fn options(seed: u64, count: u64, faults: FaultRates) -> GeneratorOptions {
        GeneratorOptions {
            seed,
            start: DateTime::parse_from_rfc3339("2025-11-09T00:00:00Z")
                .expect("valid")
                .with_timezone(&Utc),
            rate: 100.0,
            tenants: 25,
            tenant_skew: DEFAULT_TENANT_SKEW,
            stop: Stop::Count(count),
            faults,
        }
    }

    fn noisy() -> FaultRates {
        FaultRates {
            duplicates: 0.05,
            invalid: 0.05,
            out_of_order: 0.05,
            late: 0.02,
            future_skew: 0.01,
            shared_ids: 0.01,
            v2: 0.3,
            new_enum_values: 0.01,
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a: Vec<Emitted> = Generator::new(options(7, 500, noisy())).collect();
        let b: Vec<Emitted> = Generator::new(options(7, 500, noisy())).collect();
        let c: Vec<Emitted> = Generator::new(options(8, 500, noisy())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn clean_traffic_is_entirely_valid_and_covers_every_event_type() {
        let mut types = BTreeSet::new();
        let messages: Vec<Emitted> =
            Generator::new(options(1, 3_000, FaultRates::default())).collect();
        assert_eq!(messages.len(), 3_000);
        for message in &messages {
            let violations = check(&message.bytes, 1 << 20);
            assert!(
                violations.is_empty(),
                "{violations:?} in {}",
                String::from_utf8_lossy(&message.bytes)
            );
            types.insert(message.event_type);
        }
        assert_eq!(types.len(), 5, "{types:?}");
    }

    #[test]
    fn faults_happen_at_about_their_rates_and_invalid_means_invalid() {
        let mut generator = Generator::new(options(3, 20_000, noisy()));
        let messages: Vec<Emitted> = generator.by_ref().collect();
        let stats = generator.stats().clone();
        assert_eq!(stats.events, 20_000);
        assert_eq!(stats.messages, messages.len() as u64);
        let duplicates = messages
            .iter()
            .filter(|m| m.fault == Fault::Duplicate)
            .count() as f64;
        assert!(
            (0.04..0.06).contains(&(duplicates / 20_000.0)),
            "duplicates {duplicates}"
        );
        // A resend of a broken message is as broken as the original.
        let broken: BTreeSet<&[u8]> = messages
            .iter()
            .filter(|m| matches!(m.fault, Fault::Invalid(_)))
            .map(|m| m.bytes.as_slice())
            .collect();
        for message in &messages {
            let valid = check(&message.bytes, 1 << 20).is_empty();
            assert_eq!(
                valid,
                !broken.contains(message.bytes.as_slice()),
                "{:?}",
                message.fault
            );
        }
        let invalid = messages
            .iter()
            .filter(|m| matches!(m.fault, Fault::Invalid(_)))
            .count() as f64;
        assert!(
            (0.04..0.06).contains(&(invalid / 20_000.0)),
            "invalid {invalid}"
        );
    }

    #[test]
    fn v2_events_and_new_enum_values_are_valid_traffic() {
        let messages: Vec<Emitted> = Generator::new(options(11, 5_000, noisy())).collect();
        let (mut v2, mut new_values) = (0, 0);
        for message in messages.iter().filter(|m| {
            matches!(
                m.fault,
                Fault::None | Fault::NewEnumValue | Fault::SharedId | Fault::Duplicate
            )
        }) {
            let Ok(value) = parse(&message.bytes) else {
                continue;
            };
            let Ok(event) = validate(&value) else {
                // A duplicate of a broken message is broken.
                assert_eq!(message.fault, Fault::Duplicate);
                continue;
            };
            v2 += usize::from(event.envelope.event_type == EventType::ClassificationPerformedV2);
            if message.fault == Fault::NewEnumValue {
                assert!(!event.data.new_enum_values().is_empty(), "{event:?}");
                new_values += 1;
            }
        }
        assert!(
            v2 > 100 && new_values > 10,
            "{v2} v2, {new_values} new values"
        );
    }

    #[test]
    fn a_shared_id_is_another_tenants_valid_event_id() {
        let messages: Vec<Emitted> = Generator::new(options(9, 5_000, noisy())).collect();
        let owners: HashMap<String, String> = messages
            .iter()
            .filter(|m| m.fault == Fault::None)
            .filter_map(|m| {
                let value = parse(&m.bytes).ok()?;
                let event = validate(&value).ok()?;
                let id = event.envelope.event_id.to_string();
                Some((id, event.envelope.tenant_id.to_string()))
            })
            .collect();
        let mut shared = 0;
        for message in messages.iter().filter(|m| m.fault == Fault::SharedId) {
            let value = parse(&message.bytes).expect("a shared id keeps the event valid");
            let event = validate(&value).expect("a shared id keeps the event valid");
            let owner = &owners[&event.envelope.event_id.to_string()];
            assert_ne!(owner.as_str(), event.envelope.tenant_id);
            shared += 1;
        }
        assert!(shared > 10, "only {shared} shared ids");
    }

    #[test]
    fn late_events_arrive_minutes_behind_the_stream() {
        let messages: Vec<Emitted> = Generator::new(options(5, 5_000, noisy())).collect();
        let mut max_seen = i64::MIN;
        let mut late_lags = Vec::new();
        for message in &messages {
            let Ok(value) = parse(&message.bytes) else {
                continue;
            };
            let Ok(event) = validate(&value) else {
                continue;
            };
            let at = event.envelope.timestamp.timestamp_millis();
            if message.fault == Fault::Late {
                late_lags.push(max_seen - at);
            }
            max_seen = max_seen.max(at);
        }
        assert!(!late_lags.is_empty());
        assert!(late_lags.iter().all(|lag| *lag >= 100_000), "{late_lags:?}");
    }

    #[test]
    fn conversations_chain_and_their_totals_agree() {
        let messages: Vec<Emitted> =
            Generator::new(options(11, 4_000, FaultRates::default())).collect();
        let values: Vec<salestalk_contracts::Json<'_>> = messages
            .iter()
            .map(|m| parse(&m.bytes).expect("json"))
            .collect();
        let mut cost_by_session: HashMap<&str, f64> = HashMap::new();
        let mut turns_by_session: HashMap<&str, u64> = HashMap::new();
        let mut classifications: HashMap<String, (String, String)> = HashMap::new();
        for value in &values {
            let event = validate(value).expect("valid");
            match &event.data {
                EventData::ClassificationPerformed(_) => {
                    classifications.insert(
                        event.envelope.event_id.to_string(),
                        (
                            event
                                .envelope
                                .metadata
                                .correlation_id
                                .unwrap_or_default()
                                .to_string(),
                            event.envelope.session_id.unwrap_or_default().to_string(),
                        ),
                    );
                }
                EventData::NarrativeGenerated(n) => {
                    let cause = event
                        .envelope
                        .metadata
                        .causation_id
                        .expect("narratives name their cause")
                        .to_string();
                    let (correlation, session) =
                        classifications.get(&cause).expect("cause delivered first");
                    assert_eq!(
                        Some(correlation.as_str()),
                        event.envelope.metadata.correlation_id
                    );
                    assert_eq!(session, event.envelope.session_id.unwrap_or_default());
                    assert_eq!(n.conversation_id, session);
                    *cost_by_session.entry(n.conversation_id).or_default() += n.cost.amount_usd;
                    *turns_by_session.entry(n.conversation_id).or_default() += 1;
                    assert_eq!(
                        n.token_usage.total,
                        n.token_usage
                            .prompt
                            .zip(n.token_usage.completion)
                            .map(|(p, c)| p + c)
                    );
                }
                EventData::ConversationCompleted(c) => {
                    let turns = turns_by_session[c.conversation_id];
                    assert_eq!(c.assistant_message_count, turns);
                    assert_eq!(
                        c.message_count,
                        c.user_message_count + c.assistant_message_count
                    );
                    assert!((c.total_cost_usd - cost_by_session[c.conversation_id]).abs() < 1e-9);
                    assert!(c.end_time >= c.start_time);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn the_rate_is_events_per_second_of_event_time() {
        let mut opts = options(4, 0, FaultRates::default());
        opts.rate = 5.0;
        opts.stop = Stop::Duration(Duration::hours(2));
        let events = Generator::new(opts).count() as f64;
        let expected = 5.0 * 7200.0;
        assert!(
            (events / expected - 1.0).abs() < 0.1,
            "{events} events for {expected} expected"
        );
    }

    #[test]
    fn tenant_sizes_are_skewed() {
        let mut per_tenant: HashMap<String, u64> = HashMap::new();
        for message in Generator::new(options(2, 10_000, FaultRates::default())) {
            *per_tenant.entry(message.tenant_id).or_default() += 1;
        }
        let mut sizes: Vec<u64> = per_tenant.into_values().collect();
        sizes.sort_unstable();
        let largest = *sizes.last().expect("tenants");
        assert!(largest > 5 * sizes[sizes.len() / 2], "{sizes:?}");
    }

    #[test]
    fn without_skew_every_tenant_is_about_as_busy() {
        let mut per_tenant: HashMap<String, u64> = HashMap::new();
        let uniform = GeneratorOptions {
            tenants: 200,
            tenant_skew: 0.0,
            ..options(2, 30_000, FaultRates::default())
        };
        for message in Generator::new(uniform) {
            *per_tenant.entry(message.tenant_id).or_default() += 1;
        }
        assert_eq!(per_tenant.len(), 200);
        let mut sizes: Vec<u64> = per_tenant.into_values().collect();
        sizes.sort_unstable();
        // 150 events each on average: the busiest within a small multiple of the median.
        let largest = *sizes.last().expect("tenants");
        assert!(largest < 2 * sizes[sizes.len() / 2], "{sizes:?}");
    }
}
