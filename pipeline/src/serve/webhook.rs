//! Delivery of alert notifications: one HTTP(S) POST per notification and webhook, as plain
//! JSON or in Alertmanager's webhook body. A webhook that does not take one is tried again
//! from the outbox (`alerts::Evaluator`, `store::tables::alert_outbox`) with backoff until it does or
//! the notification expires, across restarts: at least once. Receivers deduplicate by
//! `fingerprint` + `status`: a notification may arrive twice, never as a different alert.
//!
//! A webhook URL often carries a token (Slack, PagerDuty): errors and logs name only its
//! scheme and host ([`redact`]).

use std::time::Duration;

use http_body_util::Full;
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use salestalk_alerting::Notification;
use salestalk_sinks::retry::Transient;
use salestalk_store::tls::{HttpConnector, HttpsConnector, https_or_http};

/// Longest wait for one webhook to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a webhook did not take a notification. URLs are redacted ([`redact`]).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No answer: connection refused, reset or timed out. Retryable.
    #[error("{url} did not answer: {reason}")]
    Unreachable {
        /// The webhook, redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// It answered with a status other than 2xx; 5xx, 408 and 429 are retryable.
    #[error("{url} answered {status}")]
    Status {
        /// The webhook, redacted.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The URL cannot be requested at all. Permanent.
    #[error("{url} is not a usable URL: {reason}")]
    BadUrl {
        /// The webhook, redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Transient for WebhookError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::BadUrl { .. } => false,
        }
    }
}

/// `url` as logs and errors may show it: scheme and host (and port) only, never the user,
/// path or query, which may hold a token.
pub fn redact(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("?");
            let host = uri.host().unwrap_or("?");
            match uri.port_u16() {
                Some(port) => format!("{scheme}://{host}:{port}/…"),
                None => format!("{scheme}://{host}/…"),
            }
        }
        Err(_) => "<an unparsable URL>".to_string(),
    }
}

/// One notification's request to one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The webhook's URL.
    pub url: String,
    /// The request body.
    pub body: Vec<u8>,
}

/// Every configured webhook, with a shared HTTP(S) client.
pub struct Webhooks {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    plain: Vec<String>,
    alertmanager: Vec<String>,
    receiver: String,
    external_url: String,
}

impl Webhooks {
    /// Plain JSON webhooks at `plain`, Alertmanager ones at `alertmanager` (their bodies
    /// name `receiver` and `external_url`); https ones trust the system's CAs.
    pub fn new(
        plain: &[String],
        alertmanager: &[String],
        receiver: &str,
        external_url: &str,
    ) -> Result<Self, String> {
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https_or_http("")?),
            plain: plain.to_vec(),
            alertmanager: alertmanager.to_vec(),
            receiver: receiver.to_string(),
            external_url: external_url.to_string(),
        })
    }

    /// The requests `notification` makes: one per webhook, in its format.
    pub fn deliveries(&self, notification: &Notification) -> Vec<Delivery> {
        let plain = serde_json::to_vec(&PlainBody::of(notification)).unwrap_or_default();
        let alertmanager =
            serde_json::to_vec(&notification.alertmanager_body(&self.receiver, &self.external_url))
                .unwrap_or_default();
        self.plain
            .iter()
            .map(|url| Delivery {
                url: url.clone(),
                body: plain.clone(),
            })
            .chain(self.alertmanager.iter().map(|url| Delivery {
                url: url.clone(),
                body: alertmanager.clone(),
            }))
            .collect()
    }

    /// The configured webhook whose URL has `key` (`store::tables::alert_outbox::target_key`).
    pub fn url_of(&self, key: &str) -> Option<&str> {
        self.plain
            .iter()
            .chain(&self.alertmanager)
            .find(|url| salestalk_store::tables::alert_outbox::target_key(url) == key)
            .map(String::as_str)
    }

    /// Sends one request, once.
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Result<(), WebhookError> {
        let request = Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WebhookError::BadUrl {
                url: redact(url),
                reason: e.to_string(),
            })?;
        let unreachable = |reason: String| WebhookError::Unreachable {
            url: redact(url),
            reason,
        };
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(WebhookError::Status {
                url: redact(url),
                status: status.as_u16(),
            })
        }
    }
}

/// The plain JSON body: the notification, its labels, fingerprint and summary.
#[derive(serde::Serialize)]
struct PlainBody<'a> {
    fingerprint: String,
    summary: String,
    #[serde(flatten)]
    notification: &'a Notification,
}

impl<'a> PlainBody<'a> {
    fn of(notification: &'a Notification) -> Self {
        Self {
            fingerprint: notification.fingerprint(),
            summary: notification.summary(),
            notification,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_that_may_change_are_retried() {
        let status = |status| WebhookError::Status {
            url: "u".into(),
            status,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(404).is_retryable());
        let unreachable = WebhookError::Unreachable {
            url: "u".into(),
            reason: "refused".into(),
        };
        assert!(unreachable.is_retryable());
    }

    #[test]
    fn urls_are_shown_without_their_tokens() {
        assert_eq!(
            redact("https://hooks.example.com/services/T000/B000/SECRET?token=x"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            redact("http://user:pass@127.0.0.1:9000/alert"),
            "http://127.0.0.1:9000/…"
        );
        assert!(!redact("not a url at all with secret").contains("secret"));
    }
}
