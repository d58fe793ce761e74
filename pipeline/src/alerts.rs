//! The alert evaluator of `salestalk serve`. Every `alerts.evaluate_every_ms` it measures each
//! rule's signal in ClickHouse (the public views), lets the [`Tracker`] decide what fires and
//! what resolves, sends that to the webhooks and appends it to the `alerts` table. At start it
//! reads back what was firing, so a restart neither repeats nor forgets an alert.
//!
//! Run one evaluator per database: two would each notify.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use salestalk_alerting::tracker::Measurement;
use salestalk_alerting::{Notification, Tracker};
use salestalk_store::alert_history::AlertRecord;
use salestalk_store::signals::SignalValue;
use salestalk_store::{ClickHouseError, Endpoint};

use crate::settings::Settings;
use crate::webhook::Webhooks;

/// Alerts firing now, as last evaluated; shared with the HTTP server.
pub type Firing = Arc<Mutex<Vec<Notification>>>;

/// Measures, decides, notifies, records.
pub struct Evaluator {
    endpoint: Endpoint,
    tracker: Tracker,
    webhooks: Webhooks,
    firing: Firing,
}

impl Evaluator {
    /// An evaluator for `settings`, with what was firing when the last one stopped.
    pub async fn start(settings: &Settings) -> Result<Self, ClickHouseError> {
        let endpoint = settings.clickhouse.clone();
        let mut tracker = Tracker::new(settings.alerts.rules.clone());
        for record in endpoint.firing_alerts().await? {
            let starts_at =
                DateTime::from_timestamp(record.starts_at.into(), 0).unwrap_or_default();
            tracker.restore_firing(&record.rule, record.labels(), record.value, starts_at);
        }
        let firing = Arc::new(Mutex::new(tracker.firing()));
        Ok(Self {
            endpoint,
            tracker,
            webhooks: Webhooks::new(&settings.alerts, settings.retry.policy()),
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
            match self.endpoint.measure(&rule).await {
                Ok(values) => {
                    let measurements: Vec<Measurement> =
                        values.into_iter().map(measurement).collect();
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
