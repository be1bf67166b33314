//! Exponential backoff with jitter, capped: the one retry schedule of the workspace,
//! used by the agent's enrolment and offline loops and by the client's retry policy.

use std::time::Duration;

/// Exponential backoff with jitter, capped.
///
/// The wait before retry number `attempt` (0 for the first retry) is
/// `initial · 2^attempt`, capped at `max`, then jittered into its upper half, so a
/// fleet failing together does not come back together and never retries at once.
///
/// ```
/// use std::time::Duration;
/// use flotta_core::backoff::Backoff;
///
/// let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// assert_eq!(backoff.cap(3), Duration::from_secs(8));
/// assert_eq!(backoff.delay(3, u32::MAX), Duration::from_secs(8));
/// assert_eq!(backoff.delay(3, 0), Duration::from_secs(4));
/// assert_eq!(backoff.delay(30, u32::MAX), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// Delay before the first retry, before jitter.
    pub initial: Duration,
    /// Largest delay, before jitter.
    pub max: Duration,
}

impl Default for Backoff {
    /// One second, doubling up to five minutes.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

impl Backoff {
    /// A backoff starting at `initial` and doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The longest wait before retry number `attempt`: `initial · 2^attempt`, at most
    /// `max` (and never less than `initial`).
    pub fn cap(&self, attempt: u32) -> Duration {
        let max = self.max.max(self.initial);
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(max)
    }

    /// The wait before retry number `attempt` (0 for the first retry): [`cap`]
    /// jittered uniformly into `[cap / 2, cap]` by `random` (uniform over `u32`).
    ///
    /// [`cap`]: Self::cap
    pub fn delay(&self, attempt: u32, random: u32) -> Duration {
        let cap = self.cap(attempt);
        let half = cap / 2;
        let spread = u128::from(random) * (cap - half).as_nanos() / u128::from(u32::MAX);
        half + Duration::from_nanos(u64::try_from(spread).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_cap_and_jitter_into_the_upper_half() {
        let b = Backoff::new(SECOND, 60 * SECOND);
        // (attempt, random, delay)
        let table = [
            (0, u32::MAX, SECOND),
            (0, 0, SECOND / 2),
            (1, u32::MAX, 2 * SECOND),
            (3, u32::MAX, 8 * SECOND),
            (3, 0, 4 * SECOND),
            (6, u32::MAX, 60 * SECOND),
            (10, u32::MAX, 60 * SECOND),
            (10, 0, 30 * SECOND),
            (u32::MAX, u32::MAX, 60 * SECOND),
        ];
        for (attempt, random, delay) in table {
            assert_eq!(
                b.delay(attempt, random),
                delay,
                "attempt {attempt}, random {random}"
            );
        }
        let mid = b.delay(3, u32::MAX / 2);
        assert!(mid > 5 * SECOND && mid < 7 * SECOND, "{mid:?}");
    }

    #[test]
    fn degenerate_settings_stay_in_range() {
        // A cap below the first delay: the first delay wins.
        let b = Backoff::new(10 * SECOND, SECOND);
        assert_eq!(b.cap(0), 10 * SECOND);
        assert_eq!(b.cap(5), 10 * SECOND);
        // Zero: retry at once, never panic.
        let zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.delay(7, u32::MAX), Duration::ZERO);
        // Huge values saturate instead of overflowing.
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.cap(40), Duration::MAX);
        assert!(huge.delay(40, u32::MAX) <= Duration::MAX);
    }
}
