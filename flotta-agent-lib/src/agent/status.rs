//! What the agent shows of itself: its timers, [`AgentStatus`], [`AgentEvent`]s, and
//! the state its loops share ([`Shared`]), observed through [`AgentHandle`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use flotta_core::backoff::Backoff;
use flotta_core::enrolment::AgentPhase;
use flotta_core::error_chain::error_chain;
use flotta_core::wire::EventInfo;
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast};

use crate::offline::OfflineQueue;
use crate::os::OsUpdatePhase;
use crate::state::{StateError, StateItem};

/// Timers of the run loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentTiming {
    /// Heartbeat period until the configuration sets one. The agent looks at its
    /// report every period and sends it when it changed, or when the
    /// configuration's `max_silence_seconds` passed since the last one (every
    /// period when the configuration names no silence, as for older servers).
    pub heartbeat_period: Duration,
    /// The longest one configuration long-poll waits on the server: the wait is
    /// the configuration's `long_poll_seconds` (60 s until a configuration names
    /// one), at most this.
    pub config_wait: Duration,
    /// Delays after failed heartbeats, polls and renewals (doubled per failure,
    /// jittered, capped).
    pub retry: Backoff,
    /// How long one request may take (a long-poll: this plus its wait) before it
    /// counts as failed, e.g. against a server that accepts connections but does
    /// not answer.
    pub request_timeout: Duration,
    /// Time between two passes of the data upload (`data.egress` to S3).
    pub data_sync_period: Duration,
}

impl Default for AgentTiming {
    fn default() -> Self {
        Self {
            heartbeat_period: Duration::from_secs(60),
            config_wait: Duration::from_secs(300),
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            request_timeout: flotta_client::DEFAULT_TIMEOUT,
            data_sync_period: Duration::from_secs(15),
        }
    }
}

impl AgentTiming {
    /// These timers with another default heartbeat period.
    pub fn with_heartbeat_period(mut self, period: Duration) -> Self {
        self.heartbeat_period = period;
        self
    }

    /// These timers with another long-poll wait.
    pub fn with_config_wait(mut self, wait: Duration) -> Self {
        self.config_wait = wait;
        self
    }

    /// These timers with another period of the data upload.
    pub fn with_data_sync_period(mut self, period: Duration) -> Self {
        self.data_sync_period = period;
        self
    }

    /// These timers with another request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// These timers with another retry backoff: `initial` doubling up to `max`.
    pub fn with_retry(mut self, initial: Duration, max: Duration) -> Self {
        self.retry = Backoff::new(initial, max);
        self
    }
}

/// The outcome of the last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeartbeatResult {
    /// The server accepted it.
    Delivered {
        /// When.
        at: OffsetDateTime,
    },
    /// It could not be delivered.
    Failed {
        /// When.
        at: OffsetDateTime,
        /// Why.
        reason: String,
        /// Failures in a row, this one included.
        consecutive_failures: u32,
    },
}

/// A snapshot of the agent's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AgentStatus {
    /// Enrolment phase; `None` before [`Agent::run`](super::Agent::run) reads the persisted state.
    pub phase: Option<AgentPhase>,
    /// Version of the configuration the device runs.
    pub config_version: Option<String>,
    /// A version whose apply failed and that is not tried again.
    pub failed_version: Option<String>,
    /// The last heartbeat's outcome.
    pub last_heartbeat: Option<HeartbeatResult>,
    /// Events waiting for the next delivered heartbeat.
    pub queued_events: usize,
    /// Events dropped (oldest first) because the queue was full, since the start.
    pub dropped_events: u64,
    /// When the device certificate in use expires.
    pub certificate_expires: Option<OffsetDateTime>,
    /// When the agent renews it (two thirds of its lifetime by default).
    pub certificate_renew_at: Option<OffsetDateTime>,
    /// The last failure to persist state, if the last attempt failed (a full disk,
    /// for instance); the agent keeps what it had and tries again.
    pub state_error: Option<String>,
    /// The server disconnected the device (it was deleted): workloads and state are
    /// removed and [`Agent::run`](super::Agent::run) returned.
    pub disconnected: bool,
    /// The OS update under way, or the last one.
    pub os_update: Option<OsUpdateStatus>,
    /// Why the last prefetch of a new version failed, while it is retried; the
    /// device runs the previous version meanwhile.
    pub prefetch_error: Option<String>,
    /// Set while a new version waits for its download or update window
    /// (`updatePolicy`): "version V: waiting for the update window (...)".
    pub waiting_for_window: Option<String>,
    /// What the agent counted since it started (also pushed as `flotta_agent_*`
    /// metrics).
    pub counters: AgentCounters,
    /// The metrics subsystem, while the configuration has a `metrics` section.
    pub metrics: Option<MetricsStatus>,
    /// Log forwarding, while a workload's logs are forwarded (`logCollection`).
    pub logs: Option<LogsStatus>,
    /// The data upload, while a workload has `data.egress` paths.
    pub data: Option<DataStatus>,
}

