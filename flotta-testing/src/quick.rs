//! Timers short enough for tests, for agents and clients.

use std::time::Duration;

use flotta_agent_lib::AgentTiming;
use flotta_client::RetryPolicy;
use flotta_core::enrolment::{AgentConfig, Backoff};

/// First wait of every retry.
pub const RETRY_INITIAL: Duration = Duration::from_millis(50);
/// Cap of every retry wait.
pub const RETRY_MAX: Duration = Duration::from_millis(500);
/// How long an agent's configuration long-poll waits.
pub const CONFIG_WAIT: Duration = Duration::from_secs(1);

/// Agent timers: 1 s long-polls, retries from 50 ms up to 500 ms.
pub fn agent_timing() -> AgentTiming {
    AgentTiming::default()
        .with_config_wait(CONFIG_WAIT)
        .with_retry(RETRY_INITIAL, RETRY_MAX)
}

/// The enrolment state machine's settings with retries from 50 ms up to `retry_max`.
pub fn enrolment_config(retry_max: Duration) -> AgentConfig {
    AgentConfig {
        backoff: Backoff::new(RETRY_INITIAL, retry_max),
        ..AgentConfig::default()
    }
}

/// A client retry policy: four attempts, 20 ms up to 200 ms apart.
pub fn retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
    }
}
