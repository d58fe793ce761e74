//! Who a request is from: the API key it presents (`Authorization: Bearer stk_...`), checked
//! against ClickHouse and trusted for a while, and what the key may read. The ingest gateway
//! and `serve` share it, so a revocation reaches both within the same `key_cache_ms`.
//!
//! An anonymous client must not be able to make us spend memory or ClickHouse queries: the
//! HTTP server bounds the request head (`server::MAX_HEADER_BYTES`); only a well-formed key
//! (`stk_<hex id>_<64 hex>`) is looked up at all; keys are remembered by their SHA-256, never
//! as presented, verified ones in an LRU bounded in bytes ([`MAX_CACHED_BYTES`]) and refused
//! ones in a small LRU of digests ([`MAX_REFUSED`]); and a client address that failed
//! [`MAX_FAILURES_PER_MINUTE`] times in a minute is answered 429 without a look.

use salestalk_operators::time::now_datetime;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use lru::LruCache;
use salestalk_dashboards::Tenants;
use salestalk_store::tables::api_keys::{self, ApiKey, Role};
use salestalk_store::{ClickHouseError, Endpoint};

pub use crate::server::ClientAddress;

/// Most bytes the verified keys held in the cache may take (a key naming many tenants
/// weighs more than one naming a few).
pub const MAX_CACHED_BYTES: usize = 4 << 20;

/// Most refused keys remembered (a digest each), so a key that was just refused is not
/// looked up again while fresh.
pub const MAX_REFUSED: usize = 4_096;

/// Failed attempts a client address may make in a minute before it is answered 429.
pub const MAX_FAILURES_PER_MINUTE: u32 = 30;

/// Most client addresses whose failures are counted; beyond it, addresses with no failure
/// in the last minute are forgotten first, then the oldest.
const MAX_COUNTED_ADDRESSES: usize = 65_536;

/// What a request's key gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A valid key.
    Granted(ApiKey),
    /// No key, a malformed, unknown, revoked or expired one.
    Refused,
    /// This client address failed too often: try again after this long.
    Throttled(Duration),
}

/// Verified keys, each trusted for `fresh` after ClickHouse vouched for it (or refused it),
/// and, while ClickHouse cannot be asked, for `stale` (stale-while-error).
pub struct KeyCache {
    endpoint: Endpoint,
    fresh: Duration,
    stale: Duration,
    /// Whether the last answer came from the cache because ClickHouse failed (logged once
    /// per outage, not per request).
    serving_stale: AtomicBool,
    state: Mutex<Remembered>,
}

/// What the cache holds, behind one lock (every operation on it is short and never awaits).
struct Remembered {
    verified: LruCache<[u8; 32], (Instant, ApiKey)>,
    verified_bytes: usize,
    refused: LruCache<[u8; 32], Instant>,
    failures: Failures,
}

impl KeyCache {
    /// Keys checked in `endpoint`'s database, trusted for `fresh_ms`.
    pub fn new(endpoint: Endpoint, fresh_ms: u64) -> Self {
        Self {
            endpoint,
            fresh: Duration::from_millis(fresh_ms),
            stale: Duration::from_millis(fresh_ms),
            serving_stale: AtomicBool::new(false),
            state: Mutex::new(Remembered {
                verified: LruCache::unbounded(),
                verified_bytes: 0,
                refused: LruCache::new(NonZeroUsize::MIN.saturating_add(MAX_REFUSED - 1)),
                failures: Failures::default(),
            }),
        }
    }

    /// While ClickHouse cannot be asked, answers from what it said last if that was within
    /// `stale_ms` (at least the fresh time): a key verified then is accepted, one refused then
    /// (revoked included) is refused. A key revoked during an outage therefore works until
    /// ClickHouse answers again (plus the fresh time), and never longer than `stale_ms` after
    /// its last check. Expiry is still checked on every request.
    pub fn serve_stale_for(mut self, stale_ms: u64) -> Self {
        self.stale = Duration::from_millis(stale_ms).max(self.fresh);
        self
    }

