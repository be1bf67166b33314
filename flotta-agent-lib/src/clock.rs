//! Time as the agent sees it: the [`Clock`] trait, the real [`SystemClock`] and the
//! [`ManualClock`] of tests, whose time moves only when told.
//!
//! The agent reads the time and waits only through its clock, so renewal and
//! backoff are tested in milliseconds: a test reads when the agent is waiting until
//! ([`ManualClock::deadlines`]) and moves time there ([`ManualClock::advance_to`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Where the agent reads the time and waits.
#[async_trait]
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The time now.
    fn now(&self) -> OffsetDateTime;

    /// Waits until the clock reaches `deadline` (at once if it has).
    async fn sleep_until(&self, deadline: OffsetDateTime);

    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration) {
        let step = time::Duration::try_from(duration).unwrap_or(time::Duration::MAX);
        self.sleep_until(self.now().saturating_add(step)).await;
    }
}

/// The operating system's clock and tokio's timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    async fn sleep_until(&self, deadline: OffsetDateTime) {
        let wait = Duration::try_from(deadline - self.now()).unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    async fn sleep(&self, duration: Duration) {
        // A monotonic timer: a wall clock stepped meanwhile does not stretch it.
        tokio::time::sleep(duration).await;
    }
}

#[derive(Debug, Clone)]
struct ManualState {
    now: OffsetDateTime,
    /// Deadlines of the sleeps in progress, by sleep.
    sleepers: BTreeMap<u64, OffsetDateTime>,
}

/// A clock for tests: it stands still until [`advance`](Self::advance)d, and shows
/// who waits until when ([`deadlines`](Self::deadlines)).
#[derive(Debug)]
pub struct ManualClock {
    state: watch::Sender<ManualState>,
    next_id: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            state: watch::Sender::new(ManualState {
                now,
                sleepers: BTreeMap::new(),
            }),
            next_id: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `duration`, waking the sleeps that are due.
    pub fn advance(&self, duration: Duration) {
        let step = time::Duration::try_from(duration).unwrap_or(time::Duration::MAX);
        self.state
            .send_modify(|s| s.now = s.now.saturating_add(step));
    }

    /// Moves the clock to `at` if that is later, waking the sleeps that are due.
    pub fn advance_to(&self, at: OffsetDateTime) {
        self.state.send_modify(|s| s.now = s.now.max(at));
    }

    /// The deadlines of the sleeps in progress, earliest first.
    pub fn deadlines(&self) -> Vec<OffsetDateTime> {
        let mut deadlines: Vec<_> = self.state.borrow().sleepers.values().copied().collect();
        deadlines.sort();
        deadlines
    }

    /// Waits (in real time) until some sleep in progress has a deadline for which
    /// `wanted` holds, and returns that deadline: the signal a test waits for before
    /// moving time on.
    pub async fn sleeping_until(&self, wanted: impl Fn(OffsetDateTime) -> bool) -> OffsetDateTime {
        let mut receiver = self.state.subscribe();
        let mut found = None;
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver
            .wait_for(|s| {
                found = s.sleepers.values().copied().filter(|d| wanted(*d)).min();
                found.is_some()
            })
            .await;
        found.unwrap_or_else(|| self.now())
    }
}

/// Takes a sleep off the list when it ends or is dropped (a `select!` lost).
struct Sleeper<'a> {
    clock: &'a ManualClock,
    id: u64,
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        self.clock.state.send_modify(|s| {
            s.sleepers.remove(&self.id);
        });
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.state.borrow().now
    }

    async fn sleep_until(&self, deadline: OffsetDateTime) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut receiver = self.state.subscribe();
        self.state.send_modify(|s| {
            s.sleepers.insert(id, deadline);
        });
        let _sleeper = Sleeper { clock: self, id };
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver.wait_for(|s| s.now >= deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    #[tokio::test]
    async fn a_manual_sleep_ends_only_when_time_reaches_its_deadline() {
        let clock = Arc::new(ManualClock::new(T0));
        let sleeping = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(Duration::from_secs(60)).await })
        };
        let deadline = clock.sleeping_until(|_| true).await;
        assert_eq!(deadline, T0 + time::Duration::minutes(1));
        clock.advance(Duration::from_secs(59));
        assert_eq!(clock.deadlines(), vec![deadline]);
        assert!(!sleeping.is_finished());
        clock.advance(Duration::from_secs(1));
        sleeping.await.expect("sleep ends");
        assert!(clock.deadlines().is_empty());
        assert_eq!(clock.now(), deadline);
    }

    #[tokio::test]
    async fn a_dropped_sleep_is_no_longer_listed() {
        let clock = ManualClock::new(T0);
        tokio::select! {
            () = clock.sleep(Duration::from_secs(5)) => panic!("time stands still"),
            () = tokio::task::yield_now() => {}
        }
        assert!(clock.deadlines().is_empty());
        // A deadline in the past does not wait.
        clock.sleep_until(T0 - time::Duration::SECOND).await;
    }
}
