//! Retry with jittered exponential backoff, for idempotent requests.

use std::future::Future;
use std::time::Duration;

pub use flotta_core::backoff::Backoff;

use crate::error::ClientResult;

/// How often and how patiently idempotent requests (GET, PUT, DELETE) are retried
/// when they fail with a [retryable](crate::ClientError::is_retryable) error.
///
/// The waits follow [`Backoff`], the workspace's one retry schedule: retry `n` waits
/// between half and all of `min(max, initial · 2^n)`, so that many clients failing
/// together do not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// The waits between attempts.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// Four attempts, waiting from 200 ms up to 5 s.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0 for the first), jittered.
    pub fn wait(&self, retry: u32) -> Duration {
        // getrandom failing leaves the middle of the range: never wrong.
        self.backoff
            .delay(retry, getrandom::u32().unwrap_or(u32::MAX / 2))
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not retryable,
    /// or `max_attempts` are used up.
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> ClientResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ClientResult<T>>,
    {
        let mut retry = 0;
        loop {
            match attempt().await {
                Err(error) if error.is_retryable() && retry + 1 < self.max_attempts => {
                    tokio::time::sleep(self.wait(retry)).await;
                    retry += 1;
                }
                result => return result,
            }
        }
    }
}

/// Whether a request with this method may be sent twice without harm.
pub(crate) fn is_idempotent(method: &reqwest::Method) -> bool {
    matches!(
        *method,
        reqwest::Method::GET
            | reqwest::Method::PUT
            | reqwest::Method::DELETE
            | reqwest::Method::HEAD
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ClientError;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn waits_follow_the_backoff_and_are_jittered() {
        let policy = RetryPolicy {
            max_attempts: 10,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        };
        let draws: Vec<Duration> = (0..50).map(|_| policy.wait(2)).collect();
        assert!(
            draws
                .iter()
                .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400)),
            "{draws:?}"
        );
        // Jitter: fifty draws from a 200 ms range are not all the same.
        assert!(draws.iter().any(|d| *d != draws[0]));
        assert!(policy.wait(100) <= Duration::from_secs(1));
    }

    fn unavailable() -> ClientError {
        ClientError::Api {
            method: "GET".into(),
            path: "/".into(),
            status: 503,
            reason: "ServiceUnavailable".into(),
            message: String::new(),
        }
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success_and_not_others() {
        let policy = RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
        };
        let calls = AtomicU32::new(0);
        let result = policy
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(unavailable())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let result: ClientResult<()> = policy
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ClientError::invalid_config("no"))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: ClientResult<()> = policy
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(unavailable())
            })
            .await;
        assert_eq!(result.err().and_then(|e| e.status()), Some(503));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }
}
