//! The HTTP server every process runs, shared by the Prometheus endpoint of `run`, the pages
//! and API of `serve` and the ingest gateway: routing on axum, served by hyper with the limits
//! a server on a network needs.
//!
//! - a method a route does not take answers 405 with `Allow` (axum's method routing);
//! - a body over [`MAX_BODY_BYTES`] answers 413, before the handler runs;
//! - a client that does not finish its request headers within [`HEADER_READ_TIMEOUT`] is
//!   dropped (a slow-loris connection cannot hold a task forever), and one that does not
//!   finish its body within [`BODY_READ_TIMEOUT`] is answered 408;
//! - request headers are bounded: [`MAX_HEADER_BYTES`] in all and [`MAX_HEADERS`] fields,
//!   answered 431 (a 400 KB `Authorization` header never reaches a handler);
//! - at most [`MAX_CONNECTIONS`] connections are open at once: the next waits in the kernel's
//!   backlog until one closes; an accept that fails (`EMFILE`: out of file descriptors)
//!   backs off instead of spinning;
//! - every answer carries the security headers of [`SECURITY_HEADERS`] (no inline script, no
//!   framing, no content sniffing);
//! - on shutdown the listener closes and requests in flight finish, for at most
//!   [`SHUTDOWN_GRACE`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The address of the client that sent a request (its TCP peer), which [`serve`] puts in
/// every request's extensions (failed key checks are counted by it, `access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

/// The start-up problem with listen address `text`, configured as `key`, unless it is one
/// (`example` shows the form).
pub fn listen_problem(key: &str, text: &str, example: &str) -> Option<String> {
    listen_address(text)
        .is_err()
        .then(|| format!("{key}: '{text}' is not an address like {example}"))
}

/// A configured listen address, parsed (checked at start-up; an unparsable one is reported
/// there).
pub fn listen_address(text: &str) -> std::io::Result<SocketAddr> {
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("'{text}' is not an address"),
        )
    })
}

/// Largest request body any route takes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Longest a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a client may take to send its request body, once its headers are read.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request head (request line and every header), bytes: room for a key and a
/// browser's usual headers, far below what would let anonymous requests cost memory.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Most header fields a request may carry.
pub const MAX_HEADERS: usize = 64;

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Longest pause after a failed accept (out of file descriptors, say), doubling from
/// [`ACCEPT_BACKOFF_START`].
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// First pause after a failed accept.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(10);

/// Headers on every answer: the pages load only their own scripts and styles (no inline
/// script, nothing from elsewhere), are never framed, never sniffed, and send no referrer.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// Longest requests in flight may run on after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Binds `listen` and serves `router` until `shutdown` completes; returns the bound address
/// (so port 0 picks a free one) and the task serving it, which ends once the requests in
/// flight are answered.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let router = router
        .layer(middleware::from_fn(read_body_in_time))
        .layer(middleware::from_fn(refuse_large_bodies))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(security_headers));
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut backoff = ACCEPT_BACKOFF_START;
        tokio::pin!(shutdown);
        loop {
            // A connection slot first: at the cap, new clients wait in the kernel's backlog
            // rather than in our memory.
            let slot = tokio::select! {
                slot = open.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        backoff = ACCEPT_BACKOFF_START;
                        accepted
                    }
                    Err(error) => {
                        // EMFILE and friends fail again at once: pause, or the loop spins.
                        tracing::warn!(%error, pause_ms = backoff.as_millis() as u64, "accepting a connection");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = &mut shutdown => break,
                        }
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Each request learns its client's address (failed key checks are counted by it).
            let router = router.clone();
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ClientAddress(peer.ip()));
                let mut router = router.clone();
                async move { tower_service::Service::call(&mut router, request).await }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_header_size(MAX_HEADER_BYTES)
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "http connection");
                }
                drop(slot);
            });
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight after the shutdown grace; dropping them");
        }
    });
    Ok((bound, task))
}

/// Answers 413 to a request that announces a body over the limit, before any handler reads
/// it (handlers that read bodies are bounded by `DefaultBodyLimit` as well).
async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return respond(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes\n"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Reads the request body within [`BODY_READ_TIMEOUT`] (and [`MAX_BODY_BYTES`]) before the
/// handler runs, so a client trickling its body holds a connection for a bounded time.
async fn read_body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => {
            return respond(
                StatusCode::REQUEST_TIMEOUT,
                "text/plain",
                format!(
                    "the request body was not received within {} s\n",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
            .into_response();
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes\n"),
            )
            .into_response();
        }
        Ok(Err(_)) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "the request body could not be read\n",
            )
            .into_response();
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Adds [`SECURITY_HEADERS`] to every answer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            hyper::header::HeaderName::from_static(name),
            hyper::header::HeaderValue::from_static(value),
        );
    }
    response
}

