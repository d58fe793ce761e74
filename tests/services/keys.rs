//! API keys on the real ClickHouse: a key is printed once and stored only as a hash, lists
//! never show it, a tampered key is refused, and a revoked key stops working; a reader key
//! reads its tenants' numbers only, through every endpoint of `serve`.

use std::collections::BTreeMap;

use salestalk_store::tables::api_keys::Role;

use crate::exactness::seeded_setup;
use crate::support::eventually::becomes_ready;
use crate::support::{
    Isolated, KillOnDrop, api_key, free_port, http_get, http_get_as, key_id, salestalk,
    salestalk_command, stdout_of,
};

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_and_stops_working_when_revoked() {
    let isolated = Isolated::create("it-keys", 1).await;
    let env = &isolated.env;
    let endpoint = isolated.endpoint();

    let made = salestalk(
        &[
            "keys", "create", "--role", "reader", "--tenant", "tenant-b", "--tenant", "tenant-a",
        ],
        env,
    );
    let key = stdout_of(&made).trim().to_string();
    assert!(
        key.starts_with("stk_") && key.len() == 4 + 16 + 1 + 64,
        "{key}"
    );
    let id = key_id(&key);
    assert_eq!(id.len(), 16);
    let found = endpoint
        .verify_key(&key, now_s())
        .await
        .expect("verify")
        .expect("a valid key");
    assert_eq!(found.role, Role::Reader);
    assert_eq!(found.tenants, ["tenant-a", "tenant-b"]);

    // Stored as a hash: neither the key nor its secret is anywhere in the table or the list.
    let secret = &key[21..];
    let stored: String = endpoint
        .client()
        .query("SELECT toString(groupArray(tuple(*))) FROM api_keys")
        .fetch_one()
        .await
        .expect("the table");
    assert!(stored.contains(id) && !stored.contains(secret), "{stored}");
    let listed = stdout_of(&salestalk(&["keys", "list"], env));
    assert!(listed.contains(id) && listed.contains("reader") && !listed.contains(secret));

    // A key one digit off is refused; so is anything that is not a key.
    let last = key.chars().last().expect("a digit");
    let tampered = format!(
        "{}{}",
        &key[..key.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert_eq!(
        endpoint
            .verify_key(&tampered, now_s())
            .await
            .expect("verify"),
        None
    );
    assert_eq!(
        endpoint
            .verify_key("Bearer nonsense", now_s())
            .await
            .expect("verify"),
        None
    );

    // Revoked: it stops working, the list says so, and it cannot be revoked twice.
    let revoked = stdout_of(&salestalk(&["keys", "revoke", id], env));
    assert_eq!(revoked.trim(), format!("revoked {id}"));
    assert_eq!(
        endpoint.verify_key(&key, now_s()).await.expect("verify"),
        None
    );
    assert!(stdout_of(&salestalk(&["keys", "list"], env)).contains("revoked"));
    assert!(!salestalk(&["keys", "revoke", id], env).status.success());

    // A publisher or reader key names its tenants; an admin key needs none.
    let refused = salestalk(&["keys", "create", "--role", "publisher"], env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs at least one --tenant"));
    let admin = stdout_of(&salestalk(&["keys", "create", "--role", "admin"], env));
    let admin = endpoint
        .verify_key(admin.trim(), now_s())
        .await
        .expect("verify")
        .expect("a valid admin key");
    assert_eq!((admin.role, admin.tenants.len()), (Role::Admin, 0));

    // An expiry and event-type scopes are stored with the key and listed; an expired key is
    // refused; a scope on a key that publishes nothing, or a past expiry, is refused at once.
    let scoped = stdout_of(&salestalk(
        &[
            "keys",
            "create",
            "--role",
            "publisher",
            "--tenant",
            "tenant-a",
            "--event-type",
            "conversation.*",
            "--expires",
            "30d",
        ],
        env,
    ));
    let found = endpoint
        .verify_key(scoped.trim(), now_s())
        .await
        .expect("verify")
        .expect("a valid key");
    assert_eq!(found.event_types, ["conversation.*"]);
    let expires = found.expires_at.expect("an expiry");
    assert!(expires.abs_diff(now_s() + 30 * 86_400) < 120, "{expires}");
    assert_eq!(
        endpoint
            .verify_key(scoped.trim(), expires)
            .await
            .expect("verify"),
        None
    );
    let listed = stdout_of(&salestalk(&["keys", "list"], env));
    assert!(listed.contains("types conversation.*") && listed.contains("expires"));
    for bad in [
        &[
            "--role",
            "reader",
            "--tenant",
            "tenant-a",
            "--event-type",
            "conversation.*",
        ][..],
        &[
            "--role",
            "publisher",
            "--tenant",
            "tenant-a",
            "--expires",
            "2020-01-01",
        ][..],
        &[
            "--role",
            "publisher",
            "--tenant",
            "tenant-a",
            "--event-type",
            "a*b",
        ][..],
    ] {
        let mut args = vec!["keys", "create"];
        args.extend(bad);
        assert!(!salestalk(&args, env).status.success(), "{bad:?}");
    }
    isolated.remove().await;
}

/// Now, Unix seconds.
fn now_s() -> u32 {
    u32::try_from(chrono::Utc::now().timestamp()).expect("a 32-bit time")
}

/// `GET path` as `key`: the status and the body as JSON (`Value::Null` when it is not JSON).
fn get_json(port: u16, path: &str, key: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get_as(port, path, Some(key)).expect("serve answers");
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// Each panel's rows by id (`None` for a panel not run), of a dashboard answer.
fn panel_rows(answer: &serde_json::Value) -> BTreeMap<String, Option<serde_json::Value>> {
    answer["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| {
            let id = p["id"].as_str().unwrap_or_default().to_string();
            (id, p.get("result").map(|r| r["data"].clone()))
        })
        .collect()
}

/// A reader key reads its tenant's numbers and nothing else, endpoint by endpoint: every
/// per-tenant panel of every dashboard equals what an admin sees for that tenant, the panels
/// about the whole pipeline are withheld, another tenant asked for by any query string is
/// refused, the billing CSV holds its rows only, the alerts are its own; no key, a publisher
/// key or a revoked key reads nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_key_sees_only_its_tenants_through_every_endpoint() {
    let mut setup = seeded_setup("it-reader", 91, 4_000, 20).await;
    stdout_of(&salestalk(&["run", "--idle-exit", "6s"], &setup.env));
    let port = free_port();
    setup
        .env
        .push(("SALESTALK__SERVE__LISTEN", format!("127.0.0.1:{port}")));
    setup
        .env
        .push(("SALESTALK__SERVE__KEY_CACHE_MS", "0".to_string()));
    let env = &setup.env;
    let admin = api_key(env, "admin", &[]);
    let _serve = KillOnDrop(salestalk_command(&["serve"], env).spawn().expect("serve"));
    assert!(
        becomes_ready(port).await,
        "never became ready on port {port}"
    );

    // Two tenants with traffic, from the billing CSV an admin reads.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let csv_path = format!("/api/billing/export.csv?month={month}");
    let (status, csv) = http_get_as(port, &csv_path, Some(&admin)).expect("the CSV");
    assert_eq!(status, 200);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    let column = csv
        .lines()
        .next()
        .and_then(|head| head.split(',').position(|c| c == "tenant_id"))
        .expect("a tenant_id column");
    let tenant_of = |row: &str| row.split(',').nth(column).unwrap_or_default().to_string();
    assert!(rows.len() >= 3, "several tenants: {csv}");
    let (mine, theirs) = (tenant_of(rows[0]), tenant_of(rows[1]));
    let reader = api_key(env, "reader", &[&mine]);
    let publisher = api_key(env, "publisher", &[&mine]);

    // Nothing without a reader or admin key.
    for path in [
        "/api/dashboards/sre?range=30d",
        "/api/alerts",
        csv_path.as_str(),
    ] {
        assert_eq!(http_get(port, path).map(|r| r.0), Some(401), "{path}");
        assert_eq!(get_json(port, path, "stk_00000000_bogus").0, 401, "{path}");
        assert_eq!(get_json(port, path, &publisher).0, 403, "{path}");
    }

    // Every dashboard: the reader's panels are the admin's for that tenant, exactly.
    for dashboard in ["sre", "product", "billing"] {
        let path = format!("/api/dashboards/{dashboard}?range=30d");
        let (status, as_reader) = get_json(port, &path, &reader);
        assert_eq!(status, 200);
        assert_eq!(as_reader["tenants"], serde_json::json!([mine]));
        let (_, as_admin) = get_json(port, &format!("{path}&tenant={mine}"), &admin);
        let (_, everyone) = get_json(port, &path, &admin);
        let (reader_rows, admin_rows) = (panel_rows(&as_reader), panel_rows(&as_admin));
        let mut differs = false;
        for panel in as_reader["panels"].as_array().expect("panels") {
            let id = panel["id"].as_str().unwrap_or_default();
            if panel["restricted"] == true {
                assert!(
                    ["consumer_lag", "lag", "alerts"].contains(&id),
                    "{dashboard}/{id}"
                );
                assert!(panel.get("result").is_none(), "{dashboard}/{id} withheld");
                continue;
            }
            assert!(
                same(&reader_rows[id], &admin_rows[id]),
                "{dashboard}/{id}: {:?} != {:?}",
                reader_rows[id],
                admin_rows[id]
            );
            differs |= !same(&admin_rows[id], &panel_rows(&everyone)[id]);
        }
        assert!(
            differs,
            "{dashboard}: the tenant's numbers differ from everyone's"
        );
    }

    // Crafted query strings: another tenant, an injection, a second tenant parameter.
    let quoted_theirs = format!("{mine}' OR tenant_id = '{theirs}");
    for query in [
        format!("tenant={theirs}"),
        format!("tenant={}", urlencode(&quoted_theirs)),
        format!("tenant={mine}&tenant={theirs}"),
        format!("tenant={theirs}&tenant={mine}&tenant={theirs}"),
        format!("tenant=%20{theirs}"),
    ] {
        let path = format!("/api/dashboards/billing?range=30d&{query}");
        let (status, answer) = get_json(port, &path, &reader);
        let shown = answer.to_string();
        assert!(
            status == 403 || status == 400 || !shown.contains(&theirs),
            "{query}: {status} {shown}"
        );
    }
    // Extra parameters change nothing.
    let (_, plain) = get_json(port, "/api/dashboards/billing?range=30d", &reader);
    let (_, extra) = get_json(
        port,
        &format!("/api/dashboards/billing?range=30d&tenants={theirs}&role=admin"),
        &reader,
    );
    let (plain, extra) = (panel_rows(&plain), panel_rows(&extra));
    assert!(plain.keys().eq(extra.keys()));
    assert!(
        plain.keys().all(|id| same(&plain[id], &extra[id])),
        "{plain:?} != {extra:?}"
    );

    // The billing CSV holds the reader's row only, the same as the admin's.
    let (status, own) = http_get_as(port, &csv_path, Some(&reader)).expect("the CSV");
    assert_eq!(status, 200);
    let own_rows: Vec<&str> = own.lines().skip(1).collect();
    assert_eq!(own_rows, [rows[0]]);
    let both = api_key(env, "reader", &[&mine, &theirs]);
    let (_, two) = http_get_as(port, &csv_path, Some(&both)).expect("the CSV");
    assert_eq!(two.lines().skip(1).collect::<Vec<_>>(), [rows[0], rows[1]]);

    // Alerts: only its own (none here), while the admin's list is not filtered.
    assert_eq!(
        get_json(port, "/api/alerts", &reader),
        (200, serde_json::json!([]))
    );

    // A revoked reader key reads nothing.
    stdout_of(&salestalk(&["keys", "revoke", key_id(&reader)], env));
    assert_eq!(
        get_json(port, "/api/dashboards/sre?range=30d", &reader).0,
        401
    );
    assert_eq!(get_json(port, &csv_path, &reader).0, 401);
    setup.isolated.remove().await;
}

/// Whether two panel results are the same: equal, but floating-point sums only to 1e-9
/// (ClickHouse adds them up in whatever order its threads finish).
fn same(a: &Option<serde_json::Value>, b: &Option<serde_json::Value>) -> bool {
    fn value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (a, b) {
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| value(a, b))
            }
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
            }
            _ => a == b,
        }
    }
    match (a, b) {
        (Some(a), Some(b)) => value(a, b),
        _ => a == b,
    }
}

/// `text` percent-encoded for a query string.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