/// Counts since the agent started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AgentCounters {
    /// Heartbeats the server accepted.
    pub heartbeats_sent: u64,
    /// Heartbeats that could not be delivered.
    pub heartbeats_failed: u64,
    /// Configurations applied completely.
    pub applies_succeeded: u64,
    /// Configurations refused, undecodable or rolled back.
    pub applies_failed: u64,
    /// Collections of the system and agent metrics.
    pub metrics_collections: u64,
    /// Samples the metrics receiver acknowledged.
    pub metrics_pushed_samples: u64,
    /// Samples the metrics receiver refused for good (a 4xx other than 429).
    pub metrics_rejected_samples: u64,
}

/// Where metrics collection and pushing stand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MetricsStatus {
    /// The remote-write endpoint, if the configuration names one.
    pub receiver: Option<String>,
    /// Samples in the on-disk buffer, not yet acknowledged.
    pub buffered_samples: u64,
    /// Samples dropped unsent (buffer full or past the age bound, oldest first),
    /// since the buffer was created.
    pub dropped_samples: u64,
    /// Pushes failed in a row (receiver unreachable, 429, 5xx); retried with backoff.
    pub consecutive_push_failures: u32,
    /// The last failure of a push or of the settings, until a push succeeds.
    pub last_error: Option<String>,
    /// Why the last append to the buffer failed (a full disk), until one succeeds.
    pub buffer_error: Option<String>,
    /// When the receiver last acknowledged a batch.
    pub last_push: Option<OffsetDateTime>,
}

/// Where log forwarding stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogsStatus {
    /// Lines sent to syslog servers since the agent started.
    pub forwarded_lines: u64,
    /// Bytes of log skipped unsent because a backlog exceeded its buffer size.
    pub skipped_bytes: u64,
    /// The last failure to send, until a send succeeds.
    pub last_error: Option<String>,
}

/// Where the data upload stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DataStatus {
    /// Objects uploaded since the agent started.
    pub uploaded_files: u64,
    /// Parts of multipart uploads sent since the agent started.
    pub uploaded_parts: u64,
    /// Bytes sent since the agent started.
    pub uploaded_bytes: u64,
    /// The last failure, until a pass succeeds.
    pub last_error: Option<String>,
}

/// Where an OS update stands ([`AgentStatus::os_update`], [`AgentEvent::OsUpdate`],
/// and the heartbeat's `upgrade` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUpdateStatus {
    /// The step reached.
    pub phase: OsUpdatePhase,
    /// The commit or image updated to.
    pub target: String,
    /// Why it failed (with the failing check's output), or what it waits for.
    pub message: Option<String>,
}

