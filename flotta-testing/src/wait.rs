//! Waiting for a condition the code under test offers no signal for.

use std::future::Future;
use std::time::Duration;

/// How long a test waits for something that should happen before it gives up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(20);

/// Calls `check` until it returns `Some`, for up to [`PATIENCE`], and returns the
/// value; panics naming `what` otherwise.
///
/// Only for conditions without a signal (a row written by a background task, a
/// process's output). Where the code exposes one (`EdgeState::waiting_devices`, a
/// watch stream, agent events) wait on that instead.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, PATIENCE, check).await
}

/// [`eventually`] with a patience of `within` (a child process, say, needs longer).
pub async fn eventually_within<T, F, Fut>(what: &str, within: Duration, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
