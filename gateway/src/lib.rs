//! The ingest gateway (`salestalk ingest`): the publishing side. SalesTalk services `POST /v1/events` a batch of
//! entries with a publisher key; each entry is checked at the edge (size, contract, the key's
//! tenants, the tenant's rate) and the valid ones are produced to the topic their event type
//! routes to, keyed by tenant, acknowledged by every in-sync replica (`acks=all`), or put to
//! their domain's Kinesis stream when `ingest.kinesis_event_types` names their type. The answer
//! lists one result per entry, in order, EventBridge-style, and comes only once the broker has
//! answered for every entry.
//!
//! Status codes: 200 whenever the request was understood (even if every entry failed
//! validation), 401 without a valid publisher key, 400 for a body that is not an entries
//! document or has too many entries, 413 for a body over the limit, 503 (with `Retry-After`)
//! when the broker failed every entry it was given.

pub mod client;
pub mod ledger;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use salestalk_contracts::{EventType, Json, Violation, other_tenant, parse, validate};
use salestalk_kafka::KafkaSettings;
use salestalk_kafka::producer::{self, deliver};
use salestalk_kinesis::{KinesisSettings, put};
use salestalk_operators::dead_letter::DeadLetterReason;
use salestalk_operators::flush::{Address, DeadLetter, Readable, Rejection};
use salestalk_operators::routing::Pattern;
use salestalk_operators::{DeadLetterAddress, PublishPath};
use salestalk_sinks::clickhouse::ingest_ledger::{NO_TOPIC, RefusedEntry};
use salestalk_store::Endpoint;
use salestalk_store::tables::api_keys::{ApiKey, Role, is_platform};
use salestalk_store::tables::ingest_outcomes::IngestOutcome;

use salestalk_http::access::{Access, ClientAddress, KeyCache, too_many_failures};
use salestalk_http::rate::TenantRates;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// `[ingest]`: the gateway's address and limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Where it listens.
    pub listen: String,
    /// Most entries in one request.
    pub max_entries: usize,
    /// Largest entry, bytes.
    pub max_entry_bytes: usize,
    /// Largest request body, bytes.
    pub max_request_bytes: usize,
    /// Entries a tenant may publish per second, sustained (and in one burst).
    pub tenant_entries_per_second: u32,
    /// Refused entries (invalid, another tenant's, too large) a key may send per second,
    /// sustained and in one burst (at most `tenant_entries_per_second`); past it they are answered `Throttled` and not kept as
    /// dead letters, so a key cannot flood `dead_letters` for free.
    pub refused_entries_per_second: u32,
    /// How long a verified key is trusted before ClickHouse is asked again, ms (a revocation
    /// takes at most this long to reach a running gateway).
    pub key_cache_ms: u64,
    /// While ClickHouse cannot be asked, how long after its last check a key is still
    /// answered from the cache (accepted if it was verified, refused if it was refused), ms.
    pub key_stale_ms: u64,
    /// How long the broker has to acknowledge an entry before it is `PublishFailed`, ms.
    pub publish_timeout_ms: u64,
    /// Whether the producer is idempotent (a retry inside the client never duplicates an
    /// entry). Off for the local broker: tansu 0.6.0 forgets producer ids over a restart and
    /// hands the same ones out again, and the partitions then refuse the reused id's
    /// sequence numbers until the topic is gone.
    pub idempotent_producer: bool,
    /// Event-type patterns (`narrative.*`) whose entries are put to their domain's Kinesis
    /// stream (`kinesis.stream_template`) instead of the Kafka topic; empty: all to Kafka.
    pub kinesis_event_types: Vec<String>,
}

/// Most entries a request may be allowed (a typo must not turn the limit off).
const MAX_ENTRIES_CEILING: usize = 10_000;

