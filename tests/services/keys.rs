//! API keys on the real ClickHouse: a key is printed once and stored only as a hash, lists
//! never show it, a tampered key is refused, and a revoked key stops working.

use salestalk_store::keys::Role;

use crate::support::{Isolated, salestalk, stdout_of};

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
        key.starts_with("stk_") && key.len() == 4 + 8 + 1 + 64,
        "{key}"
    );
    let id = &key[4..12];
    let found = endpoint
        .verify_key(&key)
        .await
        .expect("verify")
        .expect("a valid key");
    assert_eq!(found.role, Role::Reader);
    assert_eq!(found.tenants, ["tenant-a", "tenant-b"]);

    // Stored as a hash: neither the key nor its secret is anywhere in the table or the list.
    let secret = &key[13..];
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
    assert_eq!(endpoint.verify_key(&tampered).await.expect("verify"), None);
    assert_eq!(
        endpoint
            .verify_key("Bearer nonsense")
            .await
            .expect("verify"),
        None
    );

    // Revoked: it stops working, the list says so, and it cannot be revoked twice.
    let revoked = stdout_of(&salestalk(&["keys", "revoke", id], env));
    assert_eq!(revoked.trim(), format!("revoked {id}"));
    assert_eq!(endpoint.verify_key(&key).await.expect("verify"), None);
    assert!(stdout_of(&salestalk(&["keys", "list"], env)).contains("revoked"));
    assert!(!salestalk(&["keys", "revoke", id], env).status.success());

    // A publisher or reader key names its tenants; an admin key needs none.
    let refused = salestalk(&["keys", "create", "--role", "publisher"], env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs at least one --tenant"));
    let admin = stdout_of(&salestalk(&["keys", "create", "--role", "admin"], env));
    let admin = endpoint
        .verify_key(admin.trim())
        .await
        .expect("verify")
        .expect("a valid admin key");
    assert_eq!((admin.role, admin.tenants.len()), (Role::Admin, 0));
    isolated.remove().await;
}
