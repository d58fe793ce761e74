//! The probes every process answers from its first second: `GET /health/live` (alive: the
//! process answers and its work loop makes progress) and `GET /health` (ready: started and
//! able to do its work).
//!
//! Processes bind their listener before they wait on anything (ClickHouse, the schema), so a
//! pod started during an outage answers its probes instead of being restarted for silence;
//! until it has started, readiness says what it waits for and every other route answers 503
//! with `Retry-After` ([`until_started`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// Seconds a client is told to wait while the process starts.
const RETRY_AFTER_S: u64 = 5;

/// What a process's probes answer; shared by its work loops (which [`Probes::beat`]) and its
/// listener.
#[derive(Debug)]
pub struct Probes {
    born: Instant,
    /// Milliseconds after `born` of the last sign of progress.
    last_beat_ms: AtomicU64,
    /// Liveness fails after this long without a beat (ms; 0: never, the process has no loop
    /// that can stall unseen).
    stall_after_ms: AtomicU64,
    /// `None` when ready, else why not (what it waits for).
    not_ready: Mutex<Option<String>>,
}

impl Default for Probes {
    fn default() -> Self {
        Self {
            born: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
            stall_after_ms: AtomicU64::new(0),
            not_ready: Mutex::new(Some("starting".to_string())),
        }
    }
}

impl Probes {
    /// Probes of a process that is starting: alive, not ready.
    pub fn starting() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Fails liveness once no [`Probes::beat`] came for `after` (counted from now).
    pub fn fail_liveness_after(&self, after: Duration) {
        self.beat();
        self.stall_after_ms
            .store(after.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// The work loop made progress (or is retrying something it cannot do without).
    pub fn beat(&self) {
        self.last_beat_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Not ready: waiting for `what` (shown by `/health`).
    pub fn wait_for(&self, what: impl Into<String>) {
        if let Ok(mut not_ready) = self.not_ready.lock() {
            *not_ready = Some(what.into());
        }
    }

    /// Ready: started and able to do its work.
    pub fn ready(&self) {
        if let Ok(mut not_ready) = self.not_ready.lock() {
            *not_ready = None;
        }
    }

    /// What the process waits for, or `None` when it is ready.
    pub fn waiting_for(&self) -> Option<String> {
        self.not_ready
            .lock()
            .map(|w| w.clone())
            .unwrap_or_else(|_| Some("a poisoned lock".to_string()))
    }

    /// Time since the last sign of progress.
    pub fn since_progress(&self) -> Duration {
        let last = self.last_beat_ms.load(Ordering::Relaxed);
        Duration::from_millis((self.born.elapsed().as_millis() as u64).saturating_sub(last))
    }

    /// `/health/live`: 200 while the process answers and, where a stall bound is set, its work
    /// loop beat within it; 503 naming how long it has been stalled otherwise.
    pub fn liveness(&self) -> (StatusCode, String) {
        let bound = self.stall_after_ms.load(Ordering::Relaxed);
        let since = self.since_progress();
        if bound > 0 && since.as_millis() as u64 > bound {
            let body = json!({"status": "stalled", "since_progress_s": since.as_secs()});
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n"));
        }
        (StatusCode::OK, "{\"status\":\"alive\"}\n".to_string())
    }

    /// `/health`: 200 when ready, else 503 with what the process waits for.
    pub fn readiness(&self) -> (StatusCode, String) {
        match self.waiting_for() {
            None => (StatusCode::OK, "{\"status\":\"ok\"}\n".to_string()),
            Some(what) => {
                let body = json!({"status": "starting", "waiting_for": what});
                (StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n"))
            }
        }
    }
}

fn json_answer((status, body): (StatusCode, String)) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `/health` and `/health/live` from `probes`.
pub fn routes(probes: Arc<Probes>) -> Router {
    Router::new()
        .route(
            "/health",
            get(|State(p): State<Arc<Probes>>| async move { json_answer(p.readiness()) }),
        )
        .route(
            "/health/live",
            get(|State(p): State<Arc<Probes>>| async move { json_answer(p.liveness()) }),
        )
        .with_state(probes)
}

/// The router a process serves once started; until then its requests are answered 503.
pub type Started = Arc<OnceLock<Router>>;

/// `probes`' routes, and every other request handed to the router set in `app` once the
/// process has started (503 with `Retry-After` before).
pub fn until_started(probes: Arc<Probes>, app: Started) -> Router {
    routes(probes).fallback(move |request: Request| {
        let app = app.clone();
        async move {
            match app.get() {
                Some(router) => {
                    let mut router = router.clone();
                    match tower_service::Service::call(&mut router, request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
                None => {
                    let mut response =
                        Response::new(Body::from("{\"error\":\"starting: try again shortly\"}\n"));
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    let headers = response.headers_mut();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
                    response
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_process_is_alive_and_not_ready_until_it_says_so() {
        let probes = Probes::starting();
        assert_eq!(probes.liveness().0, StatusCode::OK);
        let (status, body) = probes.readiness();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("starting"), "{body}");
        probes.wait_for("ClickHouse");
        assert!(probes.readiness().1.contains("ClickHouse"));
        probes.ready();
        assert_eq!(probes.readiness().0, StatusCode::OK);
    }

    #[test]
    fn liveness_fails_only_after_the_bound_without_a_beat() {
        let probes = Probes::starting();
        probes.fail_liveness_after(Duration::from_millis(30));
        assert_eq!(probes.liveness().0, StatusCode::OK);
        std::thread::sleep(Duration::from_millis(60));
        let (status, body) = probes.liveness();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("stalled"), "{body}");
        probes.beat();
        assert_eq!(probes.liveness().0, StatusCode::OK);
    }

    #[test]
    fn without_a_bound_liveness_never_fails() {
        let probes = Probes::starting();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(probes.liveness().0, StatusCode::OK);
    }
}