impl IngestSettings {
    /// The address, checked.
    pub fn listen(&self) -> std::io::Result<std::net::SocketAddr> {
        salestalk_http::server::listen_address(&self.listen)
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(salestalk_http::server::listen_problem(
            "ingest.listen",
            &self.listen,
            "127.0.0.1:8088",
        ));
        if !(1..=MAX_ENTRIES_CEILING).contains(&self.max_entries) {
            out.push(format!(
                "ingest.max_entries: {} is outside 1..={MAX_ENTRIES_CEILING}",
                self.max_entries
            ));
        }
        // The HTTP server takes no body over its own limit, whatever this says.
        let ceiling = salestalk_http::server::MAX_BODY_BYTES;
        for (key, value) in [
            ("ingest.max_entry_bytes", self.max_entry_bytes),
            ("ingest.max_request_bytes", self.max_request_bytes),
        ] {
            if !(1_024..=ceiling).contains(&value) {
                out.push(format!("{key}: {value} is outside 1024..={ceiling}"));
            }
        }
        if self.tenant_entries_per_second == 0 {
            out.push("ingest.tenant_entries_per_second must be at least 1".into());
        }
        if self.refused_entries_per_second == 0 {
            out.push("ingest.refused_entries_per_second must be at least 1".into());
        }
        if !(1_000..=120_000).contains(&self.publish_timeout_ms) {
            out.push(format!(
                "ingest.publish_timeout_ms: {} is outside 1000..=120000",
                self.publish_timeout_ms
            ));
        }
        if !(self.key_cache_ms..=86_400_000).contains(&self.key_stale_ms) {
            out.push(format!(
                "ingest.key_stale_ms: {} is outside key_cache_ms..=86400000",
                self.key_stale_ms
            ));
        }
        for (i, text) in self.kinesis_event_types.iter().enumerate() {
            match Pattern::parse(text) {
                Err(error) => out.push(format!("ingest.kinesis_event_types[{i}]: {error}")),
                Ok(pattern) if !pattern.matches_a_known_event_type() => {
                    out.push(format!(
                        "ingest.kinesis_event_types[{i}]: '{pattern}' matches no event type this build knows"
                    ));
                }
                Ok(_) => {}
            }
        }
        if self.key_cache_ms > 300_000 {
            out.push(format!(
                "ingest.key_cache_ms: {} is over 300000 (a revocation would take that long)",
                self.key_cache_ms
            ));
        }
        out
    }
}

/// The event types the gateway puts to Kinesis, and where.
pub struct KinesisRoute {
    /// The streams' settings (`stream_for`).
    pub settings: KinesisSettings,
    /// `ingest.kinesis_event_types`, parsed.
    pub event_types: Vec<Pattern>,
}

impl KinesisRoute {
    /// The route `ingest` asks for, `None` when it sends every type to Kafka (settings
    /// checked first: an unparsable pattern is left out).
    pub fn of(ingest: &IngestSettings, kinesis: &KinesisSettings) -> Option<Self> {
        let event_types: Vec<Pattern> = ingest
            .kinesis_event_types
            .iter()
            .filter_map(|text| Pattern::parse(text).ok())
            .collect();
        (!event_types.is_empty()).then(|| Self {
            settings: kinesis.clone(),
            event_types,
        })
    }

    /// The stream an event of `event_type` is put to, if Kinesis takes it.
    fn stream_for(&self, event_type: EventType) -> Option<String> {
        self.event_types
            .iter()
            .any(|p| p.matches(event_type.as_str()))
            .then(|| self.settings.stream_for(event_type.domain()))
    }
}

/// Where an accepted entry is published.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// A Kafka topic.
    Topic(String),
    /// A Kinesis stream.
    Stream(String),
}

impl Destination {
    /// The topic's or the stream's name.
    fn name(&self) -> &str {
        match self {
            Self::Topic(name) | Self::Stream(name) => name,
        }
    }
}

/// The Kinesis half of a gateway: the client and the route.
struct KinesisBus {
    client: salestalk_kinesis::Client,
    route: KinesisRoute,
}

/// What every request handler shares.
pub struct Gateway {
    settings: IngestSettings,
    kafka: KafkaSettings,
    kinesis: Option<KinesisBus>,
    endpoint: Endpoint,
    producer: producer::Awaited,
    keys: KeyCache,
    rates: TenantRates,
    refused: TenantRates,
    ledger: ledger::Ledger,
}

