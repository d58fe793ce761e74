//! The HTTP server the binary runs, shared by the Prometheus endpoint of `run` and the pages
//! and API of `serve` (and, next, the ingest gateway): routing on axum, served by hyper with
//! the limits a server on a network needs.
//!
//! - a method a route does not take answers 405 with `Allow` (axum's method routing);
//! - a body over [`MAX_BODY_BYTES`] answers 413, before the handler runs;
//! - a client that does not finish its request headers within [`HEADER_READ_TIMEOUT`] is
//!   dropped (a slow-loris connection cannot hold a task forever);
//! - on shutdown the listener closes and requests in flight finish, for at most
//!   [`SHUTDOWN_GRACE`].

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// `[serve]`: where `salestalk serve` listens (dashboards and active alerts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// Where it listens, e.g. `127.0.0.1:8080`.
    listen: String,
    /// How long a verified reader or admin key is trusted before ClickHouse is asked again,
    /// ms (a revocation takes at most this long to reach a running `serve`).
    pub key_cache_ms: u64,
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

impl ServeSettings {
    /// The address (checked at start-up; an unparsable one is reported there).
    pub fn listen(&self) -> std::io::Result<SocketAddr> {
        listen_address(&self.listen)
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.listen().is_err() {
            out.push(format!(
                "serve.listen: '{}' is not an address like 127.0.0.1:8080",
                self.listen
            ));
        }
        if self.key_cache_ms > 300_000 {
            out.push(format!(
                "serve.key_cache_ms: {} is over 300000 (a revocation would take that long)",
                self.key_cache_ms
            ));
        }
        out
    }
}

/// Largest request body any route takes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Longest a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
        .layer(middleware::from_fn(refuse_large_bodies))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::debug!(%error, "accepting a connection");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let service = TowerToHyperService::new(router.clone());
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "http connection");
                }
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
    async fn a_client_that_never_finishes_its_headers_is_dropped() {
        let router = Router::new().route("/x", get(|| async { "x" }));
        let (address, _task) = serve(
            "127.0.0.1:0".parse().expect("address"),
            router,
            std::future::pending(),
        )
        .await
        .expect("bind");
        let ended = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).expect("connect");
            // Three times the timeout: the server must hang up well before the client would.
            stream
                .set_read_timeout(Some(HEADER_READ_TIMEOUT * 3))
                .expect("timeout");
            stream
                .write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n")
                .expect("send");
            let mut rest = Vec::new();
            // Ok: the server closed the connection (perhaps after a 408); Err: it never did.
            stream.read_to_end(&mut rest).map(|_| rest)
        })
        .await
        .expect("client");
        let rest = ended.expect("the server closes a connection whose headers never end");
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
}
