//! What is sent when an alert fires or resolves: a plain JSON body, and the same alert in the
//! body Alertmanager sends to its webhook receivers, so receivers written for it work as-is.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::rule::{Comparison, Rule, Severity, Signal};

/// Labels that name what an alert is about besides its rule (`tenant_id`, `consumer`).
pub type Labels = BTreeMap<String, String>;

/// Whether an alert has started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::AsRefStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Status {
    /// The condition has held for the rule's `for_ms`.
    Firing,
    /// The condition has been clear for the rule's `keep_firing_ms`.
    Resolved,
}

/// One alert starting or ending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The rule's name.
    pub rule: String,
    /// Firing or resolved.
    pub status: Status,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's signal.
    pub signal: Signal,
    /// The rule's comparison.
    pub comparison: Comparison,
    /// The rule's threshold.
    pub threshold: f64,
    /// What the alert is about besides the rule (empty for a global, non-consumer signal).
    pub labels: Labels,
    /// The value measured last while the condition was bad.
    pub value: f64,
    /// When the condition first held (the alert fired `for_ms` later).
    pub starts_at: DateTime<Utc>,
    /// When it was resolved; `None` while firing.
    pub ends_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// A notification of `rule` about `labels`.
    pub fn new(
        rule: &Rule,
        status: Status,
        labels: Labels,
        value: f64,
        starts_at: DateTime<Utc>,
        ends_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            rule: rule.name.clone(),
            status,
            severity: rule.severity,
            signal: rule.signal,
            comparison: rule.comparison,
            threshold: rule.threshold,
            labels,
            value,
            starts_at,
            ends_at,
        }
    }

    /// Every label: `alertname`, `severity`, `signal` and the subject's own.
    pub fn all_labels(&self) -> Labels {
        let mut labels = self.labels.clone();
        labels.insert("alertname".into(), self.rule.clone());
        labels.insert("severity".into(), self.severity.as_ref().into());
        labels.insert("signal".into(), self.signal.as_ref().into());
        labels
    }

    /// A stable identity of the alert (rule and subject), the same for its firing and its
    /// resolution, so receivers can deduplicate: FNV-1a over the sorted labels, in hex.
    pub fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (key, value) in &self.all_labels() {
            for byte in key.bytes().chain([0]).chain(value.bytes()).chain([0]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    }

    /// One line for people: what, how bad, about whom.
    pub fn summary(&self) -> String {
        let about = if self.labels.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(" for {}", parts.join(", "))
        };
        format!(
            "{} is {} ({} {}){about}",
            self.signal.as_ref(),
            self.value,
            self.comparison.as_ref(),
            self.threshold
        )
    }

    /// The notification in Alertmanager's webhook body (version 4), one alert per body.
    pub fn alertmanager_body(&self, receiver: &str, external_url: &str) -> Value {
        let labels = self.all_labels();
        let annotations = json!({
            "summary": self.summary(),
            "value": self.value.to_string(),
            "threshold": self.threshold.to_string(),
        });
        let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{alertname=\"{}\"}}:{}", self.rule, self.fingerprint()),
            "truncatedAlerts": 0,
            "status": self.status.as_ref(),
            "receiver": receiver,
            "groupLabels": { "alertname": self.rule },
            "commonLabels": labels,
            "commonAnnotations": annotations,
            "externalURL": external_url,
            "alerts": [{
                "status": self.status.as_ref(),
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(self.starts_at),
                // Alertmanager's zero time for an alert that has not ended.
                "endsAt": self.ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
                "generatorURL": external_url,
                "fingerprint": self.fingerprint(),
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firing() -> Notification {
        let rule = &Rule::spec_defaults()[0];
        let labels = Labels::from([("tenant_id".to_string(), "tenant-7".to_string())]);
        let start = DateTime::from_timestamp(1_790_000_000, 0).expect("a time");
        Notification::new(rule, Status::Firing, labels, 0.95, start, None)
    }

    #[test]
    fn the_fingerprint_names_rule_and_subject_not_status() {
        let firing = firing();
        let resolved = Notification {
            status: Status::Resolved,
            ends_at: Some(firing.starts_at),
            value: 0.5,
            ..firing.clone()
        };
        assert_eq!(firing.fingerprint(), resolved.fingerprint());
        let other_tenant = Notification {
            labels: Labels::from([("tenant_id".to_string(), "tenant-8".to_string())]),
            ..firing.clone()
        };
        assert_ne!(firing.fingerprint(), other_tenant.fingerprint());
    }

    #[test]
    fn the_alertmanager_body_has_its_fields() {
        let body = firing().alertmanager_body("sre", "http://salestalk:9464");
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "sre");
        let alert = &body["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "PublishSuccessRateLow");
        assert_eq!(alert["labels"]["tenant_id"], "tenant-7");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["startsAt"], "2026-09-21T14:13:20.000Z");
        assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(
            alert["annotations"]["summary"],
            "publish_success_rate is 0.95 (below 0.99) for tenant_id=tenant-7"
        );
        assert_eq!(alert["fingerprint"].as_str().map(str::len), Some(16));
    }
}