/// Why a gateway could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The Kafka producer could not be configured (bad settings: not retryable; librdkafka
    /// connects lazily, so an unreachable broker is not this).
    #[error("creating the Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
}

impl GatewayError {
    /// Whether making the gateway again may succeed: never, the settings are wrong.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl Gateway {
    /// A gateway publishing to `kafka`'s brokers and checking keys in `endpoint`, counting at
    /// most `max_sources_per_day` sources per tenant and day (`pipeline.max_sources_per_day`,
    /// as the pipeline's publish rows beside its own).
    pub fn new(
        settings: IngestSettings,
        kafka: KafkaSettings,
        endpoint: Endpoint,
        max_sources_per_day: usize,
    ) -> Result<Self, GatewayError> {
        let producer = producer::publishing(
            &kafka,
            settings.idempotent_producer,
            settings.publish_timeout_ms,
        )
        .map_err(GatewayError::Producer)?;
        let keys = KeyCache::new(endpoint.clone(), settings.key_cache_ms)
            .serve_stale_for(settings.key_stale_ms);
        let rates = TenantRates::new(settings.tenant_entries_per_second);
        // Never more than a tenant's own rate.
        let refused = TenantRates::new(
            settings
                .refused_entries_per_second
                .min(settings.tenant_entries_per_second),
        );
        Ok(Self {
            settings,
            kafka,
            kinesis: None,
            endpoint,
            producer,
            keys,
            rates,
            refused,
            ledger: ledger::Ledger::new(max_sources_per_day),
        })
    }

    /// Puts the entries of `route`'s event types to Kinesis with `client` instead of Kafka.
    pub fn publishing_to_kinesis(
        mut self,
        client: salestalk_kinesis::Client,
        route: KinesisRoute,
    ) -> Self {
        self.kinesis = Some(KinesisBus { client, route });
        self
    }

    /// Stores the ledger every second until `stop` resolves, then once more.
    pub async fn keep_ledger(&self, stop: impl std::future::Future<Output = ()>) {
        self.ledger.run(self.endpoint.clone(), stop).await;
    }

    /// Stores what the ledger holds now (after the last request was answered).
    pub async fn store_ledger(&self) {
        self.ledger.write(&self.endpoint).await;
    }
}

/// The gateway's routes (`/health` and `/health/live` are answered in front of them,
/// `salestalk_http::probes`).
pub fn router(gateway: Arc<Gateway>) -> Router {
    let limit = gateway.settings.max_request_bytes;
    Router::new()
        .route("/v1/events", post(publish))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

/// A request body: its entries, each still raw.
#[derive(Deserialize)]
pub struct Batch<'a> {
    /// The entries, unparsed.
    #[serde(borrow)]
    pub entries: Vec<&'a RawValue>,
}

/// Longest tenant, source or event type (bytes) the ledger takes from an entry that did not
/// validate: a valid entry's are bounded by the contract (128 characters, at most 4 bytes
/// each), so this never cuts a valid one.
const MAX_READABLE_LEN: usize = 4 * salestalk_contracts::limits::MAX_IDENTIFIER_LEN;

/// One entry as judged before publishing: what can be read of it, and its fate.
struct Judged<'a> {
    id: String,
    /// The tenant it is counted under: its own when the key publishes for it, `""` otherwise
    /// (another tenant's numbers never move because of this key).
    tenant: &'a str,
    source: &'a str,
    event_type: &'a str,
    correlation_id: &'a str,
    /// Where it goes, when its type is known and its tenant allowed.
    destination: Option<Destination>,
    /// `None` to publish, or why not: the outcome, a message, and pointer errors.
    refusal: Option<(IngestOutcome, String, Vec<Value>)>,
}

fn failure(event_id: &str, outcome: IngestOutcome, message: &str, errors: &[Value]) -> Value {
    let mut result =
        json!({"eventId": event_id, "errorCode": outcome.as_str(), "errorMessage": message});
    if !errors.is_empty() {
        result["errors"] = Value::Array(errors.to_vec());
    }
    result
}

