//! The light devices of the `rollout` scenario and what they saw.
//!
//! A device long-polls its configuration over its one connection. Given a workload
//! definition it does not run yet, it "applies" it at once and, as the agent does
//! after an apply, sends a heartbeat straight away reporting the workload
//! `Running` at the revision the agent would report: the fingerprint of the wire
//! workload it was given ([`flotta_core::reconcile::fingerprint`], the function the
//! agent records). Otherwise it heartbeats every period the configuration sets.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use flotta_client::ConfigPoll;
use flotta_core::reconcile::{DEFAULT_HEARTBEAT_PERIOD_SECONDS, WorkloadPhase, fingerprint};
use flotta_core::wire::{DeviceConfigurationMessage, Heartbeat, WorkloadStatus};

use crate::fleet::{LightDevice, backoff, random_offset};

/// When each device first received, reported and had acknowledged the revision
/// being tracked, as nanoseconds after the tracker's base plus one (0: not yet).
#[derive(Debug)]
pub struct Tracker {
    base: Instant,
    workload: String,
    target: RwLock<String>,
    received: Vec<AtomicU64>,
    reported: Vec<AtomicU64>,
    acknowledged: Vec<AtomicU64>,
    /// Devices that received the tracked revision.
    pub received_count: AtomicUsize,
    /// Devices whose heartbeat reporting it was acknowledged.
    pub acknowledged_count: AtomicUsize,
    /// Devices that delivered a first heartbeat.
    pub ready: AtomicUsize,
    /// Failed requests.
    pub errors: AtomicU64,
}

/// One device's times for the tracked revision, after the tracker's base.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceTimes {
    /// Its configuration carried the revision.
    pub received: Option<Duration>,
    /// It sent the heartbeat that first reported running it.
    pub reported: Option<Duration>,
    /// The server acknowledged that heartbeat.
    pub acknowledged: Option<Duration>,
}

fn slots(count: usize) -> Vec<AtomicU64> {
    (0..count).map(|_| AtomicU64::new(0)).collect()
}

fn read(slot: &AtomicU64) -> Option<Duration> {
    match slot.load(Ordering::Acquire) {
        0 => None,
        nanos => Some(Duration::from_nanos(nanos - 1)),
    }
}

