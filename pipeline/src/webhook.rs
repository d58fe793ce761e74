//! Delivery of alert notifications: one HTTP POST per notification and webhook, as plain JSON
//! or in Alertmanager's webhook body, retried with the `[retry]` policy. Receivers deduplicate
//! by `fingerprint` + `status`: a notification may arrive twice (at least once), never as a
//! different alert.

use std::time::Duration;

use http_body_util::Full;
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use salestalk_alerting::Notification;
use salestalk_sinks::retry::{RetryPolicy, Transient};

/// Longest wait for one webhook to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a webhook did not take a notification.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No answer: connection refused, reset or timed out. Retryable.
    #[error("{url} did not answer: {reason}")]
    Unreachable {
        /// The webhook.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// It answered with a status other than 2xx; 5xx and 429 are retryable.
    #[error("{url} answered {status}")]
    Status {
        /// The webhook.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The URL cannot be requested at all. Permanent.
    #[error("{url} is not a usable URL: {reason}")]
    BadUrl {
        /// The webhook.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Transient for WebhookError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::BadUrl { .. } => false,
        }
    }
}

/// Every configured webhook, with a shared HTTP client.
pub struct Webhooks {
    client: Client<HttpConnector, Full<Bytes>>,
    plain: Vec<String>,
    alertmanager: Vec<String>,
    receiver: String,
    external_url: String,
    policy: RetryPolicy,
}

impl Webhooks {
    /// Plain JSON webhooks at `plain`, Alertmanager ones at `alertmanager` (their bodies
    /// name `receiver` and `external_url`), retried with `policy`.
    pub fn new(
        plain: &[String],
        alertmanager: &[String],
        receiver: &str,
        external_url: &str,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            plain: plain.to_vec(),
            alertmanager: alertmanager.to_vec(),
            receiver: receiver.to_string(),
            external_url: external_url.to_string(),
            policy,
        }
    }

    /// Sends `notification` to every webhook; `Ok` when every one took it, else each failure.
    pub async fn deliver(&self, notification: &Notification) -> Result<(), Vec<WebhookError>> {
        let plain = serde_json::to_vec(&PlainBody::of(notification)).unwrap_or_default();
        let alertmanager =
            serde_json::to_vec(&notification.alertmanager_body(&self.receiver, &self.external_url))
                .unwrap_or_default();
        let targets = self
            .plain
            .iter()
            .map(|url| (url, &plain))
            .chain(self.alertmanager.iter().map(|url| (url, &alertmanager)));
        let mut failures = Vec::new();
        for (url, body) in targets {
            let sent = self
                .policy
                .run(
                    || self.post(url, body.clone()),
                    |error| tracing::warn!(%error, "webhook attempt failed"),
                )
                .await;
            if let Err(error) = sent {
                failures.push(error);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<(), WebhookError> {
        let request = Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WebhookError::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let unreachable = |reason: String| WebhookError::Unreachable {
            url: url.to_string(),
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
                url: url.to_string(),
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
}
