//! The client side of the gateway: `salestalk publish` and the gateway benchmark send JSON
//! Lines through it. A batch is one `POST /v1/events`; the entries the gateway answers as
//! retryable (`Throttled`, `PublishFailed`, or the whole request with 503) are sent again,
//! after the gateway's `Retry-After`, a bounded number of times. A resend is safe: the
//! pipeline counts a (tenantId, eventId) once.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest wait for one answer (the gateway waits up to its publish timeout for the broker).
const TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait before a resend, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Largest gateway answer read (one result per entry, with pointers).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Why a batch could not be published at all.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No answer: refused, reset or timed out. Retryable.
    #[error("{url} did not answer: {reason}")]
    Unreachable {
        /// The gateway.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The gateway refused the request as a whole (401, 400, 413, ...). Not retryable.
    #[error("{url} answered {status}: {message}")]
    Refused {
        /// The gateway.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Its `error`, or the body.
        message: String,
    },
}

/// One entry's result, as the gateway answered it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryResult {
    /// The entry's `eventId`, as far as it could be read.
    #[serde(default)]
    pub event_id: String,
    /// Why it failed, if it did.
    #[serde(default)]
    pub error_code: Option<String>,
    /// What the code means here.
    #[serde(default)]
    pub error_message: Option<String>,
    /// The contract's pointers, for a `ValidationError`.
    #[serde(default)]
    pub errors: Vec<PointerError>,
}

/// One violation of a `ValidationError`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PointerError {
    /// JSON pointer into the entry.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl EntryResult {
    /// Whether the gateway says to send it again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.error_code.as_deref(),
            Some("Throttled" | "PublishFailed")
        )
    }
}

#[derive(Deserialize)]
struct Answer {
    entries: Vec<EntryResult>,
}

/// What one batch took: each entry's final result, and each request's latency.
#[derive(Debug, Default)]
pub struct Published {
    /// One per entry, in order.
    pub results: Vec<EntryResult>,
    /// Every request made, with resends.
    pub request_latencies: Vec<Duration>,
}

/// A client of one gateway with one publisher key.
pub struct IngestClient {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    authorization: String,
}

impl IngestClient {
    /// Publishes to `base` (`http://host:port`) with `key`.
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: format!("{}/v1/events", base.trim_end_matches('/')),
            authorization: format!("Bearer {}", key.trim()),
        }
    }

    /// Publishes `entries` (one JSON document each; anything else is sent as a JSON string,
    /// which the gateway refuses and records), resending retryable ones up to `retries` times.
    pub async fn publish(
        &self,
        entries: &[Vec<u8>],
        retries: u32,
    ) -> Result<Published, PublishError> {
        let bodies: Vec<Vec<u8>> = entries.iter().map(|e| as_json(e)).collect();
        let mut published = Published {
            results: vec![
                EntryResult {
                    event_id: String::new(),
                    error_code: Some("NotSent".into()),
                    error_message: None,
                    errors: Vec::new(),
                };
                entries.len()
            ],
            request_latencies: Vec::new(),
        };
        let mut pending: Vec<usize> = (0..entries.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let started = Instant::now();
            let sent = self
                .send(pending.iter().map(|&i| bodies[i].as_slice()))
                .await;
            published.request_latencies.push(started.elapsed());
            let (results, retry_after) = match sent {
                Ok(answer) => answer,
                Err(error @ PublishError::Refused { .. }) => return Err(error),
                Err(error) if attempt >= retries => {
                    // What was published stays published; the rest is told as unsent.
                    for &i in &pending {
                        published.results[i].error_code = Some("Unreachable".into());
                        published.results[i].error_message = Some(error.to_string());
                    }
                    break;
                }
                Err(_) => (Vec::new(), None),
            };
            let mut again = Vec::new();
            if results.len() == pending.len() {
                for (&i, result) in pending.iter().zip(results) {
                    if result.is_retryable() && attempt < retries {
                        again.push(i);
                    }
                    published.results[i] = result;
                }
            } else {
                again = pending.clone();
            }
            if again.is_empty() || attempt >= retries {
                break;
            }
            attempt += 1;
            let backoff = Duration::from_millis(250 << attempt.min(7));
            tokio::time::sleep(retry_after.unwrap_or(backoff).min(MAX_BACKOFF)).await;
            pending = again;
        }
        Ok(published)
    }

    /// One request: the results in order and the answer's `Retry-After`.
    async fn send(
        &self,
        entries: impl Iterator<Item = &[u8]>,
    ) -> Result<(Vec<EntryResult>, Option<Duration>), PublishError> {
        let mut body = b"{\"entries\":[".to_vec();
        for (n, entry) in entries.enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(entry);
        }
        body.extend_from_slice(b"]}");
        let unreachable = |reason: String| PublishError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let request = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", &self.authorization)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PublishError::Refused {
                url: self.url.clone(),
                status: 0,
                message: e.to_string(),
            })?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        match status {
            200 | 503 => match serde_json::from_slice::<Answer>(&bytes) {
                Ok(answer) => Ok((answer.entries, retry_after)),
                // A 503 without results: the keys could not be checked. Send it all again.
                Err(_) if status == 503 => Ok((Vec::new(), retry_after)),
                Err(error) => Err(unreachable(format!(
                    "an answer that is not results: {error}"
                ))),
            },
            _ => {
                let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                Err(PublishError::Refused {
                    url: self.url.clone(),
                    status,
                    message,
                })
            }
        }
    }
}

/// `entry` as it goes into the batch: as it is when it is one JSON document, else as a JSON
/// string (so the gateway still counts it and keeps it as refused, instead of the whole batch
/// failing to parse).
fn as_json(entry: &[u8]) -> Vec<u8> {
    if serde_json::from_slice::<&RawValue>(entry).is_ok() {
        entry.to_vec()
    } else {
        serde_json::to_vec(&String::from_utf8_lossy(entry)).unwrap_or_else(|_| b"null".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_is_not_json_goes_as_a_string_and_json_as_it_is() {
        assert_eq!(as_json(br#"{"a": 1}"#), br#"{"a": 1}"#);
        assert_eq!(as_json(b"not \"json"), br#""not \"json""#);
        assert_eq!(as_json(b"{\"a\": 1} trailing"), br#""{\"a\": 1} trailing""#);
    }

    #[test]
    fn only_throttling_and_broker_failures_are_sent_again() {
        let result = |code: Option<&str>| EntryResult {
            event_id: "e".into(),
            error_code: code.map(str::to_string),
            error_message: None,
            errors: Vec::new(),
        };
        assert!(result(Some("Throttled")).is_retryable());
        assert!(result(Some("PublishFailed")).is_retryable());
        assert!(!result(Some("ValidationError")).is_retryable());
        assert!(!result(None).is_retryable());
    }
}