impl Tracker {
    /// A tracker for `devices` devices running workload `workload`, tracking nothing.
    pub fn new(base: Instant, workload: &str, devices: usize) -> Self {
        Self {
            base,
            workload: workload.to_owned(),
            target: RwLock::new(String::new()),
            received: slots(devices),
            reported: slots(devices),
            acknowledged: slots(devices),
            received_count: AtomicUsize::new(0),
            acknowledged_count: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// The time since the base.
    pub fn now(&self) -> Duration {
        self.base.elapsed()
    }

    /// Forgets the times recorded and tracks `revision` from now on.
    pub fn track(&self, revision: &str) {
        let mut target = self
            .target
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for slot in self
            .received
            .iter()
            .chain(&self.reported)
            .chain(&self.acknowledged)
        {
            slot.store(0, Ordering::Release);
        }
        self.received_count.store(0, Ordering::Release);
        self.acknowledged_count.store(0, Ordering::Release);
        revision.clone_into(&mut target);
    }

    fn is_target(&self, revision: &str) -> bool {
        let target = self
            .target
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !target.is_empty() && *target == revision
    }

    /// Records `at` in `slot` unless a time is there; whether it was the first.
    fn stamp(slot: Option<&AtomicU64>, at: Duration) -> bool {
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        slot.is_some_and(|slot| {
            slot.compare_exchange(0, nanos, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    fn received(&self, device: usize, revision: &str, at: Duration) {
        if self.is_target(revision) && Self::stamp(self.received.get(device), at) {
            self.received_count.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn reported(&self, device: usize, revision: &str, sent: Duration, acknowledged: Duration) {
        if !self.is_target(revision) {
            return;
        }
        Self::stamp(self.reported.get(device), sent);
        if Self::stamp(self.acknowledged.get(device), acknowledged) {
            self.acknowledged_count.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Device `device`'s times for the tracked revision.
    pub fn times(&self, device: usize) -> DeviceTimes {
        let at = |slots: &[AtomicU64]| slots.get(device).and_then(read);
        DeviceTimes {
            received: at(&self.received),
            reported: at(&self.reported),
            acknowledged: at(&self.acknowledged),
        }
    }
}

/// What a configuration tells the device: the revision of the tracked workload
/// it carries (`None` without it) and the heartbeat period.
fn read_config(message: &flotta_core::wire::Message, workload: &str) -> (Option<String>, Duration) {
    let config: Option<DeviceConfigurationMessage> = message.content_as().ok();
    let revision = config
        .as_ref()
        .and_then(|c| c.workloads.as_ref())
        .and_then(|w| w.iter().find(|w| w.name.as_deref() == Some(workload)))
        .map(|w| fingerprint(w).to_string());
    let period = config
        .as_ref()
        .and_then(|c| c.configuration.as_ref())
        .and_then(|c| c.heartbeat.as_ref())
        .and_then(|h| h.period_seconds)
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_HEARTBEAT_PERIOD_SECONDS);
    (revision, Duration::from_secs(period.unsigned_abs()))
}

fn heartbeat(version: &str, workload: &str, revision: Option<&str>) -> Heartbeat {
    Heartbeat {
        status: Some("up".to_owned()),
        version: Some(version.to_owned()),
        workloads: Some(
            revision
                .map(|revision| WorkloadStatus {
                    name: Some(workload.to_owned()),
                    status: Some(WorkloadPhase::Running.as_str().to_owned()),
                    revision: Some(revision.to_owned()),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    }
}

/// Runs device number `index` until aborted: long-polls (at most `wait`), applies,
/// heartbeats.
pub async fn run(index: usize, device: Arc<LightDevice>, tracker: Arc<Tracker>, wait: Duration) {
    let workload = tracker.workload.clone();
    let mut version = String::new();
    let mut running: Option<String> = None;
    let mut period = Duration::from_secs(DEFAULT_HEARTBEAT_PERIOD_SECONDS.unsigned_abs());
    // The first heartbeat goes at once (a device starting up).
    let mut heartbeat_due = Instant::now();
    let mut first = true;
    let mut failures = 0u32;
    loop {
        if Instant::now() >= heartbeat_due {
            let sent = tracker.now();
            let content = heartbeat(&version, &workload, running.as_deref());
            match device.client.heartbeat(&device.device_id, &content).await {
                Ok(()) => {
                    failures = 0;
                    if let Some(revision) = &running {
                        tracker.reported(index, revision, sent, tracker.now());
                    }
                    if first {
                        first = false;
                        tracker.ready.fetch_add(1, Ordering::AcqRel);
                    }
                    // Jittered as the agent's period is: between 90 % and 100 %.
                    heartbeat_due = Instant::now() + period - random_offset(period / 10);
                }
                Err(_) => {
                    failures += 1;
                    tracker.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            }
        }
        let until_heartbeat = heartbeat_due.saturating_duration_since(Instant::now());
        let poll_wait = wait.min(until_heartbeat).max(Duration::from_secs(1));
        let known = (!version.is_empty()).then_some(version.as_str());
        match device
            .client
            .get_config(&device.device_id, known, Some(poll_wait))
            .await
        {
            Ok(ConfigPoll::Config { etag, message }) => {
                failures = 0;
                version = etag;
                let (revision, new_period) = read_config(&message, &workload);
                period = new_period;
                if revision != running {
                    if let Some(revision) = &revision {
                        tracker.received(index, revision, tracker.now());
                    }
                    running = revision;
                    // The agent reports a finished apply at once.
                    heartbeat_due = Instant::now();
                }
            }
            Ok(ConfigPoll::NotModified) => failures = 0,
            Err(_) => {
                failures += 1;
                tracker.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tracked_revision_is_stamped_and_only_once() {
        let tracker = Tracker::new(Instant::now(), "app", 3);
        tracker.received(0, "r1", Duration::from_millis(5));
        assert_eq!(
            tracker.times(0),
            DeviceTimes::default(),
            "nothing tracked yet"
        );
        tracker.track("r1");
        tracker.received(0, "r1", Duration::from_millis(5));
        tracker.received(0, "r1", Duration::from_millis(9));
        tracker.received(1, "r0", Duration::from_millis(6));
        tracker.reported(0, "r1", Duration::from_millis(7), Duration::from_millis(8));
        assert_eq!(
            tracker.times(0),
            DeviceTimes {
                received: Some(Duration::from_millis(5)),
                reported: Some(Duration::from_millis(7)),
                acknowledged: Some(Duration::from_millis(8)),
            }
        );
        assert_eq!(tracker.times(1), DeviceTimes::default());
        assert_eq!(tracker.received_count.load(Ordering::Relaxed), 1);
        assert_eq!(tracker.acknowledged_count.load(Ordering::Relaxed), 1);
        // A time of zero is a time, not "never".
        tracker.received(2, "r1", Duration::ZERO);
        assert_eq!(tracker.times(2).received, Some(Duration::ZERO));
        tracker.track("r2");
        assert_eq!(tracker.times(0), DeviceTimes::default());
        assert_eq!(tracker.received_count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn heartbeats_report_the_workload_running_at_its_revision() {
        let beat = heartbeat("v9", "app", Some("abc"));
        let workloads = beat.workloads.expect("workloads");
        assert_eq!(workloads.len(), 1);
        assert_eq!(workloads[0].status.as_deref(), Some("Running"));
        assert_eq!(workloads[0].revision.as_deref(), Some("abc"));
        assert_eq!(heartbeat("v9", "app", None).workloads, Some(Vec::new()));
    }
}
