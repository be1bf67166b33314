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

/// Runs `write` (a read-modify-write of one object) until it does not fail with a
/// conflict, at most ten times, and returns what it returned; panics naming `what`
/// on any other error. The server's own status writes move an object's resource
/// version, so a client that read it a moment ago retries, as Kubernetes clients do.
pub async fn retry_on_conflict<T, F, Fut>(what: &str, mut write: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = flotta_client::ClientResult<T>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Ok(value) => return value,
            Err(error) if error.is_conflict() && attempt < 10 => attempt += 1,
            Err(error) => panic!("{what}: {error}"),
        }
    }
}