fn answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn publish(
    State(gateway): State<Arc<Gateway>>,
    client: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unauthorized = || {
        answer(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "a publisher key is needed: Authorization: Bearer stk_..."}),
        )
    };
    let key = match gateway
        .keys
        .from_headers(&headers, client.map(|c| c.0))
        .await
    {
        Ok(Access::Granted(key)) if matches!(key.role, Role::Publisher | Role::Admin) => key,
        Ok(Access::Throttled(wait)) => return too_many_failures(wait).into_response(),
        Ok(_) => return unauthorized(),
        Err(error) => {
            tracing::warn!(%error, "checking an API key");
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "keys cannot be checked now; try again"}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        }
    };
    let settings = &gateway.settings;
    let batch = match read_batch(settings, &body) {
        Ok(batch) => batch,
        Err((status, error)) => return answer(status, &json!({ "error": error })),
    };

    let received_ms = salestalk_operators::time::now_ms() as i64;
    let parsed: Vec<Result<Json<'_>, Violation>> = batch
        .entries
        .iter()
        .map(|entry| parse(entry.get().as_bytes()))
        .collect();
    let rules = Rules {
        settings,
        kafka: &gateway.kafka,
        kinesis: gateway.kinesis.as_ref().map(|bus| &bus.route),
    };
    let mut judged: Vec<Judged<'_>> = batch
        .entries
        .iter()
        .zip(&parsed)
        .map(|(entry, value)| rules.judge(&key, entry.get().as_bytes(), value.as_ref()))
        .collect();
    charge_rates(&gateway, &mut judged);
    charge_refusals(&gateway, &key, &mut judged);

    let mut published = publish_accepted(&gateway, &batch.entries, &judged)
        .await
        .into_iter();
    let (mut to_broker, mut broker_failed) = (0, 0);
    let mut results = Vec::with_capacity(judged.len());
    let mut tally: HashMap<(&str, &str, IngestOutcome), u64> = HashMap::new();
    for (entry, judged) in batch.entries.iter().zip(&judged) {
        let (outcome, message, errors) = match &judged.refusal {
            Some((outcome, message, errors)) => (*outcome, message.clone(), errors.as_slice()),
            None => {
                to_broker += 1;
                let (outcome, message) = published.next().unwrap_or((
                    IngestOutcome::PublishFailed,
                    "the broker did not answer".to_string(),
                ));
                if outcome == IngestOutcome::PublishFailed {
                    broker_failed += 1;
                }
                (outcome, message, &[][..])
            }
        };
        *tally
            .entry((judged.tenant, judged.source, outcome))
            .or_default() += 1;
        if outcome == IngestOutcome::Accepted {
            results.push(json!({"eventId": judged.id}));
            continue;
        }
        if IngestOutcome::REJECTED.contains(&outcome) {
            // Its address among dead letters: random, as no broker offset exists.
            let id = rand::random::<i64>() & i64::MAX;
            let letter = DeadLetter::new(
                Address {
                    offset: id,
                    broker_ms: received_ms,
                },
                Readable {
                    tenant: judged.tenant,
                    source: judged.source,
                    event_type: judged.event_type,
                    event_id: &judged.id,
                    correlation_id: judged.correlation_id,
                },
                Rejection::at_once(
                    DeadLetterReason::RejectedAtIngest,
                    describe_refusal(outcome, &message, errors),
                ),
                entry.get().as_bytes().to_vec(),
            );
            gateway.ledger.refuse(RefusedEntry {
                address: DeadLetterAddress::Unassigned {
                    topic: judged
                        .destination
                        .as_ref()
                        .map_or_else(|| NO_TOPIC.to_string(), |d| d.name().to_string()),
                    id,
                },
                letter,
            });
        }
        results.push(failure(&judged.id, outcome, &message, errors));
    }
    let minute_s = salestalk_operators::time::minute_start(received_ms);
    for ((tenant, source, outcome), entries) in &tally {
        gateway
            .ledger
            .count(minute_s, tenant, source, *outcome, *entries);
    }

    let failed = results
        .iter()
        .filter(|r| r.get("errorCode").is_some())
        .count();
    let body = json!({"failedEntryCount": failed, "entries": results});
    if to_broker > 0 && broker_failed == to_broker {
        let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, &body);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return response;
    }
    let mut response = answer(StatusCode::OK, &body);
    // A tenant's bucket refills within a second: say when a resend of the throttled entries
    // will find room.
    if tally
        .keys()
        .any(|(_, _, outcome)| *outcome == IngestOutcome::Throttled)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// Publishes the entries judged publishable (those without a refusal), each to its
