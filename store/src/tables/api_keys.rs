//! API keys: who may publish for which tenants, and who may read whose numbers. Stored hashed
//! in ClickHouse (`api_keys`), so every instance of the gateway and of `serve` sees the same
//! keys and a revocation everywhere at once; the key itself is shown once, when it is made.
//!
//! A key reads `stk_<id>_<secret>`: the id (16 hex digits, 64 random bits, checked unused
//! when made; keys made before it was widened have 8) names it in lists and logs, the secret
//! (64 hex digits, 256 random bits) is never stored, only the SHA-256 of the whole key.
//!
//! A key may expire (`expires_at`), and a publisher key may be scoped to event types
//! (`event_types`: patterns like `conversation.*` or `classification.performed.v1`). Platform
//! event types ([`PLATFORM_EVENT_TYPES`], e.g. `tenant.provisioned`) are published only by a
//! key whose patterns name them explicitly: a tenant's key cannot announce tenants.

use clickhouse::Row;
use salestalk_contracts::EventKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Ddl;
use crate::endpoint::{ClickHouseError, Endpoint};

/// Migration 16: when a key expires (0: never).
pub(crate) fn add_expires_at(ddl: &Ddl<'_>) -> String {
    format!(
        "ALTER TABLE {}.api_keys ADD COLUMN expires_at DateTime('UTC')",
        ddl.database
    )
}

/// Migration 16: the event types a publisher key is scoped to (empty: every type but platform ones).
pub(crate) fn add_event_types(ddl: &Ddl<'_>) -> String {
    format!(
        "ALTER TABLE {}.api_keys ADD COLUMN event_types Array(String)",
        ddl.database
    )
}

/// Migration 7: keys, hashed; a revocation is a newer version of the key row.
pub(crate) fn create(ddl: &Ddl<'_>) -> String {
    let Ddl { database, low, .. } = *ddl;
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.api_keys (\n\
         key_id String,\n\
         key_hash String,\n\
         role {low},\n\
         tenants Array(String),\n\
         created_at DateTime('UTC'),\n\
         revoked_at DateTime('UTC'),\n\
         changed_at_ms UInt64\n\
         ) ENGINE = ReplacingMergeTree(changed_at_ms)\n\
         ORDER BY key_id"
    )
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Publishes events for its tenants.
    Publisher,
    /// Reads its tenants' dashboards, APIs and billing.
    Reader,
    /// Reads every tenant's numbers.
    Admin,
}

impl Role {
    /// Its name in commands and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Role::Publisher, Role::Reader, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// A key as lists show it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public id (`stk_<id>_...`).
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// The tenants it is for (empty for an admin: all of them).
    pub tenants: Vec<String>,
    /// When it was made (Unix s).
    pub created_at: u32,
    /// When it was revoked (Unix s), if it was.
    pub revoked_at: Option<u32>,
    /// The event types it may publish (patterns; empty: every type but platform ones).
    pub event_types: Vec<String>,
    /// When it stops working (Unix s), if ever.
    pub expires_at: Option<u32>,
}

impl ApiKey {
    /// Whether it has expired by `now_s`.
    pub fn expired_at(&self, now_s: u32) -> bool {
        self.expires_at.is_some_and(|at| at <= now_s)
    }

    /// Whether it may publish events of `event_type` (`classification.performed.v1`): an
    /// admin key (the platform's own) any; a publisher key what its patterns allow.
    pub fn may_publish(&self, event_type: &str) -> bool {
        if self.role == Role::Admin {
            return true;
        }
        let platform = is_platform(event_type);
        if self.event_types.is_empty() {
            return !platform;
        }
        self.event_types
            .iter()
            .any(|pattern| matches_type(pattern, event_type) && (!platform || names(pattern)))
    }
}

/// Event types only the platform publishes (their family, without the version): a key
/// publishes them only when one of its patterns names the family itself.
pub const PLATFORM_EVENT_TYPES: [EventKind; 1] = [EventKind::TenantProvisioned];