/// Something the agent did, broadcast to [`AgentHandle::subscribe`]rs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// The enrolment phase changed.
    PhaseChanged(AgentPhase),
    /// The device got a new certificate and persisted it with its key.
    Registered,
    /// The agent started with a persisted certificate, without enrolling again.
    Resumed,
    /// A configuration was applied completely.
    ConfigApplied {
        /// Its version.
        version: String,
    },
    /// A configuration could not be applied (or decoded); it is not tried again.
    ApplyFailed {
        /// Its version.
        version: String,
        /// Why.
        reason: String,
    },
    /// After a failed apply, the device went back to the last good configuration.
    RolledBack {
        /// The version that failed.
        failed_version: String,
        /// The version now in force (empty: no configuration was ever good).
        to_version: String,
        /// Whether every rollback step succeeded.
        complete: bool,
    },
    /// A heartbeat was delivered.
    HeartbeatDelivered,
    /// A heartbeat could not be delivered.
    HeartbeatFailed {
        /// Why.
        reason: String,
    },
    /// The first heartbeat after an outage delivered what was queued meanwhile.
    QueueDelivered {
        /// Events delivered.
        events: usize,
        /// Events dropped (oldest first) because the queue was full; the heartbeat
        /// also carried an `EventsDropped` event with this count.
        dropped: u64,
    },
    /// The device certificate was renewed with the device certificate itself (not a
    /// new enrolment); the new key and certificate are persisted.
    CertificateRenewed {
        /// Whether the old certificate had expired (re-registration after an
        /// outage longer than its lifetime).
        expired: bool,
        /// When the new certificate expires.
        not_after: OffsetDateTime,
    },
    /// The queue of undelivered events was saved in the state directory
    /// ([`StateItem::EventQueue`]); a restart resumes with these events.
    EventQueuePersisted {
        /// Events saved (those being delivered included).
        events: usize,
    },
    /// State could not be persisted; the agent kept what it had and retries.
    StateWriteFailed {
        /// The item.
        item: StateItem,
        /// Why, with the operating system's error (e.g. no space left on device).
        reason: String,
    },
    /// An OS update reached a new step.
    OsUpdate(OsUpdateStatus),
    /// A new version waits for its download or update window.
    WaitingForWindow {
        /// The version.
        version: String,
        /// What it waits for, and when the window opens.
        message: String,
    },
    /// What a new version needs could not be downloaded; the running version is
    /// untouched and the prefetch is retried with backoff.
    PrefetchFailed {
        /// The version.
        version: String,
        /// Why (the image and the registry's answer, the disk space).
        reason: String,
    },
    /// The metrics receiver acknowledged a batch of samples.
    MetricsPushed {
        /// Samples in the batch.
        samples: u64,
    },
    /// A metrics push failed in a way worth retrying (unreachable, 429, 5xx); the
    /// samples stay buffered and the push is retried with backoff.
    MetricsPushFailed {
        /// Why.
        reason: String,
        /// Failures in a row, this one included.
        consecutive_failures: u32,
    },
    /// The metrics receiver refused a batch for good (a 4xx other than 429): its
    /// samples are dropped so later ones are not blocked.
    MetricsRejected {
        /// The HTTP status (0 when the receiver's settings are unusable).
        status: u16,
        /// Samples dropped.
        samples: u64,
        /// The receiver's answer.
        reason: String,
    },
    /// The metrics buffer was full (or samples outlived `retention.max_hours`): the
    /// oldest unsent samples were dropped.
    MetricsDropped {
        /// Samples dropped now.
        samples: u64,
    },
    /// The server disconnected the device (it was deleted): its workloads and the
    /// agent's state were removed and the agent stopped.
    Disconnected {
        /// Workloads removed.
        removed_workloads: Vec<String>,
        /// Whether every workload and state item could be removed.
        complete: bool,
    },
}

