//! Waiting on services without timed assertions: poll until a condition holds or a generous
//! limit passes, then let the test assert on what was last seen, so a failure shows the value
//! instead of "timed out".

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(200);

/// Polls `probe` every [`POLL`] until `done` holds for its value or `within` has passed;
/// returns the last value either way.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = probe().await;
        if done(&value) || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the process listening on `port` is ready (`/health` answers 200: it binds
/// its listener before it has started), at most a minute. Returns whether it became so.
pub async fn becomes_ready(port: u16) -> bool {
    eventually(
        Duration::from_secs(60),
        || async move { super::http_get(port, "/health").is_some_and(|(status, _)| status == 200) },
        |ready| *ready,
    )
    .await
}
