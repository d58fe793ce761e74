//! Alerting against the real ClickHouse: every signal query runs on the server the suite
//! started, and the `alerts` history gives back what was firing when an evaluator stopped.

use chrono::DateTime;
use salestalk_alerting::{Notification, Rule, Scope, Signal, Status};
use salestalk_sinks::clickhouse::alert_history::AlertRecord;

use crate::support::{Isolated, salestalk, stdout_of};

#[tokio::test(flavor = "multi_thread")]
async fn every_signal_is_measured_and_the_history_restores_what_fires() {
    let isolated = Isolated::create("it-alerts", 1).await;
    stdout_of(&salestalk(&["migrate"], &isolated.env));
    let endpoint = isolated.endpoint();

    for mut rule in Rule::spec_defaults() {
        for scope in [Scope::Global, Scope::Tenant] {
            if rule.signal == Signal::DlqDepth && scope == Scope::Tenant {
                continue;
            }
            rule.scope = scope;
            let values = endpoint
                .measure(&rule)
                .await
                .unwrap_or_else(|e| panic!("{} ({scope:?}): {e}", rule.name));
            // An empty database: nothing to judge, except the DLQ depth, which is 0.
            if rule.signal == Signal::DlqDepth {
                assert_eq!(values.len(), 1, "{values:?}");
                assert_eq!(values[0].value, 0.0);
            } else {
                assert!(values.is_empty(), "{} {scope:?}: {values:?}", rule.name);
            }
        }
    }

    let rules = Rule::spec_defaults();
    let at = |s: i64| DateTime::from_timestamp(1_790_000_000 + s, 0).expect("a time");
    let tenant = |t: &str| [("tenant_id".to_string(), t.to_string())].into();
    let fired_a = Notification::new(&rules[0], Status::Firing, tenant("a"), 0.5, at(0), None);
    let fired_b = Notification::new(&rules[0], Status::Firing, tenant("b"), 0.7, at(5), None);
    let resolved_a = Notification {
        status: Status::Resolved,
        ends_at: Some(at(60)),
        ..fired_a.clone()
    };
    let now_ms = 1_790_000_000_000;
    endpoint
        .record_alerts(&[
            AlertRecord::of(&fired_a, now_ms, true),
            AlertRecord::of(&fired_b, now_ms + 1, false),
        ])
        .await
        .expect("recorded");
    endpoint
        .record_alerts(&[AlertRecord::of(&resolved_a, now_ms + 60_000, true)])
        .await
        .expect("recorded");
    let firing = endpoint.firing_alerts().await.expect("firing alerts");
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0].fingerprint, fired_b.fingerprint());
    assert_eq!(firing[0].labels(), fired_b.labels);
    assert_eq!(firing[0].starts_at, 1_790_000_005);
    assert_eq!(firing[0].delivered, 0);
    let history = endpoint.alert_history(10).await.expect("history");
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].status, "resolved", "newest first");
    assert_eq!(history[0].ends_at, 1_790_000_060);
    isolated.remove().await;
}
