//! Retry with jittered exponential backoff, for idempotent requests.

use std::future::Future;
use std::time::Duration;

use crate::error::ClientResult;

/// How often and how patiently idempotent requests (GET, PUT, DELETE) are retried
/// when they fail with a [retryable](crate::ClientError::is_retryable) error.
///
/// The wait before attempt `n + 1` is drawn uniformly from `[0, min(max_backoff,
/// initial_backoff * 2^n)]` ("full jitter"), so that many clients failing together do
/// not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Upper bound of the first wait.
    pub initial_backoff: Duration,
    /// Cap of every wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
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

    /// The longest wait before attempt `retry + 2` (the cap of the jitter range).
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// A random wait in `[0, backoff_cap(retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.backoff_cap(retry);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        // getrandom failing leaves the full cap: slower, never wrong.
        let draw = getrandom::u64().unwrap_or(u64::MAX);
        Duration::from_nanos(draw % nanos.saturating_add(1))
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
                    tokio::time::sleep(self.backoff(retry)).await;
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
    fn backoff_doubles_up_to_the_cap_and_stays_within_it() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(policy.backoff_cap(0), Duration::from_millis(100));
        assert_eq!(policy.backoff_cap(1), Duration::from_millis(200));
        assert_eq!(policy.backoff_cap(3), Duration::from_millis(800));
        assert_eq!(policy.backoff_cap(4), Duration::from_secs(1));
        assert_eq!(policy.backoff_cap(100), Duration::from_secs(1));
        let draws: Vec<Duration> = (0..50).map(|_| policy.backoff(2)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        // Jitter: fifty draws from a 400 ms range are not all the same.
        assert!(draws.iter().any(|d| *d != draws[0]));
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
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
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
