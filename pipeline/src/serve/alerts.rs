//! The alert evaluator of `salestalk serve`. Every `alerts.evaluate_every_ms` it measures each
//! rule's signal in ClickHouse (the public views), lets the [`Tracker`] decide what fires and
//! what resolves, sends that to the webhooks and appends it to the `alerts` table. At start it
//! reads back what was firing, so a restart neither repeats nor forgets an alert.
//!
//! Run one evaluator per database: two would each notify.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use salestalk_alerting::tracker::Measurement;
use salestalk_alerting::{Notification, Signal, Tracker};
use salestalk_operators::dead_letter::{CONSUMER_FAILED, DeadLetterReason};
use salestalk_store::signals::SignalValue;
use salestalk_store::tables::alerts::AlertRecord;
use salestalk_store::{ClickHouseError, Endpoint};

use crate::serve::stalls::{Stalls, WatchedSources};
use crate::serve::webhook::{Delivery, WebhookError, Webhooks};
use salestalk_sinks::retry::Transient;
use salestalk_store::tables::alert_outbox::{OutboxEntry, state, target_key};

/// `[alerts]`: the alert evaluator of `salestalk serve`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct AlertSettings {
    /// Pause between two evaluations of every rule, ms.
    pub evaluate_every_ms: u64,
    /// URLs that receive each notification as a plain JSON body.
    #[serde(deserialize_with = "urls")]
    pub webhooks: Vec<String>,
    /// URLs that receive each notification in Alertmanager's webhook body.
    #[serde(deserialize_with = "urls")]
    pub alertmanager_webhooks: Vec<String>,
    /// The `receiver` named in Alertmanager bodies.
    pub receiver: String,
    /// Where people find the dashboards (Alertmanager's `externalURL`).
    pub external_url: String,
    /// First pause before a webhook that did not take a notification is tried again, ms;
    /// doubles with each attempt, up to 64 times this.
    pub redelivery_ms: u64,
    /// How long an undelivered notification is tried again before it is given up, ms.
    pub notification_expiry_ms: u64,
    /// The rules.
    pub rules: Vec<salestalk_alerting::Rule>,
}

/// A list of URLs; an empty entry (`SALESTALK__ALERTS__WEBHOOKS=`) means none.
fn urls<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let list: Vec<String> = serde::Deserialize::deserialize(deserializer)?;
    Ok(list.into_iter().filter(|u| !u.trim().is_empty()).collect())
}

impl AlertSettings {
    /// Every problem with these settings (and every rule's), each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(100..=3_600_000).contains(&self.evaluate_every_ms) {
            problems.push(format!(
                "alerts.evaluate_every_ms: {} is outside 100..=3600000",
                self.evaluate_every_ms
            ));
        }
        for (key, list) in [
            ("alerts.webhooks", &self.webhooks),
            ("alerts.alertmanager_webhooks", &self.alertmanager_webhooks),
        ] {
            for url in list {
                let web = ["http://", "https://"].iter().any(|scheme| {
                    url.strip_prefix(scheme)
                        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
                });
                if !web || url.parse::<hyper::Uri>().is_err() {
                    // Named redacted: a webhook URL often carries a token.
                    problems.push(format!(
                        "{key}: '{}' is not an http:// or https:// URL",
                        crate::serve::webhook::redact(url)
                    ));
                }
            }
        }
        if !(100..=3_600_000).contains(&self.redelivery_ms) {
            problems.push(format!(
                "alerts.redelivery_ms: {} is outside 100..=3600000",
                self.redelivery_ms
            ));
        }
        if !(60_000..=30 * 86_400_000).contains(&self.notification_expiry_ms) {
            problems.push(format!(
                "alerts.notification_expiry_ms: {} is outside 60000..=2592000000",
                self.notification_expiry_ms
            ));
        }
        problems.extend(salestalk_alerting::rule::problems(&self.rules));
        let known: Vec<&str> = DeadLetterReason::ALL
            .map(DeadLetterReason::as_str)
            .into_iter()
            .chain([CONSUMER_FAILED])
            .collect();
        for (i, rule) in self.rules.iter().enumerate() {
            for reason in rule.reasons.iter().filter(|r| !known.contains(&r.as_str())) {
                problems.push(format!(
                    "alerts.rules[{i}] ({}): unknown reason '{reason}' (known: {})",
                    rule.name,
                    known.join(", ")
                ));
            }
        }
        problems
    }
}

