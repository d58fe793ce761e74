//! `salestalk ingest`: the publishing side. SalesTalk services `POST /v1/events` a batch of
//! entries with a publisher key; each entry is checked at the edge (size, contract, the key's
//! tenants, the tenant's rate) and the valid ones are produced to the topic their event type
//! routes to, keyed by tenant, acknowledged by every in-sync replica (`acks=all`). The answer
//! lists one result per entry, in order, EventBridge-style, and comes only once the broker has
//! answered for every entry.
//!
//! Status codes: 200 whenever the request was understood (even if every entry failed
//! validation), 401 without a valid publisher key, 400 for a body that is not an entries
//! document or has too many entries, 413 for a body over the limit, 503 (with `Retry-After`)
//! when the broker failed every entry it was given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rdkafka::producer::{FutureProducer, FutureRecord};
use salestalk_contracts::{parse, validate};
use salestalk_kafka::KafkaSettings;
use salestalk_kafka::producer::{self, deliver};
use salestalk_store::Endpoint;
use salestalk_store::keys::{ApiKey, Role};
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
    /// How long a verified key is trusted before ClickHouse is asked again, ms (a revocation
    /// takes at most this long to reach a running gateway).
    pub key_cache_ms: u64,
}

/// Most entries a request may be allowed (a typo must not turn the limit off).
const MAX_ENTRIES_CEILING: usize = 10_000;

impl IngestSettings {
    /// The address, checked.
    pub fn listen(&self) -> std::io::Result<std::net::SocketAddr> {
        crate::http::listen_address(&self.listen)
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.listen().is_err() {
            out.push(format!(
                "ingest.listen: '{}' is not an address like 127.0.0.1:8088",
                self.listen
            ));
        }
        if !(1..=MAX_ENTRIES_CEILING).contains(&self.max_entries) {
            out.push(format!(
                "ingest.max_entries: {} is outside 1..={MAX_ENTRIES_CEILING}",
                self.max_entries
            ));
        }
        // The HTTP server takes no body over its own limit, whatever this says.
        let ceiling = crate::http::MAX_BODY_BYTES;
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
        if self.key_cache_ms > 300_000 {
            out.push(format!(
                "ingest.key_cache_ms: {} is over 300000 (a revocation would take that long)",
                self.key_cache_ms
            ));
        }
        out
    }
}

/// A tenant's allowance of entries: refilled at the configured rate, up to one second's worth.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    tokens: f64,
    at: Instant,
}

/// What every request handler shares.
pub struct Gateway {
    settings: IngestSettings,
    kafka: KafkaSettings,
    endpoint: Endpoint,
    producer: FutureProducer,
    keys: Mutex<HashMap<String, (Instant, Option<ApiKey>)>>,
    allowances: Mutex<HashMap<String, Allowance>>,
}

impl Gateway {
    /// A gateway publishing to `kafka`'s brokers and checking keys in `endpoint`.
    pub fn new(
        settings: IngestSettings,
        kafka: KafkaSettings,
        endpoint: Endpoint,
    ) -> anyhow::Result<Self> {
        let producer = producer::acknowledged(&kafka)?;
        Ok(Self {
            settings,
            kafka,
            endpoint,
            producer,
            keys: Mutex::new(HashMap::new()),
            allowances: Mutex::new(HashMap::new()),
        })
    }

    /// The key `presented` stands for, from the cache while it is fresh.
    async fn verify(
        &self,
        presented: &str,
    ) -> Result<Option<ApiKey>, salestalk_store::ClickHouseError> {
        let fresh = Duration::from_millis(self.settings.key_cache_ms);
        if let Ok(keys) = self.keys.lock()
            && let Some((at, key)) = keys.get(presented)
            && at.elapsed() < fresh
        {
            return Ok(key.clone());
        }
        let key = self.endpoint.verify_key(presented).await?;
        if let Ok(mut keys) = self.keys.lock() {
            // Bounded: a flood of made-up keys must not grow it without end.
            if keys.len() >= 10_000 {
                keys.clear();
            }
            keys.insert(presented.to_string(), (Instant::now(), key.clone()));
        }
        Ok(key)
    }