/// Whether `event_type` belongs to a platform family.
pub fn is_platform(event_type: &str) -> bool {
    PLATFORM_EVENT_TYPES.iter().any(|family| {
        event_type
            .strip_prefix(family.name())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// Whether `pattern` names a platform family explicitly (`tenant.provisioned.*`, not `*` or
/// `tenant.*`).
fn names(pattern: &str) -> bool {
    let literal = pattern.trim_end_matches('*').trim_end_matches('.');
    is_platform(literal)
}

/// Whether `event_type` matches `pattern`: equal, or starting with the text before a final
/// `*` (`conversation.*`, `*`).
fn matches_type(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The request itself is wrong; every problem is listed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// ClickHouse failed.
    #[error(transparent)]
    Store(#[from] ClickHouseError),
}

impl KeyError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}

/// Most tenants one key may name.
pub const MAX_TENANTS_PER_KEY: usize = 1_000;
/// Longest tenant id a key may name.
const MAX_TENANT_LEN: usize = 128;
/// Most event-type patterns one key may carry.
pub const MAX_EVENT_TYPES_PER_KEY: usize = 100;
/// Longest event-type pattern.
const MAX_PATTERN_LEN: usize = 128;
/// Hex digits of a new key's id.
const ID_HEX: usize = 16;
/// Hex digits of the ids of keys made before ids were widened.
const OLD_ID_HEX: usize = 8;
/// Hex digits of a key's secret.
const SECRET_HEX: usize = 64;
/// Longest well-formed key, bytes.
pub const MAX_KEY_LEN: usize = "stk__".len() + ID_HEX + SECRET_HEX;

/// What a new key is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// What it may do.
    pub role: Role,
    /// The tenants it is for (none for an admin).
    pub tenants: Vec<String>,
    /// The event types it may publish (patterns; empty: every type but platform ones).
    pub event_types: Vec<String>,
    /// When it stops working (Unix s), if ever.
    pub expires_at: Option<u32>,
}

/// One stored version of a key (a revocation is a newer version).
#[derive(Debug, Row, Serialize, Deserialize)]
struct KeyRecord {
    key_id: String,
    key_hash: String,
    role: String,
    tenants: Vec<String>,
    created_at: u32,
    revoked_at: u32,
    changed_at_ms: u64,
    event_types: Vec<String>,
    expires_at: u32,
}

impl KeyRecord {
    fn into_key(self) -> Option<ApiKey> {
        Some(ApiKey {
            id: self.key_id,
            role: Role::parse(&self.role)?,
            tenants: self.tenants,
            created_at: self.created_at,
            revoked_at: (self.revoked_at > 0).then_some(self.revoked_at),
            event_types: self.event_types,
            expires_at: (self.expires_at > 0).then_some(self.expires_at),
        })
    }
}

/// Every key's latest version; `{filter}` narrows the keys. The inner names differ from the
/// columns so that no aggregate reads another's alias (newer servers resolve aliases first).
fn latest(filter: &str) -> String {
    format!(
        "SELECT key_id, h AS key_hash, r AS role, t AS tenants, c AS created_at, \
         v AS revoked_at, m AS changed_at_ms, et AS event_types, ex AS expires_at \
         FROM (SELECT key_id, \
         argMax(key_hash, changed_at_ms) AS h, argMax(role, changed_at_ms) AS r, \
         argMax(tenants, changed_at_ms) AS t, min(created_at) AS c, \
         argMax(revoked_at, changed_at_ms) AS v, max(changed_at_ms) AS m, \
         argMax(event_types, changed_at_ms) AS et, argMax(expires_at, changed_at_ms) AS ex \
         FROM api_keys {filter} GROUP BY key_id)"
    )
}

/// `bytes` as lower-case hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The hex SHA-256 of `key`.
fn hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// The id part of a well-formed key.
fn id_of(key: &str) -> Option<&str> {
    if key.len() > MAX_KEY_LEN {
        return None;
    }
    let rest = key.strip_prefix("stk_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    ((hex(id, ID_HEX) || hex(id, OLD_ID_HEX)) && hex(secret, SECRET_HEX)).then_some(id)
}

/// Whether `key` has a key's form (`stk_<id>_<secret>`); only such keys are looked up.
pub fn well_formed(key: &str) -> bool {
    id_of(key).is_some()
}

/// The SHA-256 of `key`: what caches remember a key by, never the key itself.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equal, in a time that does not depend on where two same-length strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// Every problem with a key for `role`, `tenants` and `event_types`.
pub fn problems(role: Role, tenants: &[String], event_types: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if role != Role::Publisher && !event_types.is_empty() {
        out.push(format!(
            "--event-type scopes what a key publishes; a {} key publishes nothing",
            role.as_str()
        ));
    }
    if event_types.len() > MAX_EVENT_TYPES_PER_KEY {
        out.push(format!(
            "at most {MAX_EVENT_TYPES_PER_KEY} event types per key, not {}",
            event_types.len()
        ));
    }
    for pattern in event_types {
        let body = pattern.strip_suffix('*').unwrap_or(pattern);
        if pattern.is_empty()
            || pattern.len() > MAX_PATTERN_LEN
            || body.contains('*')
            || !body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        {
            out.push(format!(
                "'{}' is not an event-type pattern (like conversation.* or \
                 classification.performed.v1: letters, digits, dots, a final *)",
                pattern.escape_debug()
            ));
        }
    }
    if role != Role::Admin && tenants.is_empty() {
        out.push(format!(
            "a {} key needs at least one --tenant",
            role.as_str()
        ));
    }
    if tenants.len() > MAX_TENANTS_PER_KEY {
        out.push(format!(
            "at most {MAX_TENANTS_PER_KEY} tenants per key, not {}",
            tenants.len()
        ));
    }
    for tenant in tenants {
        if tenant.is_empty()
            || tenant.len() > MAX_TENANT_LEN
            || tenant.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            out.push(format!(
                "'{}' is not a tenant id (1 to {MAX_TENANT_LEN} characters, no spaces)",
                tenant.escape_debug()
            ));
        }
    }
    out
}

impl Endpoint {
    /// Makes a key as `request` asks at `now_s`: returns the key (shown once) and how lists
    /// will show it. Its id is checked unused first.
    pub async fn create_key(
        &self,
        request: &KeyRequest,
        now_s: u32,
    ) -> Result<(String, ApiKey), KeyError> {
        let mut found = problems(request.role, &request.tenants, &request.event_types);
        if request.expires_at.is_some_and(|at| at <= now_s) {
            found.push("--expires must be in the future".into());
        }
        if !found.is_empty() {
            return Err(KeyError::Invalid(found));
        }
        let mut id = hex(&rand::random::<[u8; ID_HEX / 2]>());
        // 64 random bits collide once in billions of keys; checking costs one query.
        while self.latest_key(&id).await?.is_some() {
            id = hex(&rand::random::<[u8; ID_HEX / 2]>());
        }
        let key = format!("stk_{id}_{}", hex(&rand::random::<[u8; SECRET_HEX / 2]>()));
        let sorted = |list: &[String]| {
            let mut list = list.to_vec();
            list.sort();
            list.dedup();
            list
        };
        let record = KeyRecord {
            key_id: id.clone(),
            key_hash: hash(&key),
            role: request.role.as_str().into(),
            tenants: sorted(&request.tenants),
            created_at: now_s,
            revoked_at: 0,
            changed_at_ms: u64::from(now_s) * 1000,
            event_types: sorted(&request.event_types),
            expires_at: request.expires_at.unwrap_or(0),
        };
        self.write_key(&record).await?;
        let listed = ApiKey {
            id,
            role: request.role,
            tenants: record.tenants.clone(),
            created_at: now_s,
            revoked_at: None,
            event_types: record.event_types.clone(),
            expires_at: request.expires_at,
        };
        Ok((key, listed))
    }

    /// Every key, newest first, revoked ones included.
    pub async fn keys(&self) -> Result<Vec<ApiKey>, ClickHouseError> {
        let rows: Vec<KeyRecord> = self
            .query(&format!("{} ORDER BY created_at DESC, key_id", latest("")))
            .fetch_all()
            .await?;
        Ok(rows.into_iter().filter_map(KeyRecord::into_key).collect())
    }

    /// Revokes the key with `id` at `now_s`; false when there is no such active key.
    pub async fn revoke_key(&self, id: &str, now_s: u32) -> Result<bool, ClickHouseError> {
        let Some(mut record) = self.latest_key(id).await? else {
            return Ok(false);
        };
        if record.revoked_at > 0 {
            return Ok(false);
        }
        record.revoked_at = now_s.max(1);
        record.changed_at_ms = record.changed_at_ms.max(u64::from(now_s) * 1000) + 1;
        self.write_key(&record).await?;
        Ok(true)
    }

    /// The key `key` stands for, if it is one, not revoked and not expired by `now_s`.
    pub async fn verify_key(
        &self,
        key: &str,
        now_s: u32,
    ) -> Result<Option<ApiKey>, ClickHouseError> {
        let Some(id) = id_of(key) else {
            return Ok(None);
        };
        let Some(record) = self.latest_key(id).await? else {
            return Ok(None);
        };
        if record.revoked_at > 0 || !same(&record.key_hash, &hash(key)) {
            return Ok(None);
        }
        Ok(record.into_key().filter(|k| !k.expired_at(now_s)))
    }

    async fn latest_key(&self, id: &str) -> Result<Option<KeyRecord>, ClickHouseError> {
        self.query(&latest("WHERE key_id = ?"))
            .bind(id)
            .fetch_optional()
            .await
    }

    async fn write_key(&self, record: &KeyRecord) -> Result<(), ClickHouseError> {
        self.insert_rows::<KeyRecord>("api_keys", std::slice::from_ref(record))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_have_an_id() {
        let key = format!("stk_0a1b2c3d_{}", "f".repeat(64));
        assert_eq!(id_of(&key), Some("0a1b2c3d"));
        let key = format!("stk_0a1b2c3d4e5f6a7b_{}", "f".repeat(64));
        assert_eq!(id_of(&key), Some("0a1b2c3d4e5f6a7b"));
        assert_eq!(key.len(), MAX_KEY_LEN);
        assert!(well_formed(&key));
        assert!(!well_formed(&format!("{key}{}", "0".repeat(400_000))));
        for bad in [
            "",
            "stk_",
            "stk_0a1b2c3d",
            &format!("stk_0a1b2c3_{}", "f".repeat(64)),
            &format!("stk_0a1b2c3d_{}", "f".repeat(63)),
            &format!("stk_0a1b2c3d_{}g", "f".repeat(63)),
            &format!("xyz_0a1b2c3d_{}", "f".repeat(64)),
            &format!("stk_0a1b2c3d4e_{}", "f".repeat(64)),
        ] {
            assert_eq!(id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn hashes_compare_whole() {
        assert!(same(&hash("a"), &hash("a")));
        assert!(!same(&hash("a"), &hash("b")));
        assert!(!same("ab", "abc"));
        assert_eq!(hash("abc").len(), 64);
    }

    #[test]
    fn every_problem_with_a_key_request_is_named() {
        assert!(problems(Role::Admin, &[], &[]).is_empty());
        assert!(problems(Role::Reader, &["tenant-a".into()], &[]).is_empty());
        let found = problems(Role::Publisher, &[], &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        let found = problems(
            Role::Reader,
            &["".into(), "a b".into(), "x".repeat(129)],
            &[],
        );
        assert_eq!(found.len(), 3, "{found:?}");
        let a = ["tenant-a".to_string()];
        let patterns = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert!(problems(Role::Publisher, &a, &patterns(&["conversation.*", "*"])).is_empty());
        let found = problems(Role::Publisher, &a, &patterns(&["a*b", "a b", "", "x'"]));
        assert_eq!(found.len(), 4, "{found:?}");
        let found = problems(Role::Reader, &a, &patterns(&["conversation.*"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(Role::parse("reader"), Some(Role::Reader));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn platform_event_types_need_a_grant_that_names_them() {
        let key = |patterns: &[&str]| ApiKey {
            id: "0".into(),
            role: Role::Publisher,
            tenants: vec!["tenant-a".into()],
            created_at: 0,
            revoked_at: None,
            event_types: patterns.iter().map(|p| p.to_string()).collect(),
            expires_at: Some(100),
        };
        let any = key(&[]);
        assert!(any.may_publish("conversation.completed.v1"));
        assert!(!any.may_publish("tenant.provisioned.v1"));
        assert!(!key(&["*"]).may_publish("tenant.provisioned.v1"));
        assert!(!key(&["tenant.*"]).may_publish("tenant.provisioned.v1"));
        assert!(key(&["tenant.provisioned.*"]).may_publish("tenant.provisioned.v1"));
        assert!(key(&["tenant.provisioned.v1"]).may_publish("tenant.provisioned.v1"));
        let scoped = key(&["conversation.*", "classification.performed.v2"]);
        assert!(scoped.may_publish("conversation.completed.v1"));
        assert!(scoped.may_publish("classification.performed.v2"));
        assert!(!scoped.may_publish("classification.performed.v1"));
        assert!(!scoped.may_publish("narrative.generated.v1"));
        assert!(!any.expired_at(99));
        assert!(any.expired_at(100));
    }
}