/// Alerts firing now, as last evaluated; shared with the HTTP server.
pub type Firing = Arc<Mutex<Vec<Notification>>>;

/// Measures, decides, notifies, records.
pub struct Evaluator {
    endpoint: Endpoint,
    /// The sources, for the stall signal (`no_fresh_data_ms`).
    sources: WatchedSources,
    stalls: Stalls,
    tracker: Tracker,
    webhooks: Webhooks,
    firing: Firing,
    redelivery_ms: u64,
    expiry_ms: u64,
}

/// Most outbox rows one evaluation tries again (the rest wait for the next).
const REDELIVERIES_PER_ROUND: u64 = 100;

impl Evaluator {
    /// An evaluator of `settings` reading `endpoint`, with what was firing when the last one
    /// stopped.
    pub async fn start(
        endpoint: Endpoint,
        sources: WatchedSources,
        settings: &AlertSettings,
    ) -> Result<Self, ClickHouseError> {
        let mut tracker = Tracker::new(settings.rules.clone());
        for record in endpoint.firing_alerts().await? {
            let starts_at =
                DateTime::from_timestamp(record.starts_at.into(), 0).unwrap_or_default();
            tracker.restore_firing(&record.rule, record.labels(), record.value, starts_at);
        }
        let firing = Arc::new(Mutex::new(tracker.firing()));
        Ok(Self {
            endpoint,
            sources,
            stalls: Stalls::default(),
            tracker,
            webhooks: Webhooks::new(
                &settings.webhooks,
                &settings.alertmanager_webhooks,
                &settings.receiver,
                &settings.external_url,
            )
            .map_err(ClickHouseError::Refused)?,
            firing,
            redelivery_ms: settings.redelivery_ms,
            expiry_ms: settings.notification_expiry_ms,
        })
    }

    /// The alerts firing now, kept up to date by [`Evaluator::evaluate`].
    pub fn firing(&self) -> Firing {
        Arc::clone(&self.firing)
    }

    /// One evaluation of every rule at `now`; returns the notifications it sent. A rule whose
    /// signal cannot be measured is skipped (not judged good), so an outage of ClickHouse
    /// neither fires nor resolves anything.
    pub async fn evaluate(&mut self, now: DateTime<Utc>) -> Vec<Notification> {
        let mut notifications = Vec::new();
        for index in 0..self.tracker.rules().len() {
            let rule = self.tracker.rules()[index].clone();
            let measured: anyhow::Result<Vec<Measurement>> =
                match self.endpoint.measure(&rule).await {
                    Ok(values) if rule.signal == Signal::NoFreshDataMs => {
                        let consumers: Vec<(String, f64)> = values
                            .into_iter()
                            .map(|v| (v.subject_consumer, v.value))
                            .collect();
                        self.stalls
                            .measure(
                                &self.endpoint,
                                &self.sources,
                                &consumers,
                                now.timestamp_millis(),
                            )
                            .await
                    }
                    Ok(values) => Ok(values
                        .into_iter()
                        .map(|v| measurement(rule.signal, v))
                        .collect()),
                    Err(error) => Err(error.into()),
                };
            match measured {
                Ok(measurements) => {
                    notifications.extend(self.tracker.observe(index, now, &measurements));
                }
                Err(error) => {
                    tracing::warn!(rule = rule.name, %error, "cannot measure; judged next time");
                }
            }
        }
        let now_ms = now.timestamp_millis().max(0) as u64;
        let mut records = Vec::with_capacity(notifications.len());
        let mut outbox = Vec::new();
        for notification in &notifications {
            let mut delivered = true;
            for delivery in self.webhooks.deliveries(notification) {
                let sent = self
                    .webhooks
                    .post(&delivery.url, delivery.body.clone())
                    .await;
                if let Err(error) = &sent {
                    delivered = false;
                    tracing::warn!(%error, rule = notification.rule, "webhook did not take a notification; it is tried again");
                }
                if let Some(entry) = self.outbox_entry(notification, &delivery, sent, now_ms) {
                    outbox.push(entry);
                }
            }
            tracing::info!(
                rule = notification.rule,
                status = notification.status.as_ref(),
                summary = notification.summary(),
                "alert"
            );
            records.push(AlertRecord::of(notification, now_ms, delivered));
        }
        // The outbox first: a notification recorded as sent but lost before its retry was
        // stored would never be retried.
        if let Err(error) = self.endpoint.write_outbox(&outbox).await {
            tracing::error!(%error, "could not store undelivered notifications for retry");
        }
        if let Err(error) = self.endpoint.record_alerts(&records).await {
            tracing::error!(%error, "could not record alert notifications in the alerts table");
        }
        self.redeliver(now_ms).await;
        if let Ok(mut firing) = self.firing.lock() {
            *firing = self.tracker.firing();
        }
        notifications
    }
}

