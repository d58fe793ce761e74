//! Immutability watched (issue 30, item 8): the same `(tenantId, eventId)` resent with the
//! same bytes is a duplicate; resent with other content it is a conflicting duplicate too,
//! counted per producer source (also by a pipeline restarted between the copies, which
//! compares with the archived first copy), shown on the SRE page and alerted once.

use serde_json::Value;

use crate::alerts::serve_with;
use crate::exactness::pipeline_env;
use crate::support::eventually::{becomes_ready, eventually};
use crate::support::fixtures::Examples;
use crate::support::{
    Isolated, WebhookReceiver, api_key, http_get_as, produce_events, salestalk, stdout_of,
};

#[tokio::test(flavor = "multi_thread")]
async fn an_event_id_resent_with_other_content_is_counted_shown_and_alerted() {
    let isolated = Isolated::create("it-immutable", 1).await;
    let examples = Examples::new(0x1a1e);
    let first = examples.event("classification.performed.v1", "tenant-i", 1);
    let mut changed = first.clone();
    changed["data"]["originalText"] = "What was revenue in Q4?".into();
    let source = first["source"].as_str().expect("a source").to_string();
    let receiver = WebhookReceiver::start();
    let rules = crate::support::one_alert_rule(
        &receiver.url,
        "ConflictingDuplicates",
        "conflicting_duplicates",
        3_600_000,
    );
    let mut env = pipeline_env(&isolated);
    // The first copy and an exact resend; then, after a restart, the changed copy.
    produce_events(&isolated, &[first.clone(), first.clone()]).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));
    produce_events(&isolated, std::slice::from_ref(&changed)).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &env));

    let client = isolated.endpoint().client();
    let (events, resends, conflicting): (u64, u64, u64) = client
        .query(
            "SELECT (SELECT toUInt64(sum(events)) FROM metrics_volume WHERE tenant_id = 'tenant-i'), \
             toUInt64(sum(duplicates)), toUInt64(sum(conflicting_duplicates)) \
             FROM metrics_publish WHERE tenant_id = 'tenant-i' AND source = ?",
        )
        .bind(&source)
        .fetch_one()
        .await
        .expect("publish rows");
    assert_eq!(
        (events, resends, conflicting),
        (1, 2, 1),
        "counted once; two resends, one with other content"
    );

    let (_serve, _dir, port) = serve_with(&mut env, &rules);
    let fired: Vec<Value> = eventually(
        std::time::Duration::from_secs(60),
        || async { receiver.bodies("/plain") },
        |bodies| !bodies.is_empty(),
    )
    .await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["rule"], "ConflictingDuplicates");
    assert_eq!(fired[0]["labels"]["source"], source.as_str());

    assert!(becomes_ready(port).await, "serve never became ready");
    let admin = api_key(&env, "admin", &[]);
    let (status, body) =
        http_get_as(port, "/api/dashboards/sre?range=1h", Some(&admin)).expect("serve answers");
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&body).expect("json");
    let rows = page["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|p| p["id"] == "conflicting_duplicates")
        .and_then(|p| p["result"]["data"].as_array().cloned())
        .expect("the panel has rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], source.as_str());
    assert_eq!(rows[0][3].as_u64(), Some(1), "{rows:?}");
    isolated.remove().await;
}