/// destination: Kafka's records in one delivery, each Kinesis stream's in one `PutRecords`
/// series, all at once. One outcome per publishable entry, in order: `Accepted`,
/// `PublishFailed` with why, or `Throttled` when a stream stayed over its throughput.
async fn publish_accepted(
    gateway: &Gateway,
    entries: &[&RawValue],
    judged: &[Judged<'_>],
) -> Vec<(IngestOutcome, String)> {
    let publishable: Vec<(&[u8], &Judged<'_>)> = entries
        .iter()
        .zip(judged)
        .filter(|(_, judged)| judged.refusal.is_none() && judged.destination.is_some())
        .map(|(entry, judged)| (entry.get().as_bytes(), judged))
        .collect();
    let mut outcomes: Vec<Option<(IngestOutcome, String)>> = vec![None; publishable.len()];

    // Collected, not a lazy iterator: a closure held across the await would keep the future
    // from being `Send` (rustc cannot prove it for every lifetime).
    let mut records: Vec<FutureRecord<'_, str, [u8]>> = Vec::new();
    let mut to_kafka: Vec<usize> = Vec::new();
    // The gateway's mark goes in the partition key: Kinesis records have no headers.
    let keys: Vec<Option<String>> = publishable
        .iter()
        .map(|(_, judged)| {
            matches!(judged.destination, Some(Destination::Stream(_)))
                .then(|| format!("{}{}", PublishPath::KINESIS_KEY_PREFIX, judged.tenant))
        })
        .collect();
    let mut streams: BTreeMap<&str, (Vec<put::Record<'_>>, Vec<usize>)> = BTreeMap::new();
    for (i, (bytes, judged)) in publishable.iter().enumerate() {
        match &judged.destination {
            Some(Destination::Topic(topic)) => {
                to_kafka.push(i);
                records.push(
                    FutureRecord::to(topic)
                        .key(judged.tenant)
                        .payload(*bytes)
                        .headers(OwnedHeaders::new().insert(Header {
                            key: PublishPath::HEADER,
                            value: Some(PublishPath::GATEWAY),
                        })),
                );
            }
            Some(Destination::Stream(stream)) => {
                let (records, members) = streams.entry(stream).or_default();
                records.push(put::Record {
                    partition_key: keys[i].as_deref().unwrap_or_default(),
                    data: bytes,
                });
                members.push(i);
            }
            None => {}
        }
    }
    let kinesis = gateway.kinesis.as_ref();
    let puts = streams
        .iter()
        .map(|(stream, (records, members))| async move {
            let answer = match kinesis {
                Some(bus) => put::put_records(&bus.client, stream, records).await,
                None => Err(salestalk_kinesis::KinesisError::Refused(
                    "no Kinesis client".into(),
                )),
            };
            (stream, members, answer)
        });
    let (delivered, put) = tokio::join!(
        deliver(&gateway.producer, records),
        futures_util::future::join_all(puts)
    );
    for (i, result) in to_kafka.into_iter().zip(delivered) {
        outcomes[i] = Some(match result {
            Ok(()) => (IngestOutcome::Accepted, String::new()),
            Err(error) => (
                IngestOutcome::PublishFailed,
                format!("the broker did not take it: {error}"),
            ),
        });
    }
    for (stream, members, answer) in put {
        match answer {
            Ok(answers) => {
                for (&i, answer) in members.iter().zip(answers) {
                    outcomes[i] = Some(match answer {
                        put::Outcome::Stored { .. } => (IngestOutcome::Accepted, String::new()),
                        put::Outcome::Failed(error) => (
                            IngestOutcome::PublishFailed,
                            format!("stream {stream} did not take it: {error}"),
                        ),
                        put::Outcome::Throttled(error) => (
                            IngestOutcome::Throttled,
                            format!(
                                "stream {stream} is over its throughput ({error}); retry later"
                            ),
                        ),
                    });
                }
            }
            Err(error) => {
                tracing::warn!(stream, %error, "putting entries to Kinesis");
                for &i in members {
                    outcomes[i] = Some((
                        IngestOutcome::PublishFailed,
                        format!("stream {stream} did not take it: {error}"),
                    ));
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                (
                    IngestOutcome::PublishFailed,
                    "the broker did not answer".to_string(),
                )
            })
        })
        .collect()
}

/// Every refused entry costs its key one of [`IngestSettings::refused_entries_per_second`];
/// past them an entry is answered `Throttled` (saying why) instead, and is not kept as a
/// dead letter.
fn charge_refusals(gateway: &Gateway, key: &ApiKey, judged: &mut [Judged<'_>]) {
    let now = Instant::now();
    for entry in judged {
        let Some((outcome, message, _)) = &mut entry.refusal else {
            continue;
        };
        if !IngestOutcome::REJECTED.contains(outcome) || gateway.refused.allow(&key.id, now) {
            continue;
        }
        *message = format!(
            "{} ({message}); this key sent more than {} refused entries a second: \
             fix the entries, then retry",
            outcome.as_str(),
            gateway.settings.refused_entries_per_second
        );
        *outcome = IngestOutcome::Throttled;
    }
}

/// A refused entry's dead-letter error: its code, message and first pointers.
fn describe_refusal(outcome: IngestOutcome, message: &str, errors: &[Value]) -> String {
    let mut text = format!("{}: {message}", outcome.as_str());
    for error in errors.iter().take(20) {
        let path = error["path"].as_str().unwrap_or_default();
        let what = error["message"].as_str().unwrap_or_default();
        text.push_str(&format!("; {path}: {what}"));
    }
    text
}

/// A readable envelope field of an entry, if short enough to count under.
fn readable<'a>(value: Option<&'a Json<'a>>, name: &str) -> &'a str {
    value
        .and_then(|v| v.get(name))
        .and_then(Json::as_str)
        .filter(|s| s.len() <= MAX_READABLE_LEN)
        .unwrap_or("")
}

/// The checks of one entry that need no network: the contract, the key's tenants and event
/// types, the entry size, the route. Pure, so the hostile-input suite runs it on anything.
pub struct Rules<'s> {
    /// The gateway's limits.
    pub settings: &'s IngestSettings,
    /// Where each event type goes on Kafka.
    pub kafka: &'s KafkaSettings,
    /// The event types put to Kinesis instead, if any.
    pub kinesis: Option<&'s KinesisRoute>,
}

impl<'a> Rules<'_> {
    /// What happens to one entry: every check a gateway can make before the broker, on the one
    /// parse (`parsed`: the document, or why it is not JSON).
    fn judge(
        &self,
        key: &ApiKey,
        bytes: &[u8],
        parsed: Result<&'a Json<'a>, &Violation>,
    ) -> Judged<'a> {
        let value = parsed.ok();
        let claimed = readable(value, "tenantId");
        let allowed = key.role == Role::Admin || key.tenants.iter().any(|t| t == claimed);
        let event_type = readable(value, "eventType");
        let mut judged = Judged {
            id: readable(value, "eventId").to_string(),
            tenant: if allowed { claimed } else { "" },
            source: readable(value, "source"),
            event_type,
            correlation_id: readable(value.and_then(|v| v.get("metadata")), "correlationId"),
            destination: EventType::parse(event_type)
                .ok()
                .filter(|_| allowed)
                .map(
                    |t| match self.kinesis.and_then(|route| route.stream_for(t)) {
                        Some(stream) => Destination::Stream(stream),
                        None => Destination::Topic(self.kafka.topic_for(t.domain())),
                    },
                ),
            refusal: None,
        };
        let value = match parsed {
            Ok(value) => value,
            Err(violation) => {
                let errors =
                    vec![json!({"path": violation.path, "message": violation.kind.to_string()})];
                judged.refusal = Some((
                    IngestOutcome::ValidationError,
                    "not a JSON event".into(),
                    errors,
                ));
                return judged;
            }
        };
        let limit = self.settings.max_entry_bytes;
        if bytes.len() > limit {
            let message = format!(
                "the entry is {} bytes, over the {limit}-byte limit",
                bytes.len()
            );
            judged.refusal = Some((IngestOutcome::TooLarge, message, Vec::new()));
            return judged;
        }
        let event = match validate(value) {
            Ok(event) => event,
            Err(violations) => {
                let errors: Vec<Value> = violations
                    .iter()
                    .take(100)
                    .map(|v| json!({"path": v.path, "message": v.kind.to_string()}))
                    .collect();
                let message = format!("{} contract violation(s)", violations.len());
                judged.refusal = Some((IngestOutcome::ValidationError, message, errors));
                return judged;
            }
        };
        if !allowed {
            let message = format!("this key does not publish for tenant '{claimed}'");
            judged.refusal = Some((IngestOutcome::TenantNotAllowed, message, Vec::new()));
            return judged;
        }
        if let Some(violation) = other_tenant(&event) {
            let message = format!(
                "{} {}: an entry speaks only for its own tenant '{claimed}'",
                violation.path, violation.kind
            );
            let errors =
                vec![json!({"path": violation.path, "message": violation.kind.to_string()})];
            judged.refusal = Some((IngestOutcome::TenantNotAllowed, message, errors));
            return judged;
        }
        if !key.may_publish(event_type) {
            let message = if is_platform(event_type) {
                format!("{event_type} is a platform event: this key has no grant for it")
            } else {
                format!("this key does not publish {event_type}")
            };
            judged.refusal = Some((IngestOutcome::TenantNotAllowed, message, Vec::new()));
            return judged;
        }
        judged
    }
}

/// Entries that passed every check take from their tenant's rate
/// (`ingest.tenant_entries_per_second`); past it they are answered `Throttled`.
fn charge_rates(gateway: &Gateway, judged: &mut [Judged<'_>]) {
    let now = Instant::now();
    for entry in judged {
        if entry.refusal.is_some() || entry.destination.is_none() {
            continue;
        }
        if !gateway.rates.allow(entry.tenant, now) {
            let message = format!(
                "tenant '{}' is over {} entries a second; retry later",
                entry.tenant, gateway.settings.tenant_entries_per_second
            );
            entry.refusal = Some((IngestOutcome::Throttled, message, Vec::new()));
        }
    }
}

/// The entries of a request body, or the status and error refusing it whole.
pub fn read_batch<'b>(
    settings: &IngestSettings,
    body: &'b [u8],
) -> Result<Batch<'b>, (StatusCode, String)> {
    if body.len() > settings.max_request_bytes {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request bodies are limited to {} bytes",
                settings.max_request_bytes
            ),
        ));
    }
    let batch: Batch<'_> = serde_json::from_slice(body).map_err(|error| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"entries\": [event, ...]}}: {error}"),
        )
    })?;
    if batch.entries.is_empty() || batch.entries.len() > settings.max_entries {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "1 to {} entries per request, not {}",
                settings.max_entries,
                batch.entries.len()
            ),
        ));
    }
    Ok(batch)
}

/// What the gateway would answer each entry of `body` from `key`, before rates and the
/// broker: the outcome and message per entry, or the refusal of the whole body. For the
/// hostile-input suite: the same code as the handler.
pub fn judge_request(
    rules: &Rules<'_>,
    key: &ApiKey,
    body: &[u8],
) -> Result<Vec<(IngestOutcome, String)>, (StatusCode, String)> {
    let batch = read_batch(rules.settings, body)?;
    Ok(batch
        .entries
        .iter()
        .map(|entry| {
            let bytes = entry.get().as_bytes();
            let parsed = parse(bytes);
            let judged = rules.judge(key, bytes, parsed.as_ref());
            match judged.refusal {
                Some((outcome, message, _)) => (outcome, message),
                None => (IngestOutcome::Accepted, String::new()),
            }
        })
        .collect())
}