    /// What `presented` (from `client`) gets: the cache answers while fresh; otherwise a
    /// well-formed key is looked up in ClickHouse (and, if that fails, the cache answers
    /// while within the stale bound).
    pub async fn verify(
        &self,
        presented: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Access, ClickHouseError> {
        let now = Instant::now();
        let digest = presented
            .filter(|k| api_keys::well_formed(k))
            .map(api_keys::digest);
        {
            let Ok(mut state) = self.state.lock() else {
                return Ok(Access::Refused);
            };
            if let Some(client) = client
                && let Some(wait) = state.failures.throttled(client, now)
            {
                return Ok(Access::Throttled(wait));
            }
            let cached = match &digest {
                None => Some(None),
                Some(digest) => state.cached(digest, now, self.fresh),
            };
            match cached {
                Some(Some(key)) => return Ok(granted(Some(key), &mut state, client, now)),
                Some(None) => {
                    if let Some(client) = client {
                        state.failures.fail(client, now);
                    }
                    return Ok(Access::Refused);
                }
                None => {}
            }
        }
        let Some((presented, digest)) = presented.zip(digest) else {
            return Ok(Access::Refused);
        };
        let looked_up = self.endpoint.verify_key(presented, now_datetime()).await;
        let Ok(mut state) = self.state.lock() else {
            return Ok(Access::Refused);
        };
        let key = match looked_up {
            Ok(key) => {
                if self.serving_stale.swap(false, Ordering::Relaxed) {
                    tracing::info!("ClickHouse answers key checks again");
                }
                key
            }
            Err(error) if error.is_retryable() => {
                let Some(remembered) = state.cached(&digest, now, self.stale) else {
                    return Err(error);
                };
                if !self.serving_stale.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %error,
                        stale_s = self.stale.as_secs(),
                        "ClickHouse cannot check keys: answering from what it said within the \
                         stale bound"
                    );
                }
                return Ok(granted(remembered, &mut state, client, now));
            }
            Err(error) => return Err(error),
        };
        match key {
            Some(key) => {
                state.remember(digest, key.clone(), now);
                Ok(granted(Some(key), &mut state, client, now))
            }
            None => {
                // Refused now (revoked, expired, unknown): what was verified before must not
                // answer for it during a later outage.
                state.forget(&digest);
                state.refused.put(digest, now);
                Ok(granted(None, &mut state, client, now))
            }
        }
    }

    /// The key a request presents, verified.
    pub async fn from_headers(
        &self,
        headers: &HeaderMap,
        client: Option<ClientAddress>,
    ) -> Result<Access, ClickHouseError> {
        self.verify(bearer(headers), client.map(|c| c.0)).await
    }
}

/// `key` as an answer, counting a failure against `client` when there is none. An expired
/// key is refused here too: the cache may hold it past its expiry.
fn granted(
    key: Option<ApiKey>,
    state: &mut Remembered,
    client: Option<IpAddr>,
    now: Instant,
) -> Access {
    match key.filter(|k| !k.expired_at(now_datetime())) {
        Some(key) => Access::Granted(key),
        None => {
            if let Some(client) = client {
                state.failures.fail(client, now);
            }
            Access::Refused
        }
    }
}

impl Remembered {
    /// The cache's answer for `digest` while fresh: `Some(Some(key))` verified,
    /// `Some(None)` refused, `None` unknown or stale.
    fn cached(
        &mut self,
        digest: &[u8; 32],
        now: Instant,
        fresh: Duration,
    ) -> Option<Option<ApiKey>> {
        if let Some((at, key)) = self.verified.get(digest)
            && now.saturating_duration_since(*at) < fresh
        {
            return Some(Some(key.clone()));
        }
        if let Some(at) = self.refused.get(digest)
            && now.saturating_duration_since(*at) < fresh
        {
            return Some(None);
        }
        None
    }

    /// Forgets the verified key under `digest`, if any.
    fn forget(&mut self, digest: &[u8; 32]) {
        if let Some((_, old)) = self.verified.pop(digest) {
            self.verified_bytes -= weight(&old);
        }
    }