pub(crate) struct Shared {
    pub(crate) status: Mutex<AgentStatus>,
    pub(crate) events: broadcast::Sender<AgentEvent>,
    /// Events for the next heartbeat.
    pub(crate) pending: Mutex<OfflineQueue>,
    /// Wakes the loop that persists [`Shared::pending`] after it changed.
    pub(crate) queue_changed: Notify,
    pub(crate) heartbeat_period: Mutex<Duration>,
    /// The long-poll wait and the longest heartbeat silence the configuration
    /// names (`None`: not named).
    pub(crate) long_poll: Mutex<Option<Duration>>,
    pub(crate) max_silence: Mutex<Option<Duration>>,
    /// The last configuration poll failed: the long-poll no longer shows the
    /// device alive, so heartbeats go out every period (backing off) until one
    /// succeeds again.
    pub(crate) poll_failing: AtomicBool,
    /// Send the next heartbeat even if the report is unchanged (the configuration
    /// poll works again after failing, or the server asked for a report).
    pub(crate) report_now: AtomicBool,
    /// Whether heartbeats carry the hardware inventory.
    pub(crate) heartbeat_hardware: Mutex<bool>,
    /// Wakes the heartbeat loop early (after a configuration change).
    pub(crate) heartbeat_now: Notify,
    /// Playbook execution states for the next heartbeats.
    pub(crate) playbooks: Mutex<std::collections::BTreeMap<String, super::ansible::PlaybookReport>>,
    /// The configuration version named in the next poll.
    pub(crate) poll_version: Mutex<Option<String>>,
    /// A call was refused with 401: renew the certificate.
    pub(crate) renewal_requested: AtomicBool,
    /// Wakes the renewal loop.
    pub(crate) renew_now: Notify,
    /// Wakes the control loop (a call was answered 401 or 404: maybe deleted).
    pub(crate) control_check: Notify,
    /// Outcome and time (RFC 3339) of the last OS upgrade, for heartbeats.
    pub(crate) last_upgrade: Mutex<Option<(bool, String)>>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a plain assignment: the value is whole even after a
    // panic elsewhere.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn emit(&self, event: AgentEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    pub(crate) fn report(&self, reason: &str, message: String, warning: bool) {
        let mut pending = lock(&self.pending);
        pending.push(EventInfo {
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some(if warning { "warn" } else { "info" }.to_owned()),
            ..Default::default()
        });
        self.count_queue(&pending);
        self.queue_changed.notify_one();
    }

    pub(crate) fn count_queue(&self, queue: &OfflineQueue) {
        let (queued, dropped) = (queue.len(), queue.dropped_total());
        self.update(|s| {
            s.queued_events = queued;
            s.dropped_events = dropped;
        });
    }

    /// Has the identity loop renew the certificate now.
    pub(crate) fn request_renewal(&self) {
        self.renewal_requested.store(true, Ordering::SeqCst);
        self.renew_now.notify_one();
    }

    /// A call was answered `status`: 401 asks for a renewal, and both 401 and 404
    /// ask whether the server disconnected the device.
    pub(crate) fn refused(&self, status: Option<u16>) {
        match status {
            Some(401) => {
                self.request_renewal();
                self.control_check.notify_one();
            }
            Some(404) => self.control_check.notify_one(),
            _ => {}
        }
    }

    pub(crate) fn state_write_failed(&self, item: StateItem, error: &StateError) {
        let reason = error_chain(error);
        tracing::error!(%item, %reason, "could not persist agent state");
        self.report(
            "StateWriteFailed",
            format!("could not persist {item}: {reason}"),
            true,
        );
        self.update(|s| s.state_error = Some(format!("{item}: {reason}")));
        self.emit(AgentEvent::StateWriteFailed { item, reason });
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut AgentStatus)) {
        change(&mut lock(&self.status));
    }
}

/// Observes a running [`Agent`](super::Agent): its status and its events. Cheap to clone.
#[derive(Clone)]
pub struct AgentHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("status", &self.status())
            .finish()
    }
}

impl AgentHandle {
    /// The agent's state now.
    pub fn status(&self) -> AgentStatus {
        lock(&self.shared.status).clone()
    }

    /// Events from now on. A receiver that falls behind by more than 256 events
    /// loses the oldest ones.
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.shared.events.subscribe()
    }

    /// Queues an event for the server (sent with the next heartbeat, kept in the
    /// bounded offline queue while the server is unreachable): for runtimes and
    /// firmware that have something to tell the fleet operator. `warning` marks it
    /// as type `warn` rather than `info`.
    pub fn report_event(&self, reason: &str, message: impl Into<String>, warning: bool) {
        self.shared.report(reason, message.into(), warning);
    }
}
