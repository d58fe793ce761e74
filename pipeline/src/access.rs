//! Who a request is from: the API key it presents (`Authorization: Bearer stk_...`), checked
//! against ClickHouse and trusted for a while, and what the key may read. The ingest gateway
//! and `serve` share it, so a revocation reaches both within the same `key_cache_ms`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use salestalk_dashboards::Tenants;
use salestalk_store::keys::{ApiKey, Role};
use salestalk_store::{ClickHouseError, Endpoint};

/// Most presented keys remembered (a flood of made-up keys must not grow it without end).
const MAX_CACHED: usize = 10_000;

/// Verified keys, each trusted for `fresh` after ClickHouse vouched for it (or refused it).
pub struct KeyCache {
    endpoint: Endpoint,
    fresh: Duration,
    keys: Mutex<HashMap<String, (Instant, Option<ApiKey>)>>,
}

impl KeyCache {
    /// Keys checked in `endpoint`'s database, trusted for `fresh_ms`.
    pub fn new(endpoint: Endpoint, fresh_ms: u64) -> Self {
        Self {
            endpoint,
            fresh: Duration::from_millis(fresh_ms),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The key `presented` stands for (`None`: no such key, or revoked), from the cache while
    /// it is fresh.
    pub async fn verify(&self, presented: &str) -> Result<Option<ApiKey>, ClickHouseError> {
        if let Ok(keys) = self.keys.lock()
            && let Some((at, key)) = keys.get(presented)
            && at.elapsed() < self.fresh
        {
            return Ok(key.clone());
        }
        let key = self.endpoint.verify_key(presented).await?;
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= MAX_CACHED {
                keys.clear();
            }
            keys.insert(presented.to_string(), (Instant::now(), key.clone()));
        }
        Ok(key)
    }

    /// The key a request presents, verified; `Ok(None)` without one or with a bad one.
    pub async fn from_headers(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<ApiKey>, ClickHouseError> {
        match bearer(headers) {
            Some(presented) => self.verify(presented).await,
            None => Ok(None),
        }
    }
}

/// The bearer token of `Authorization`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// What `key` may read: every tenant for an admin, its own for a reader, nothing for a
/// publisher (it only publishes).
pub fn readable(key: &ApiKey) -> Option<Tenants> {
    match key.role {
        Role::Admin => Some(Tenants::All),
        Role::Reader => Some(Tenants::Only(key.tenants.clone())),
        Role::Publisher => None,
    }
}