    /// Remembers `key` under `digest`, forgetting the least recently used keys beyond
    /// [`MAX_CACHED_BYTES`].
    fn remember(&mut self, digest: [u8; 32], key: ApiKey, now: Instant) {
        self.refused.pop(&digest);
        let added = weight(&key);
        if let Some((_, old)) = self.verified.put(digest, (now, key)) {
            self.verified_bytes -= weight(&old);
        }
        self.verified_bytes += added;
        while self.verified_bytes > MAX_CACHED_BYTES {
            match self.verified.pop_lru() {
                Some((_, (_, old))) => self.verified_bytes -= weight(&old),
                None => break,
            }
        }
    }
}

/// What a cached key takes, bytes: its digest, id and tenants with their allocations.
fn weight(key: &ApiKey) -> usize {
    const ENTRY: usize = 32 + std::mem::size_of::<(Instant, ApiKey)>() + 32;
    ENTRY
        + key.id.len()
        + key
            .tenants
            .iter()
            .chain(&key.event_types)
            .map(|t| t.len() + std::mem::size_of::<String>())
            .sum::<usize>()
}

/// Failed attempts per client address in the current minute, for the most recently failing
/// [`MAX_COUNTED_ADDRESSES`] addresses. IPv6 clients are counted by their /64, which one
/// client holds whole.
struct Failures {
    by_address: LruCache<IpAddr, (Instant, u32)>,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            by_address: LruCache::new(NonZeroUsize::MIN.saturating_add(MAX_COUNTED_ADDRESSES - 1)),
        }
    }
}

/// The address failures are counted under: an IPv6 address's /64.
fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            v6.to_bits() & !((1u128 << 64) - 1),
        )),
    }
}

impl Failures {
    /// How long `client` must wait, if it failed too often in the last minute.
    fn throttled(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let (since, count) = self.by_address.peek(&counted_as(client))?;
        let elapsed = now.saturating_duration_since(*since);
        (elapsed < MINUTE && *count >= MAX_FAILURES_PER_MINUTE).then(|| MINUTE - elapsed)
    }