impl Evaluator {
    /// The outbox row of a first attempt that failed: pending (retryable) or abandoned.
    fn outbox_entry(
        &self,
        notification: &Notification,
        delivery: &Delivery,
        sent: Result<(), WebhookError>,
        now_ms: u64,
    ) -> Option<OutboxEntry> {
        let error = sent.err()?;
        let retry = error.is_retryable();
        Some(OutboxEntry {
            notification: format!(
                "{}|{}|{now_ms}",
                notification.fingerprint(),
                notification.status.as_ref()
            ),
            target: target_key(&delivery.url),
            rule: notification.rule.clone(),
            body: String::from_utf8_lossy(&delivery.body).into_owned(),
            created_ms: now_ms,
            attempts: 1,
            next_attempt_ms: now_ms + self.redelivery_ms,
            state: if retry {
                state::PENDING
            } else {
                state::ABANDONED
            }
            .to_string(),
            last_error: error.to_string(),
            version: now_ms,
        })
    }

    /// Tries again the outbox's notifications that are due, each once: delivered, or
    /// pending again after twice the pause (up to 64 times `alerts.redelivery_ms`), or
    /// abandoned once expired, refused for good or its webhook is no longer configured.
    async fn redeliver(&self, now_ms: u64) {
        let due = match self
            .endpoint
            .due_outbox(now_ms, REDELIVERIES_PER_ROUND)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot read the notifications to retry; next round");
                return;
            }
        };
        let mut updates = Vec::with_capacity(due.len());
        for mut entry in due {
            entry.version = now_ms.max(entry.version + 1);
            entry.attempts += 1;
            let url = self.webhooks.url_of(&entry.target);
            let outcome = match url {
                None => Err("its webhook is no longer configured".to_string()),
                Some(_) if now_ms >= entry.created_ms + self.expiry_ms => {
                    Err("expired (alerts.notification_expiry_ms)".to_string())
                }
                Some(url) => match self
                    .webhooks
                    .post(url, entry.body.clone().into_bytes())
                    .await
                {
                    Ok(()) => Ok(true),
                    Err(error) if error.is_retryable() => {
                        entry.last_error = error.to_string();
                        Ok(false)
                    }
                    Err(error) => Err(error.to_string()),
                },
            };
            match outcome {
                Ok(true) => {
                    tracing::info!(
                        rule = entry.rule,
                        attempts = entry.attempts,
                        "a notification was delivered on retry"
                    );
                    entry.state = state::DELIVERED.to_string();
                }
                Ok(false) => {
                    let pause = self.redelivery_ms << entry.attempts.saturating_sub(1).min(6);
                    entry.next_attempt_ms = now_ms + pause;
                }
                Err(why) => {
                    tracing::error!(
                        rule = entry.rule,
                        attempts = entry.attempts,
                        why,
                        "a notification is given up"
                    );
                    entry.last_error = why;
                    entry.state = state::ABANDONED.to_string();
                }
            }
            updates.push(entry);
        }
        if let Err(error) = self.endpoint.write_outbox(&updates).await {
            tracing::error!(%error, "could not store the outcome of notification retries");
        }
    }
}

/// A measured value as the tracker's subject: its tenant and its consumer (or, for a
/// signal about event versions, its event type), where it has them.
fn measurement(signal: Signal, value: SignalValue) -> Measurement {
    let mut labels = salestalk_alerting::notification::Labels::new();
    if !value.subject_tenant.is_empty() {
        labels.insert("tenant_id".into(), value.subject_tenant);
    }
    if !value.subject_consumer.is_empty() {
        labels.insert(signal.subject_label().into(), value.subject_consumer);
    }
    Measurement {
        labels,
        value: value.value,
    }
}
