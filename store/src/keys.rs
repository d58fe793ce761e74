//! API keys: who may publish for which tenants, and who may read whose numbers. Stored hashed
//! in ClickHouse (`api_keys`), so every instance of the gateway and of `serve` sees the same
//! keys and a revocation everywhere at once; the key itself is shown once, when it is made.
//!
//! A key reads `stk_<id>_<secret>`: the id (8 hex digits) names it in lists and logs, the
//! secret (64 hex digits, 256 random bits) is never stored, only the SHA-256 of the whole key.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::endpoint::{ClickHouseError, Endpoint};

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
}

impl KeyRecord {
    fn into_key(self) -> Option<ApiKey> {
        Some(ApiKey {
            id: self.key_id,
            role: Role::parse(&self.role)?,
            tenants: self.tenants,
            created_at: self.created_at,
            revoked_at: (self.revoked_at > 0).then_some(self.revoked_at),
        })
    }
}

/// Every key's latest version; `{filter}` narrows the keys. The inner names differ from the
/// columns so that no aggregate reads another's alias (newer servers resolve aliases first).
fn latest(filter: &str) -> String {
    format!(
        "SELECT key_id, h AS key_hash, r AS role, t AS tenants, c AS created_at, \
         v AS revoked_at, m AS changed_at_ms FROM (SELECT key_id, \
         argMax(key_hash, changed_at_ms) AS h, argMax(role, changed_at_ms) AS r, \
         argMax(tenants, changed_at_ms) AS t, min(created_at) AS c, \
         argMax(revoked_at, changed_at_ms) AS v, max(changed_at_ms) AS m \
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
    let rest = key.strip_prefix("stk_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 8) && hex(secret, 64)).then_some(id)
}

/// Equal, in a time that does not depend on where two same-length strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// Every problem with a key for `role` and `tenants`.
pub fn problems(role: Role, tenants: &[String]) -> Vec<String> {
    let mut out = Vec::new();
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
    /// Makes a key for `role` and `tenants` at `now_s`: returns the key (shown once) and how
    /// lists will show it.
    pub async fn create_key(
        &self,
        role: Role,
        tenants: &[String],
        now_s: u32,
    ) -> Result<(String, ApiKey), KeyError> {
        let found = problems(role, tenants);
        if !found.is_empty() {
            return Err(KeyError::Invalid(found));
        }
        let id = hex(&rand::random::<[u8; 4]>());
        let key = format!("stk_{id}_{}", hex(&rand::random::<[u8; 32]>()));
        let mut tenants = tenants.to_vec();
        tenants.sort();
        tenants.dedup();
        let record = KeyRecord {
            key_id: id.clone(),
            key_hash: hash(&key),
            role: role.as_str().into(),
            tenants: tenants.clone(),
            created_at: now_s,
            revoked_at: 0,
            changed_at_ms: u64::from(now_s) * 1000,
        };
        self.write_key(&record).await?;
        let listed = ApiKey {
            id,
            role,
            tenants,
            created_at: now_s,
            revoked_at: None,
        };
        Ok((key, listed))
    }

    /// Every key, newest first, revoked ones included.
    pub async fn keys(&self) -> Result<Vec<ApiKey>, ClickHouseError> {
        let rows: Vec<KeyRecord> = self
            .client()
            .query(&format!("{} ORDER BY created_at DESC, key_id", latest("")))
            .fetch_all()
            .await
            .map_err(|e| ClickHouseError::classify(&self.url, e))?;
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

    /// The key `key` stands for, if it is one and not revoked.
    pub async fn verify_key(&self, key: &str) -> Result<Option<ApiKey>, ClickHouseError> {
        let Some(id) = id_of(key) else {
            return Ok(None);
        };
        let Some(record) = self.latest_key(id).await? else {
            return Ok(None);
        };
        if record.revoked_at > 0 || !same(&record.key_hash, &hash(key)) {
            return Ok(None);
        }
        Ok(record.into_key())
    }

    async fn latest_key(&self, id: &str) -> Result<Option<KeyRecord>, ClickHouseError> {
        self.client()
            .query(&latest("WHERE key_id = ?"))
            .bind(id)
            .fetch_optional()
            .await
            .map_err(|e| ClickHouseError::classify(&self.url, e))
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
        for bad in [
            "",
            "stk_",
            "stk_0a1b2c3d",
            &format!("stk_0a1b2c3_{}", "f".repeat(64)),
            &format!("stk_0a1b2c3d_{}", "f".repeat(63)),
            &format!("stk_0a1b2c3d_{}g", "f".repeat(63)),
            &format!("xyz_0a1b2c3d_{}", "f".repeat(64)),
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
        assert!(problems(Role::Admin, &[]).is_empty());
        assert!(problems(Role::Reader, &["tenant-a".into()]).is_empty());
        let found = problems(Role::Publisher, &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        let found = problems(Role::Reader, &["".into(), "a b".into(), "x".repeat(129)]);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(Role::parse("reader"), Some(Role::Reader));
        assert_eq!(Role::parse("root"), None);
    }
}