    /// Counts one failure of `client`.
    fn fail(&mut self, client: IpAddr, now: Instant) {
        let entry = self
            .by_address
            .get_or_insert_mut(counted_as(client), || (now, 0));
        if now.saturating_duration_since(entry.0) >= MINUTE {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The window failures are counted in.
const MINUTE: Duration = Duration::from_secs(60);

/// The bearer token of `Authorization`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The answer to a client address that failed too often: 429, with when to try again.
pub fn too_many_failures(
    wait: Duration,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    let mut response = crate::server::respond(
        hyper::StatusCode::TOO_MANY_REQUESTS,
        "application/json",
        serde_json::json!({
            "error": format!(
                "too many failed key checks from this address; try again in {} s",
                wait.as_secs().max(1)
            )
        })
        .to_string(),
    );
    if let Ok(value) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
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

#[cfg(test)]
mod tests {
    use super::*;
    use salestalk_store::tables::api_keys::digest;

    fn key(id: &str, tenants: usize) -> ApiKey {
        ApiKey {
            id: id.into(),
            role: Role::Reader,
            tenants: (0..tenants).map(|i| format!("tenant-{i:06}")).collect(),
            event_types: Vec::new(),
            created_at: 1,
            revoked_at: None,
            expires_at: None,
        }
    }

    #[test]
    fn verified_keys_stay_within_their_bytes_least_recently_used_first() {
        let mut state = Remembered {
            verified: LruCache::unbounded(),
            verified_bytes: 0,
            refused: LruCache::new(NonZeroUsize::MIN),
            failures: Failures::default(),
        };
        let now = Instant::now();
        let fresh = Duration::from_secs(60);
        // Keys naming a thousand tenants each: ~40 KB apiece.
        let heavy = key("0", 1_000);
        let each = weight(&heavy);
        assert!(each > 30_000, "{each}");
        let fits = MAX_CACHED_BYTES / each;
        for i in 0..fits * 3 {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            state.remember(digest, key(&i.to_string(), 1_000), now);
            // The first key is read every time: it is never the least recently used.
            assert!(
                state.cached(&[0u8; 32], now, fresh).is_some(),
                "key 0 at {i}"
            );
            assert!(state.verified_bytes <= MAX_CACHED_BYTES);
        }
        assert!(state.verified.len() <= fits, "{}", state.verified.len());
        assert!(state.verified.len() >= fits - 1);
        assert_eq!(
            state.verified_bytes,
            state
                .verified
                .iter()
                .map(|(_, (_, k))| weight(k))
                .sum::<usize>()
        );
        // A stale entry is no answer.
        assert!(state.cached(&[0u8; 32], now + fresh, fresh).is_none());
    }

    #[test]
    fn a_client_address_that_fails_too_often_waits_out_its_minute() {
        let mut failures = Failures::default();
        let start = Instant::now();
        let client: IpAddr = "192.0.2.1".parse().expect("address");
        let other: IpAddr = "192.0.2.2".parse().expect("address");
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert_eq!(failures.throttled(client, start), None);
            failures.fail(client, start);
        }
        let wait = failures.throttled(client, start + Duration::from_secs(20));
        assert_eq!(wait, Some(Duration::from_secs(40)));
        assert_eq!(failures.throttled(other, start), None);
        assert_eq!(failures.throttled(client, start + MINUTE), None);
        // Many addresses: the map stays bounded.
        for i in 0..(MAX_COUNTED_ADDRESSES as u32 + 10) {
            failures.fail(IpAddr::from(i.to_be_bytes()), start + MINUTE * 2);
        }
        assert!(failures.by_address.len() <= MAX_COUNTED_ADDRESSES);
        // Every address of one IPv6 /64 is one client.
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, last]);
        for last in 0..MAX_FAILURES_PER_MINUTE as u16 {
            failures.fail(v6(last), start);
        }
        assert!(failures.throttled(v6(9_999), start).is_some());
    }

    /// A key of the right form, its id `id` (16 hex digits).
    fn presented(id: &str) -> String {
        format!("stk_{id}_{}", "ab".repeat(32))
    }

    #[tokio::test]
    async fn while_clickhouse_is_down_keys_are_answered_as_it_last_answered_within_the_bound() {
        // Nothing listens on port 1: every lookup fails as unavailable (retryable).
        let cache =
            KeyCache::new(Endpoint::new("http://127.0.0.1:1", "db"), 10).serve_stale_for(60_000);
        let (known, revoked, unknown) = (
            presented("00000000000000a1"),
            presented("00000000000000a2"),
            presented("00000000000000a3"),
        );
        let long_ago = Instant::now() - Duration::from_secs(120);
        {
            let mut state = cache.state.lock().expect("lock");
            let now = Instant::now() - Duration::from_secs(1);
            state.remember(digest(&known), key("a1", 1), now);
            state.remember(digest(&revoked), key("a2", 1), now);
            // Revoked after it was verified: the later refusal forgets the verification.
            state.forget(&digest(&revoked));
            state.refused.put(digest(&revoked), now);
        }
        let access = cache.verify(Some(&known), None).await.expect("answered");
        assert!(
            matches!(access, Access::Granted(ref k) if k.id == "a1"),
            "{access:?}"
        );
        let access = cache.verify(Some(&revoked), None).await.expect("answered");
        assert_eq!(
            access,
            Access::Refused,
            "a revocation seen before the outage holds"
        );
        assert!(
            cache.verify(Some(&unknown), None).await.is_err(),
            "a key never checked cannot be answered"
        );
        // Past the bound, a verified key is no longer vouched for.
        cache
            .state
            .lock()
            .expect("lock")
            .remember(digest(&known), key("a1", 1), long_ago);
        assert!(cache.verify(Some(&known), None).await.is_err());
    }

    #[tokio::test]
    async fn without_a_stale_bound_an_outage_answers_no_key() {
        let cache = KeyCache::new(Endpoint::new("http://127.0.0.1:1", "db"), 10);
        let known = presented("00000000000000b1");
        cache.state.lock().expect("lock").remember(
            digest(&known),
            key("b1", 1),
            Instant::now() - Duration::from_secs(1),
        );
        assert!(cache.verify(Some(&known), None).await.is_err());
    }
}
