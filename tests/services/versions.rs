//! Versions with dates (issue 30, item 5): a version deprecated with its end two months away is
//! counted, listed on the SRE page with its notice, and warned about by
//! `DeprecatedVersionPublished` once per event type; once its end date has come (by broker
//! time) its events are dead-lettered `unsupported_version` naming the day and the successor.

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::alerts::serve_with;
use crate::exactness::pipeline_env;
use crate::support::eventually::{becomes_ready, eventually};
use crate::support::fixtures::Examples;
use crate::support::{
    Isolated, WebhookReceiver, api_key, http_get_as, produce_events, salestalk, stdout_of,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_deprecated_version_is_warned_about_then_refused_after_its_end() {
    let isolated = Isolated::create("it-versions", 1).await;
    let examples = Examples::new(0x7e55);
    let soon = (Utc::now() + Duration::days(60)).date_naive();
    let receiver = WebhookReceiver::start();
    let config = |ends: chrono::NaiveDate| {
        format!(
            r#"
[[contracts.versions]]
event_type = "classification.performed.v1"
status = "deprecated"
ends = "{ends}"
{}"#,
            crate::support::one_alert_rule(
                &receiver.url,
                "DeprecatedVersionPublished",
                "deprecated_version_events",
                86_400_000
            )
        )
    };
    let events: Vec<Value> = (0..5)
        .map(|n| examples.event("classification.performed.v1", "tenant-v", n))
        .collect();
    produce_events(&isolated, &events).await;
    let mut env = pipeline_env(&isolated);
    let (_serve, dir, port) = serve_with(&mut env, &config(soon));
    let path = dir
        .path()
        .join("alerts.toml")
        .to_string_lossy()
        .into_owned();
    stdout_of(&salestalk(
        &["--config", &path, "run", "--idle-exit", "6s"],
        &env,
    ));
    let counted: u64 = isolated
        .endpoint()
        .client()
        .query("SELECT toUInt64(sum(events)) FROM metrics_volume WHERE tenant_id = 'tenant-v'")
        .fetch_one()
        .await
        .expect("volume");
    assert_eq!(counted, 5, "a deprecated version is still counted");

    // Warned about: once, naming the event type.
    let fired = eventually(
        std::time::Duration::from_secs(60),
        || async { receiver.bodies("/plain") },
        |bodies| !bodies.is_empty(),
    )
    .await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["rule"], "DeprecatedVersionPublished");
    assert_eq!(fired[0]["status"], "firing");
    assert_eq!(
        fired[0]["labels"]["event_type"],
        "classification.performed.v1"
    );

    // And on the page, with its date and what to move to.
    assert!(becomes_ready(port).await, "serve never became ready");
    let admin = api_key(&env, "admin", &[]);
    let (status, body) =
        http_get_as(port, "/api/dashboards/sre?range=1h", Some(&admin)).expect("serve answers");
    assert_eq!(status, 200, "{body}");
    let notice = format!("move to classification.performed.v2 before {soon}");
    assert!(
        body.contains(&notice),
        "the page does not say {notice:?}: {body}"
    );

    // After its end (an end date already here), its events are refused.
    let ended = Utc::now().date_naive();
    let later: Vec<Value> = (5..8)
        .map(|n| examples.event("classification.performed.v1", "tenant-v", n))
        .collect();
    produce_events(&isolated, &later).await;
    let ended_config = dir.path().join("ended.toml");
    std::fs::write(&ended_config, config(ended)).expect("config");
    stdout_of(&salestalk(
        &[
            "--config",
            &ended_config.to_string_lossy(),
            "run",
            "--idle-exit",
            "6s",
        ],
        &env,
    ));
    let letters: Vec<(String, String)> = isolated
        .endpoint()
        .client()
        .query("SELECT reason, error FROM dead_letter_queue ORDER BY offset")
        .fetch_all()
        .await
        .expect("dead letters");
    assert_eq!(letters.len(), 3, "{letters:?}");
    for (reason, error) in &letters {
        assert_eq!(reason, "unsupported_version");
        assert!(
            error.contains(&format!("ended on {ended}"))
                && error.contains("classification.performed.v2"),
            "{error}"
        );
    }
    isolated.remove().await;
}