/// A response with `status`, `content_type` and `body`.
pub fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use axum::routing::get;

    use super::*;

    /// Sends `request` as raw bytes and returns the status line and headers of the answer.
    fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        stream.write_all(request).expect("send");
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Serves `router` on a free port for as long as the test runs.
    async fn serve_until_the_test_ends(router: Router) -> SocketAddr {
        let (address, _task) = serve(
            "127.0.0.1:0".parse().expect("address"),
            router,
            std::future::pending(),
        )
        .await
        .expect("bind");
        address
    }

    /// Sends `request` (perhaps unfinished) and reads until the server closes the connection:
    /// what it sent (perhaps an error status), or `Err` if it had not closed after `wait`.
    async fn send_and_wait(
        address: SocketAddr,
        request: &'static [u8],
        wait: Duration,
    ) -> std::io::Result<Vec<u8>> {
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address)?;
            stream.set_read_timeout(Some(wait))?;
            stream.write_all(request)?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).map(|_| answer)
        })
        .await
        .expect("client")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_methods_large_bodies_and_shutdown_are_answered() {
        let router = Router::new().route("/x", get(|| async { "x" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (address, task) = serve("127.0.0.1:0".parse().expect("address"), router, async {
            let _ = stopped.await;
        })
        .await
        .expect("bind");
        let answers = tokio::task::spawn_blocking(move || {
            [
                exchange(address, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
                exchange(address, b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                exchange(address, b"GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n"),
            ]
        })
        .await
        .expect("client");
        assert!(answers[0].starts_with("HTTP/1.1 200"), "{}", answers[0]);
        assert!(answers[1].starts_with("HTTP/1.1 405"), "{}", answers[1]);
        assert!(
            answers[1].to_lowercase().contains("allow: get"),
            "{}",
            answers[1]
        );
        assert!(answers[2].starts_with("HTTP/1.1 413"), "{}", answers[2]);
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops")
            .expect("task");
        assert!(
            std::net::TcpStream::connect(address).is_err(),
            "listener closed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn huge_headers_are_refused_and_every_answer_carries_the_security_headers() {
        let router = Router::new().route("/x", get(|| async { "x" }));
        let address = serve_until_the_test_ends(router).await;
        let answers = tokio::task::spawn_blocking(move || {
            let huge = format!(
                "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer stk_{}\r\nConnection: close\r\n\r\n",
                "a".repeat(400 * 1024)
            );
            let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: y\r\n")).collect();
            let many = format!("GET /x HTTP/1.1\r\nHost: t\r\n{many}Connection: close\r\n\r\n");
            [
                exchange(address, huge.as_bytes()),
                exchange(address, many.as_bytes()),
                exchange(address, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
                exchange(address, b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
            ]
        })
        .await
        .expect("client");
        assert!(answers[0].starts_with("HTTP/1.1 431"), "{}", answers[0]);
        assert!(answers[1].starts_with("HTTP/1.1 431"), "{}", answers[1]);
        for answer in &answers[2..] {
            let lower = answer.to_lowercase();
            for (name, value) in SECURITY_HEADERS {
                assert!(
                    lower.contains(&format!("{name}: {}", value.to_lowercase())),
                    "{name} missing from {answer}"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_trickles_its_body_is_answered_408() {
        let router =
            Router::new().route("/x", axum::routing::post(|body: Bytes| async move { body }));
        let address = serve_until_the_test_ends(router).await;
        let request = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc";
        let answer = send_and_wait(address, request, BODY_READ_TIMEOUT * 3).await;
        let answer = answer.expect("the server answers");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_never_finishes_its_headers_is_dropped() {
        let router = Router::new().route("/x", get(|| async { "x" }));
        let address = serve_until_the_test_ends(router).await;
        // Three times the timeout: the server must hang up well before the client would.
        let ended = send_and_wait(
            address,
            b"GET /x HTTP/1.1\r\nHost: t\r\n",
            HEADER_READ_TIMEOUT * 3,
        )
        .await;
        let rest = ended.expect("the server closes a connection whose headers never end");
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
}