    /// Whether `tenant` may publish one more entry now.
    fn allow(&self, tenant: &str) -> bool {
        let rate = f64::from(self.settings.tenant_entries_per_second);
        let Ok(mut allowances) = self.allowances.lock() else {
            return true;
        };
        let now = Instant::now();
        let allowance = allowances.entry(tenant.to_string()).or_insert(Allowance {
            tokens: rate,
            at: now,
        });
        allowance.tokens =
            (allowance.tokens + now.duration_since(allowance.at).as_secs_f64() * rate).min(rate);
        allowance.at = now;
        if allowance.tokens >= 1.0 {
            allowance.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The gateway's routes.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let limit = gateway.settings.max_request_bytes;
    Router::new()
        .route("/v1/events", post(publish))
        .route("/health", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    entries: Vec<&'a RawValue>,
}

/// One entry's fate before publishing.
enum Verdict {
    Failed(Value),
    Publish { topic: String, tenant: String },
}

fn failure(event_id: &str, code: &str, message: String) -> Value {
    json!({"eventId": event_id, "errorCode": code, "errorMessage": message})
}

fn answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn publish(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let unauthorized = || {
        answer(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "a publisher key is needed: Authorization: Bearer stk_..."}),
        )
    };
    let Some(presented) = presented else {
        return unauthorized();
    };
    let key = match gateway.verify(presented).await {
        Ok(Some(key)) if matches!(key.role, Role::Publisher | Role::Admin) => key,
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
    if body.len() > settings.max_request_bytes {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"error": format!("request bodies are limited to {} bytes", settings.max_request_bytes)}),
        );
    }
    let batch: Batch<'_> = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(error) => {
            return answer(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("the body must be {{\"entries\": [event, ...]}}: {error}")}),
            );
        }
    };
    if batch.entries.is_empty() || batch.entries.len() > settings.max_entries {
        return answer(
            StatusCode::BAD_REQUEST,
            &json!({"error": format!("1 to {} entries per request, not {}", settings.max_entries, batch.entries.len())}),
        );
    }

    let mut ids = Vec::with_capacity(batch.entries.len());
    let mut verdicts = Vec::with_capacity(batch.entries.len());
    for entry in &batch.entries {
        let (id, verdict) = judge(&gateway, &key, entry.get().as_bytes());
        ids.push(id);
        verdicts.push(verdict);
    }

    // Collected, not a lazy iterator: a closure held across the await would keep the future
    // from being `Send` (rustc cannot prove it for every lifetime).
    let mut records: Vec<FutureRecord<'_, str, [u8]>> = Vec::with_capacity(verdicts.len());
    for (entry, verdict) in batch.entries.iter().zip(&verdicts) {
        if let Verdict::Publish { topic, tenant } = verdict {
            records.push(
                FutureRecord::to(topic)
                    .key(tenant.as_str())
                    .payload(entry.get().as_bytes()),
            );
        }
    }
    let mut outcomes = deliver(&gateway.producer, records).await.into_iter();
    let (mut to_broker, mut broker_failed) = (0, 0);
    let mut results = Vec::with_capacity(verdicts.len());
    for (verdict, id) in verdicts.into_iter().zip(&ids) {
        results.push(match verdict {
            Verdict::Failed(result) => result,
            Verdict::Publish { .. } => {
                to_broker += 1;
                match outcomes.next() {
                    Some(Ok(())) => json!({"eventId": id}),
                    Some(Err(error)) => {
                        broker_failed += 1;
                        failure(
                            id,
                            "PublishFailed",
                            format!("the broker did not take it: {error}"),
                        )
                    }
                    None => {
                        broker_failed += 1;
                        failure(id, "PublishFailed", "the broker did not answer".into())
                    }
                }
            }
        });
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
    answer(StatusCode::OK, &body)
}

/// What happens to one entry, with its `eventId` as far as it can be read: every check a
/// gateway can make before the broker, on one parse.
fn judge(gateway: &Gateway, key: &ApiKey, bytes: &[u8]) -> (String, Verdict) {
    let value = match parse(bytes) {
        Ok(value) => value,
        Err(violation) => {
            let mut result = failure("", "ValidationError", "not a JSON event".into());
            result["errors"] =
                json!([{"path": violation.path, "message": violation.kind.to_string()}]);
            return (String::new(), Verdict::Failed(result));
        }
    };
    let id = value
        .get("eventId")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let limit = gateway.settings.max_entry_bytes;
    if bytes.len() > limit {
        let message = format!(
            "the entry is {} bytes, over the {limit}-byte limit",
            bytes.len()
        );
        return (
            id.clone(),
            Verdict::Failed(failure(&id, "TooLarge", message)),
        );
    }
    let event = match validate(&value) {
        Ok(event) => event,
        Err(violations) => {
            let errors: Vec<Value> = violations
                .iter()
                .take(100)
                .map(|v| json!({"path": v.path, "message": v.kind.to_string()}))
                .collect();
            let message = format!("{} contract violation(s)", violations.len());
            let mut result = failure(&id, "ValidationError", message);
            result["errors"] = Value::Array(errors);
            return (id, Verdict::Failed(result));
        }
    };
    let tenant = event.envelope.tenant_id;
    if key.role != Role::Admin && !key.tenants.iter().any(|t| t == tenant) {
        let message = format!("this key does not publish for tenant '{tenant}'");
        return (
            id.clone(),
            Verdict::Failed(failure(&id, "TenantNotAllowed", message)),
        );
    }
    if !gateway.allow(tenant) {
        let message = format!(
            "tenant '{tenant}' is over {} entries a second; retry later",
            gateway.settings.tenant_entries_per_second
        );
        return (
            id.clone(),
            Verdict::Failed(failure(&id, "Throttled", message)),
        );
    }
    let verdict = Verdict::Publish {
        topic: gateway.kafka.topic_for(event.envelope.event_type.domain()),
        tenant: tenant.to_string(),
    };
    (id, verdict)
}
