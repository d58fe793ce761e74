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
use salestalk_store::alert_history::AlertRecord;
use salestalk_store::signals::SignalValue;
use salestalk_store::{ClickHouseError, Endpoint};

use crate::stalls::{Stalls, WatchedSources};
use crate::webhook::Webhooks;
use salestalk_sinks::retry::RetryPolicy;

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
                let http = url
                    .strip_prefix("http://")
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
                if !http {
                    problems.push(format!(
                        "{key}: '{url}' is not an http:// URL (https is not supported)"
                    ));
                }
            }
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
}

impl Evaluator {
    /// An evaluator of `settings` reading `endpoint` and notifying with `policy`, with what
    /// was firing when the last one stopped.
    pub async fn start(
        endpoint: Endpoint,
        sources: WatchedSources,
        settings: &AlertSettings,
        policy: RetryPolicy,
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
                policy,
            ),
            firing,
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
                    Ok(values) => Ok(values.into_iter().map(measurement).collect()),
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
        for notification in &notifications {
            let delivered = self.webhooks.deliver(notification).await;
            if let Err(failures) = &delivered {
                for error in failures {
                    tracing::error!(%error, rule = notification.rule, "webhook did not take a notification");
                }
            }
            tracing::info!(
                rule = notification.rule,
                status = notification.status.as_ref(),
                summary = notification.summary(),
                "alert"
            );
            records.push(AlertRecord::of(notification, now_ms, delivered.is_ok()));
        }
        if let Err(error) = self.endpoint.record_alerts(&records).await {
            tracing::error!(%error, "could not record alert notifications in the alerts table");
        }
        if let Ok(mut firing) = self.firing.lock() {
            *firing = self.tracker.firing();
        }
        notifications
    }
}

/// A measured value as the tracker's subject: its tenant and consumer, where it has them.
fn measurement(value: SignalValue) -> Measurement {
    let mut labels = salestalk_alerting::notification::Labels::new();
    if !value.subject_tenant.is_empty() {
        labels.insert("tenant_id".into(), value.subject_tenant);
    }
    if !value.subject_consumer.is_empty() {
        labels.insert("consumer".into(), value.subject_consumer);
    }
    Measurement {
        labels,
        value: value.value,
    }
}
