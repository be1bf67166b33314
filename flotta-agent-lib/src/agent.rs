//! The agent itself: [`AgentBuilder`] → [`Agent`], [`Agent::run`], and the
//! [`AgentHandle`] that observes it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use flotta_client::{
    ConfigPoll, EdgeClient, EnrolmentOutcome, Identity, RegistrationOutcome, RetryPolicy,
};
use flotta_core::enrolment::{
    AgentConfig, AgentPhase, AgentResponse, Backoff, Credential, Directive, EnrolmentError,
    EnrolmentMachine, NextAction,
};
use flotta_core::pki::{DeviceKey, PeerCertificate};
use flotta_core::reconcile::{
    Action, ObservedOs, ObservedState, ObservedWorkload, RenderedConfig, WorkloadPhase, plan,
    rollback_plan,
};
use flotta_core::wire::{
    DeviceConfigurationMessage, EnrolmentInfo, EnrolmentInfoFeatures, EventInfo, Heartbeat,
    Message, RegistrationInfo, UpgradeStatus, WorkloadStatus,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast};

use crate::error::AgentError;
use crate::hardware::{HardwareProbe, ProcHardwareProbe};
use crate::offline::{DEFAULT_OFFLINE_QUEUE_CAPACITY, OfflineQueue};
use crate::os::{NoOsUpdater, OsHealth, OsUpdater};
use crate::runtime::WorkloadRuntime;
use crate::state::{
    FileStateStore, PersistedConfig, PersistedIdentity, StateError, StateItem, StateStore,
    load_config, load_text,
};

/// Timers of the run loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentTiming {
    /// Heartbeat period until the configuration sets one.
    pub heartbeat_period: Duration,
    /// How long one configuration long-poll waits on the server.
    pub config_wait: Duration,
    /// First delay after a failed heartbeat or poll (doubled per failure, jittered).
    pub retry_initial: Duration,
    /// Largest delay after failures.
    pub retry_max: Duration,
    /// How long one request may take (a long-poll: this plus its wait) before it
    /// counts as failed, e.g. against a server that accepts connections but does
    /// not answer.
    pub request_timeout: Duration,
}

impl Default for AgentTiming {
    fn default() -> Self {
        Self {
            heartbeat_period: Duration::from_secs(60),
            config_wait: Duration::from_secs(60),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            request_timeout: flotta_client::DEFAULT_TIMEOUT,
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

    /// These timers with another request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// These timers with another retry backoff.
    pub fn with_retry(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial;
        self.retry_max = max;
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
    /// Enrolment phase; `None` before [`Agent::run`] reads the persisted state.
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
    /// removed and [`Agent::run`] returned.
    pub disconnected: bool,
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
    /// State could not be persisted; the agent kept what it had and retries.
    StateWriteFailed {
        /// The item.
        item: StateItem,
        /// Why, with the operating system's error (e.g. no space left on device).
        reason: String,
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

struct Shared {
    status: Mutex<AgentStatus>,
    events: broadcast::Sender<AgentEvent>,
    /// Events for the next heartbeat.
    pending: Mutex<OfflineQueue>,
    heartbeat_period: Mutex<Duration>,
    /// Whether heartbeats carry the hardware inventory.
    heartbeat_hardware: Mutex<bool>,
    /// Wakes the heartbeat loop early (after a configuration change).
    heartbeat_now: Notify,
    /// The configuration version named in the next poll.
    poll_version: Mutex<Option<String>>,
    /// A call was refused with 401: renew the certificate.
    renewal_requested: AtomicBool,
    /// Wakes the renewal loop.
    renew_now: Notify,
    /// Wakes the control loop (a call was answered 401 or 404: maybe deleted).
    control_check: Notify,
    /// Outcome and time (RFC 3339) of the last OS upgrade, for heartbeats.
    last_upgrade: Mutex<Option<(bool, String)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a plain assignment: the value is whole even after a
    // panic elsewhere.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn emit(&self, event: AgentEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    fn report(&self, reason: &str, message: String, warning: bool) {
        let mut pending = lock(&self.pending);
        pending.push(EventInfo {
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some(if warning { "warn" } else { "info" }.to_owned()),
            ..Default::default()
        });
        self.count_queue(&pending);
    }

    fn count_queue(&self, queue: &OfflineQueue) {
        let (queued, dropped) = (queue.len(), queue.dropped_total());
        self.update(|s| {
            s.queued_events = queued;
            s.dropped_events = dropped;
        });
    }

    /// A call was answered `status`: 401 asks for a renewal, and both 401 and 404
    /// ask whether the server disconnected the device.
    fn refused(&self, status: Option<u16>) {
        match status {
            Some(401) => {
                self.renewal_requested.store(true, Ordering::SeqCst);
                self.renew_now.notify_one();
                self.control_check.notify_one();
            }
            Some(404) => self.control_check.notify_one(),
            _ => {}
        }
    }

    fn state_write_failed(&self, item: StateItem, error: &StateError) {
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

    fn update(&self, change: impl FnOnce(&mut AgentStatus)) {
        change(&mut lock(&self.status));
    }
}

/// Observes a running [`Agent`]: its status and its events. Cheap to clone.
#[derive(Clone)]
pub struct AgentHandle {
    shared: Arc<Shared>,
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

/// Builds an [`Agent`]; see [`Agent::builder`].
pub struct AgentBuilder {
    server: Option<String>,
    ca_pem: Option<String>,
    registration: Option<(String, String)>,
    device_id: Option<String>,
    namespace: String,
    labels: BTreeMap<String, String>,
    state: Option<Arc<dyn StateStore>>,
    runtime: Option<Arc<dyn WorkloadRuntime>>,
    os_updater: Arc<dyn OsUpdater>,
    hardware: Arc<dyn HardwareProbe>,
    timing: AgentTiming,
    enrolment: AgentConfig,
    offline_queue_capacity: usize,
    local_address: Option<IpAddr>,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("server", &self.server)
            .field("device_id", &self.device_id)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl AgentBuilder {
    /// Base URL of the Edge API, `https://host:port` (required).
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.server = Some(url.into());
        self
    }

    /// PEM of the CA that signs the server's certificate (required).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The fleet-wide registration certificate and its key, PEM (required): used to
    /// enrol and register only.
    pub fn registration_identity(
        mut self,
        certificate_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Self {
        self.registration = Some((certificate_pem.into(), key_pem.into()));
        self
    }

    /// The device id (required): the `EdgeDevice` name and certificate CN.
    pub fn device_id(mut self, id: impl Into<String>) -> Self {
        self.device_id = Some(id.into());
        self
    }

    /// Namespace the device asks to join (default `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Adds a label the device asks for at enrolment (the enrolment info's
    /// `labels`). The reference server keeps them in the signed request, where an
    /// approver may change them, and gives them to the device it creates.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Keeps state in files under `dir` ([`FileStateStore`]).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state = Some(Arc::new(FileStateStore::new(dir)));
        self
    }

    /// Keeps state in `store` (instead of [`state_dir`](Self::state_dir)).
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.state = Some(store);
        self
    }

    /// Runs workloads with `runtime` (required).
    pub fn runtime(mut self, runtime: Arc<dyn WorkloadRuntime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Updates the OS with `updater` (default [`NoOsUpdater`]).
    pub fn os_updater(mut self, updater: Arc<dyn OsUpdater>) -> Self {
        self.os_updater = updater;
        self
    }

    /// Reads the hardware with `probe` (default [`ProcHardwareProbe`]).
    pub fn hardware_probe(mut self, probe: Arc<dyn HardwareProbe>) -> Self {
        self.hardware = probe;
        self
    }

    /// Run-loop timers (default [`AgentTiming::default`]).
    pub fn timing(mut self, timing: AgentTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Enrolment backoff, approval wait and renewal policy.
    pub fn enrolment_config(mut self, config: AgentConfig) -> Self {
        self.enrolment = config;
        self
    }

    /// Most events kept while the server is unreachable (default 100, at least 1);
    /// when full, the oldest are dropped and counted.
    pub fn offline_queue_capacity(mut self, capacity: usize) -> Self {
        self.offline_queue_capacity = capacity;
        self
    }

    /// Binds the agent's connections to this local (source) address (default:
    /// chosen by the operating system). A simulator running many agents on one
    /// host spreads them over several loopback addresses this way.
    pub fn local_address(mut self, address: IpAddr) -> Self {
        self.local_address = Some(address);
        self
    }

    /// Checks the settings and builds the agent.
    pub fn build(self) -> Result<Agent, AgentError> {
        let missing = |field: &'static str| AgentError::InvalidSetting {
            field,
            reason: "required and not set".into(),
        };
        let server = self.server.ok_or_else(|| missing("server"))?;
        let ca_pem = self.ca_pem.ok_or_else(|| missing("ca_pem"))?;
        let (cert, key) = self
            .registration
            .ok_or_else(|| missing("registration_identity"))?;
        let device_id = self.device_id.ok_or_else(|| missing("device_id"))?;
        if device_id.is_empty() || device_id.contains(['/', '?', '#', '%']) {
            return Err(AgentError::InvalidSetting {
                field: "device_id",
                reason: format!("{device_id:?} is not a usable device id"),
            });
        }
        if self.namespace.is_empty() {
            return Err(AgentError::InvalidSetting {
                field: "namespace",
                reason: "empty".into(),
            });
        }
        let state = self
            .state
            .ok_or_else(|| missing("state_dir or state_store"))?;
        let runtime = self.runtime.ok_or_else(|| missing("runtime"))?;
        let registration =
            Identity::from_pem(&cert, &key).map_err(|source| AgentError::Client {
                what: "registration identity",
                source,
            })?;
        let client = edge_client(
            &server,
            &ca_pem,
            registration.clone(),
            &self.timing,
            self.local_address,
        )
        .map_err(|source| AgentError::Client {
            what: "Edge API client",
            source,
        })?;
        let (events, _) = broadcast::channel(256);
        Ok(Agent {
            device_id,
            namespace: self.namespace,
            labels: self.labels,
            server,
            ca_pem,
            registration,
            client,
            apply_lock: tokio::sync::Mutex::new(()),
            state,
            runtime,
            os_updater: self.os_updater,
            hardware: self.hardware,
            timing: self.timing,
            enrolment: self.enrolment,
            local_address: self.local_address,
            shared: Arc::new(Shared {
                status: Mutex::new(AgentStatus::default()),
                events,
                pending: Mutex::new(OfflineQueue::new(self.offline_queue_capacity)),
                heartbeat_period: Mutex::new(self.timing.heartbeat_period),
                heartbeat_hardware: Mutex::new(false),
                heartbeat_now: Notify::new(),
                poll_version: Mutex::new(None),
                renewal_requested: AtomicBool::new(false),
                renew_now: Notify::new(),
                control_check: Notify::new(),
                last_upgrade: Mutex::new(None),
            }),
        })
    }
}

/// The device agent: enrols, then keeps the device's workloads converged on the
/// configuration the server sends, reporting heartbeats.
///
/// ```no_run
/// # async fn demo() -> Result<(), flotta_agent_lib::AgentError> {
/// use std::sync::Arc;
/// use flotta_agent_lib::{Agent, MemoryRuntime};
///
/// let agent = Agent::builder()
///     .server("https://flotta.example:8043")
///     .ca_pem(std::fs::read_to_string("/etc/flotta/ca.crt").unwrap_or_default())
///     .registration_identity(
///         std::fs::read_to_string("/etc/flotta/register.crt").unwrap_or_default(),
///         std::fs::read_to_string("/etc/flotta/register.key").unwrap_or_default(),
///     )
///     .device_id("camera-17")
///     .state_dir("/var/lib/flotta")
///     .runtime(Arc::new(MemoryRuntime::new()))
///     .build()?;
/// let handle = agent.handle();
/// agent.run(std::future::pending()).await?;
/// println!("{:?}", handle.status());
/// # Ok(()) }
/// ```
pub struct Agent {
    device_id: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    server: String,
    ca_pem: String,
    registration: Identity,
    /// The client of the run loops; it carries the device certificate once there
    /// is one.
    client: EdgeClient,
    /// Held while a configuration is applied, and by the disconnect clean-up.
    apply_lock: tokio::sync::Mutex<()>,
    state: Arc<dyn StateStore>,
    runtime: Arc<dyn WorkloadRuntime>,
    os_updater: Arc<dyn OsUpdater>,
    hardware: Arc<dyn HardwareProbe>,
    timing: AgentTiming,
    enrolment: AgentConfig,
    local_address: Option<IpAddr>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("device_id", &self.device_id)
            .field("namespace", &self.namespace)
            .field("server", &self.client.server())
            .finish_non_exhaustive()
    }
}

/// The device key and certificate the agent uses.
struct HeldIdentity {
    key_pem: String,
    certificate_pem: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// When this agent got the certificate; `None` for one read from state.
    received_at: Option<OffsetDateTime>,
}

impl HeldIdentity {
    fn new(
        key_pem: String,
        certificate_pem: String,
        received_at: Option<OffsetDateTime>,
    ) -> Result<Self, AgentError> {
        let facts =
            PeerCertificate::parse(certificate_pem.as_bytes()).map_err(AgentError::Certificate)?;
        Ok(Self {
            key_pem,
            certificate_pem,
            not_before: facts.not_before,
            not_after: facts.not_after,
            received_at,
        })
    }

    fn identity(&self) -> Result<Identity, AgentError> {
        Identity::from_pem(&self.certificate_pem, &self.key_pem).map_err(|source| {
            AgentError::Client {
                what: "device identity",
                source,
            }
        })
    }

    /// When to renew, by the configured policy (two thirds by default) of the
    /// lifetime counted from when the agent got the certificate: the server
    /// back-dates NotBefore for clock skew, which would make a short-lived
    /// certificate due at once.
    fn renew_at(&self, config: &AgentConfig) -> OffsetDateTime {
        let start = self.received_at.map_or(self.not_before, |at| {
            at.clamp(self.not_before, self.not_after)
        });
        config.renewal.renew_at(start, self.not_after)
    }
}

/// An Edge API client as the agent uses them: no retries of its own (the loops
/// back off), the agent's request timeout.
fn edge_client(
    server: &str,
    ca_pem: &str,
    identity: Identity,
    timing: &AgentTiming,
    local_address: Option<IpAddr>,
) -> Result<EdgeClient, flotta_client::ClientError> {
    let mut builder = EdgeClient::builder(server)
        .ca_pem(ca_pem)
        .identity(identity)
        .timeout(timing.request_timeout)
        .connect_timeout(
            timing
                .request_timeout
                .min(flotta_client::DEFAULT_CONNECT_TIMEOUT),
        )
        .retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        });
    if let Some(address) = local_address {
        builder = builder.local_address(address);
    }
    builder.build()
}

fn generate_key() -> Result<DeviceKey, AgentError> {
    DeviceKey::generate().map_err(|source| AgentError::Key {
        what: "generating the key failed",
        source,
    })
}

/// Whether a control message is the `disconnect` command.
fn is_disconnect(message: &Message) -> bool {
    message.directive.as_deref() == Some("disconnect")
        || message
            .content
            .as_ref()
            .and_then(|c| c.get("command"))
            .and_then(serde_json::Value::as_str)
            == Some("disconnect")
}

/// An error and its causes, `: `-separated, for events and status.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn random() -> u32 {
    // A failing OS RNG only makes the jitter less random.
    getrandom::u32().unwrap_or(u32::MAX / 2)
}

fn to_std(duration: time::Duration) -> Duration {
    Duration::try_from(duration).unwrap_or_default()
}

fn empty_config() -> PersistedConfig {
    PersistedConfig::default()
}

impl Agent {
    /// Starts building an agent.
    pub fn builder() -> AgentBuilder {
        AgentBuilder {
            server: None,
            ca_pem: None,
            registration: None,
            device_id: None,
            namespace: "default".into(),
            labels: BTreeMap::new(),
            state: None,
            runtime: None,
            os_updater: Arc::new(NoOsUpdater),
            hardware: Arc::new(ProcHardwareProbe::default()),
            timing: AgentTiming::default(),
            enrolment: AgentConfig::default(),
            offline_queue_capacity: DEFAULT_OFFLINE_QUEUE_CAPACITY,
            local_address: None,
        }
    }

    /// A handle observing this agent.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            shared: self.shared.clone(),
        }
    }

    /// The device id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Runs until `shutdown` completes: converges the persisted configuration, enrols
    /// (or resumes with the persisted certificate), then long-polls the configuration,
    /// applies it, sends heartbeats, renews the certificate and watches for a
    /// `disconnect` command.
    ///
    /// Returns `Ok(())` on shutdown, and after a `disconnect` from the server (the
    /// device was deleted: its workloads and state are removed,
    /// [`AgentStatus::disconnected`] is set and [`AgentEvent::Disconnected`] sent).
    /// An error only when persisted state is unusable, a key cannot be generated, or
    /// the first key or certificate cannot be persisted (a server that is down or
    /// refuses is retried, never fatal).
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), AgentError> {
        let work = async {
            self.converge_persisted().await?;
            let held = self.establish_identity().await?;
            tokio::select! {
                result = self.identity_loop(held) => result,
                result = self.control_loop() => result,
                () = self.config_loop() => Ok(()),
                () = self.heartbeat_loop() => Ok(()),
            }
        };
        tokio::select! {
            () = shutdown => Ok(()),
            result = work => result,
        }
    }

    /// Brings the runtime back to the persisted current configuration (after a
    /// restart or power loss), before the server is reachable.
    async fn converge_persisted(&self) -> Result<(), AgentError> {
        let _applying = self.apply_lock.lock().await;
        let failed = load_text(self.state.as_ref(), StateItem::FailedVersion).await?;
        let Some(current) = load_config(self.state.as_ref(), StateItem::CurrentConfig).await?
        else {
            *lock(&self.shared.poll_version) = failed.clone();
            self.shared.update(|s| s.failed_version = failed);
            return Ok(());
        };
        if let Some(period) = heartbeat_period_of(&current.message) {
            *lock(&self.shared.heartbeat_period) = period;
        }
        *lock(&self.shared.heartbeat_hardware) = includes_hardware(
            current
                .message
                .configuration
                .as_ref()
                .and_then(|c| c.heartbeat.as_ref()),
        );
        let config = RenderedConfig::from_message(current.message.clone());
        match self.observe(&config, &config).await {
            Ok(observed) => {
                let actions = plan(&config, &config, &observed);
                if let Err(reason) = self.execute(&actions).await {
                    tracing::warn!(%reason, "could not restore the persisted configuration");
                }
            }
            Err(reason) => tracing::warn!(%reason, "could not list the runtime's workloads"),
        }
        *lock(&self.shared.poll_version) = failed.clone().or(Some(current.version.clone()));
        self.shared.update(|s| {
            s.config_version = Some(current.version);
            s.failed_version = failed;
        });
        Ok(())
    }

    fn set_phase(&self, phase: AgentPhase) {
        let mut changed = false;
        self.shared.update(|s| {
            changed = s.phase != Some(phase);
            s.phase = Some(phase);
        });
        if changed {
            tracing::info!(?phase, "enrolment phase");
            self.shared.emit(AgentEvent::PhaseChanged(phase));
        }
    }

    async fn device_key(&self) -> Result<DeviceKey, AgentError> {
        if let Some(pem) = load_text(self.state.as_ref(), StateItem::DeviceKey).await? {
            return DeviceKey::from_pem(&pem).map_err(|source| AgentError::Key {
                what: "the persisted key is unreadable",
                source,
            });
        }
        let key = generate_key()?;
        self.state
            .save(StateItem::DeviceKey, key.to_pem().as_bytes())
            .await?;
        Ok(key)
    }

    /// Finishes a renewal that was committed (its key and certificate saved together)
    /// but not yet copied to the key and certificate items when the agent stopped.
    async fn finish_renewal(&self) -> Result<(), AgentError> {
        let Some(bytes) = self.state.load(StateItem::RenewedIdentity).await? else {
            return Ok(());
        };
        let renewed = PersistedIdentity::decode(StateItem::RenewedIdentity, &bytes)?;
        self.install_identity(&renewed).await?;
        tracing::info!("completed a renewal interrupted by a restart");
        Ok(())
    }

    /// Copies a committed key and certificate to their items, then drops the commit.
    async fn install_identity(&self, identity: &PersistedIdentity) -> Result<(), StateError> {
        self.state
            .save(StateItem::DeviceKey, identity.key.as_bytes())
            .await?;
        self.state
            .save(
                StateItem::DeviceCertificate,
                identity.certificate.as_bytes(),
            )
            .await?;
        self.state.remove(StateItem::RenewedIdentity).await
    }

    /// The device identity: the persisted one (renewed later by the identity loop
    /// if due), or a new one from enrolment and registration.
    async fn establish_identity(&self) -> Result<HeldIdentity, AgentError> {
        self.finish_renewal().await?;
        let key = self.device_key().await?;
        if let Some(pem) = load_text(self.state.as_ref(), StateItem::DeviceCertificate).await? {
            let held = HeldIdentity::new(key.to_pem(), pem, None)?;
            self.use_identity(&held)?;
            self.set_phase(AgentPhase::Running);
            self.shared.emit(AgentEvent::Resumed);
            return Ok(held);
        }
        let mut machine = EnrolmentMachine::new(self.enrolment);
        let next = machine.start(OffsetDateTime::now_utc());
        let Some(certificate) = self.obtain_certificate(machine, next, None, &key).await? else {
            return Err(AgentError::InvalidSetting {
                field: "device_id",
                reason: "the server disconnected a device that was never registered".into(),
            });
        };
        self.state
            .save(StateItem::DeviceCertificate, certificate.as_bytes())
            .await?;
        let held = HeldIdentity::new(key.to_pem(), certificate, Some(OffsetDateTime::now_utc()))?;
        self.use_identity(&held)?;
        self.set_phase(AgentPhase::Running);
        tracing::info!(device = %self.device_id, "registered");
        self.shared.emit(AgentEvent::Registered);
        Ok(held)
    }

    /// Switches the run loops' client to `held`.
    fn use_identity(&self, held: &HeldIdentity) -> Result<(), AgentError> {
        self.client
            .set_identity(held.identity()?)
            .map_err(|source| AgentError::Client {
                what: "identity swap",
                source,
            })?;
        let renew_at = held.renew_at(&self.enrolment);
        self.shared.update(|s| {
            s.certificate_expires = Some(held.not_after);
            s.certificate_renew_at = Some(renew_at);
        });
        Ok(())
    }

    /// A client presenting `identity`, for enrolment and renewal requests (the run
    /// loops keep theirs meanwhile).
    fn enrolment_client(&self, identity: Identity) -> Result<EdgeClient, AgentError> {
        edge_client(
            &self.server,
            &self.ca_pem,
            identity,
            &self.timing,
            self.local_address,
        )
        .map_err(|source| AgentError::Client {
            what: "enrolment client",
            source,
        })
    }

    /// Drives the enrolment state machine from `next` until the server issues a
    /// certificate for `csr_key` other than `current`'s; returns it (PEM), or `None`
    /// when the server refused `current` because the device was deleted.
    async fn obtain_certificate(
        &self,
        mut machine: EnrolmentMachine,
        mut next: NextAction,
        current: Option<&HeldIdentity>,
        csr_key: &DeviceKey,
    ) -> Result<Option<String>, AgentError> {
        let current_pem = current.map(|c| c.certificate_pem.as_str());
        let is_new = |pem: Option<&str>| pem.is_some() && pem != current_pem;
        let mut registration_client = None;
        let mut device_client = None;
        loop {
            self.set_phase(machine.phase());
            let (request, at) = match next {
                NextAction::Run { .. } => {
                    if let Some(pem) = machine.certificate_pem().filter(|p| is_new(Some(p))) {
                        return Ok(Some(pem.to_owned()));
                    }
                    // Holding the old certificate only: ask again.
                    next = machine.on_unauthorized(OffsetDateTime::now_utc());
                    continue;
                }
                NextAction::Send { request, at } => (request, at),
            };
            tokio::time::sleep(to_std(at - OffsetDateTime::now_utc())).await;
            let client = match (request.credential, current) {
                (Credential::DeviceCertificate, Some(held)) => {
                    if device_client.is_none() {
                        device_client = Some(self.enrolment_client(held.identity()?)?);
                    }
                    &device_client
                }
                _ => {
                    if registration_client.is_none() {
                        registration_client =
                            Some(self.enrolment_client(self.registration.clone())?);
                    }
                    &registration_client
                }
            };
            let Some(client) = client else { continue };
            let answer = self
                .send_enrolment(client, request.directive, csr_key)
                .await?;
            let now = OffsetDateTime::now_utc();
            next = match &answer {
                Some((status, body)) => machine.on_response(
                    AgentResponse {
                        status: *status,
                        body,
                    },
                    now,
                    random(),
                ),
                None => machine.on_unreachable(now, random()),
            };
            // A short-lived certificate may already be due for renewal by the
            // machine's reckoning (NotBefore is back-dated for clock skew); the agent
            // schedules renewal itself from when it got the certificate.
            if let Some(pem) = machine.certificate_pem().filter(|p| is_new(Some(p))) {
                return Ok(Some(pem.to_owned()));
            }
            if let (Some(EnrolmentError::DeviceCertificateRefused { .. }), Some(client)) =
                (machine.last_error(), &device_client)
            {
                // Revoked: a deleted device must not enrol again as a new one.
                if let Ok(Some(command)) = client.control_in(&self.device_id).await
                    && is_disconnect(&command)
                {
                    return Ok(None);
                }
            }
            if let Some(error) = machine.last_error() {
                tracing::info!(%error, attempt = machine.attempt(), "enrolment not done yet");
            }
        }
    }

    /// Sends one enrolment or registration with `client`; the status and body, or
    /// `None` when the server could not be reached.
    async fn send_enrolment(
        &self,
        client: &EdgeClient,
        directive: Directive,
        key: &DeviceKey,
    ) -> Result<Option<(u16, Vec<u8>)>, AgentError> {
        let hardware = Some(self.hardware.probe().await);
        let result = if directive == Directive::Registration {
            let csr = key.csr(&self.device_id).map_err(|source| AgentError::Key {
                what: "building the CSR failed",
                source,
            })?;
            let info = RegistrationInfo {
                hardware,
                certificate_request: Some(csr.pem()),
                ..Default::default()
            };
            client
                .register(&self.device_id, &info)
                .await
                .map(|outcome| match outcome {
                    RegistrationOutcome::NotApproved => (404, Vec::new()),
                    RegistrationOutcome::Registered {
                        certificate_pem, ..
                    } => {
                        let body = serde_json::json!({"content": {"certificate": certificate_pem}});
                        (200, body.to_string().into_bytes())
                    }
                })
        } else {
            let mut info = EnrolmentInfo {
                target_namespace: Some(self.namespace.clone()),
                features: Some(EnrolmentInfoFeatures {
                    hardware,
                    ..Default::default()
                }),
                ..Default::default()
            };
            if !self.labels.is_empty() {
                info.extra
                    .insert("labels".into(), serde_json::json!(self.labels));
            }
            client
                .enrol(&self.device_id, &info)
                .await
                .map(|outcome| match outcome {
                    EnrolmentOutcome::Pending => (200, Vec::new()),
                    EnrolmentOutcome::AlreadyApproved => (208, Vec::new()),
                })
        };
        Ok(match result {
            Ok(answer) => Some(answer),
            Err(error) => match error.status() {
                Some(status) => Some((status, Vec::new())),
                None => {
                    tracing::warn!(%error, %directive, "server unreachable");
                    None
                }
            },
        })
    }

    /// Renews the certificate when due (or when a call was refused with 401), for
    /// as long as the agent runs.
    async fn identity_loop(&self, mut held: HeldIdentity) -> Result<(), AgentError> {
        let mut failures = 0u32;
        loop {
            if failures == 0 {
                let due = held.renew_at(&self.enrolment);
                let wait = to_std(due - OffsetDateTime::now_utc());
                let timer = async {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                };
                tokio::select! {
                    () = timer => {}
                    () = self.shared.renew_now.notified() => {
                        if !self.shared.renewal_requested.load(Ordering::SeqCst) {
                            continue;
                        }
                        tracing::info!("a call was refused with 401; renewing the certificate");
                    }
                }
            } else {
                tokio::time::sleep(self.retry_delay(failures)).await;
            }
            match self.renew(&held).await {
                Ok(Some(renewed)) => {
                    held = renewed;
                    failures = 0;
                }
                Ok(None) => return self.disconnect().await,
                Err(AgentError::State(error)) => {
                    failures = failures.saturating_add(1);
                    self.shared
                        .state_write_failed(StateItem::RenewedIdentity, &error);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One renewal: a new key, a CSR sent with the current (possibly expired)
    /// certificate, and the new key and certificate committed in one atomic save.
    async fn renew(&self, held: &HeldIdentity) -> Result<Option<HeldIdentity>, AgentError> {
        let now = OffsetDateTime::now_utc();
        let mut machine = EnrolmentMachine::with_certificate(self.enrolment, &held.certificate_pem)
            .map_err(AgentError::Certificate)?;
        let next = machine.on_unauthorized(now);
        let new_key = generate_key()?;
        self.shared.renewal_requested.store(false, Ordering::SeqCst);
        let Some(certificate) = self
            .obtain_certificate(machine, next, Some(held), &new_key)
            .await?
        else {
            return Ok(None);
        };
        // Whether the server took an expired certificate (after an outage).
        let expired = OffsetDateTime::now_utc() >= held.not_after;
        let committed = PersistedIdentity {
            key: new_key.to_pem(),
            certificate,
        };
        self.state
            .save(StateItem::RenewedIdentity, &committed.encode())
            .await?;
        // Committed: from here a restart installs the new identity.
        let renewed = HeldIdentity::new(
            committed.key.clone(),
            committed.certificate.clone(),
            Some(OffsetDateTime::now_utc()),
        )?;
        self.use_identity(&renewed)?;
        self.shared.renewal_requested.store(false, Ordering::SeqCst);
        self.set_phase(AgentPhase::Running);
        if let Err(error) = self.install_identity(&committed).await {
            // The commit stays and is installed at the next start.
            self.shared
                .state_write_failed(StateItem::DeviceCertificate, &error);
        }
        self.shared.update(|s| s.state_error = None);
        tracing::info!(expired, not_after = %renewed.not_after, "certificate renewed");
        self.shared.report(
            if expired {
                "CertificateReRegistered"
            } else {
                "CertificateRenewed"
            },
            format!("new certificate valid until {}", renewed.not_after),
            false,
        );
        self.shared.emit(AgentEvent::CertificateRenewed {
            expired,
            not_after: renewed.not_after,
        });
        // A heartbeat at once shows the server takes the new certificate.
        self.shared.heartbeat_now.notify_one();
        Ok(Some(renewed))
    }

    /// Reads control commands every heartbeat period and whenever a call was
    /// refused; returns after carrying out a `disconnect`.
    async fn control_loop(&self) -> Result<(), AgentError> {
        loop {
            let period = jittered(*lock(&self.shared.heartbeat_period), random());
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = self.shared.control_check.notified() => {}
            }
            match self.client.control_in(&self.device_id).await {
                Ok(Some(command)) if is_disconnect(&command) => return self.disconnect().await,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "control poll failed");
                    if error.status() == Some(401) {
                        self.shared.refused(Some(401));
                    }
                    // Do not spin on repeated refusals.
                    tokio::time::sleep(self.timing.retry_initial).await;
                }
            }
        }
    }

    /// The device was deleted on the server: remove its workloads and the agent's
    /// state (key and certificate included).
    async fn disconnect(&self) -> Result<(), AgentError> {
        let _applying = self.apply_lock.lock().await;
        tracing::warn!(
            device = %self.device_id,
            "the server disconnected this device; removing its workloads and state"
        );
        let mut names = BTreeSet::new();
        let mut complete = true;
        match self.runtime.list().await {
            Ok(list) => names.extend(
                list.into_iter()
                    .filter(|w| w.fingerprint.is_some())
                    .map(|w| w.name),
            ),
            Err(error) => {
                tracing::warn!(%error, "could not list workloads to remove");
                complete = false;
            }
        }
        for item in [StateItem::CurrentConfig, StateItem::DesiredConfig] {
            if let Ok(Some(config)) = load_config(self.state.as_ref(), item).await {
                names.extend(
                    config
                        .message
                        .workloads
                        .iter()
                        .flatten()
                        .filter_map(|w| w.name.clone()),
                );
            }
        }
        let mut removed = Vec::new();
        for name in names {
            match self.runtime.remove(&name).await {
                Ok(()) => removed.push(name),
                Err(error) => {
                    tracing::error!(%error, "could not remove a workload");
                    complete = false;
                }
            }
        }
        let mut state_error = None;
        for item in StateItem::ALL {
            if let Err(error) = self.state.remove(item).await {
                complete = false;
                state_error.get_or_insert(error);
            }
        }
        self.shared.update(|s| {
            s.disconnected = true;
            s.config_version = None;
            s.certificate_expires = None;
            s.certificate_renew_at = None;
        });
        tracing::warn!(?removed, complete, "disconnected; the agent stops");
        self.shared.emit(AgentEvent::Disconnected {
            removed_workloads: removed,
            complete,
        });
        match state_error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    fn retry_delay(&self, failures: u32) -> Duration {
        let backoff = Backoff {
            initial: time::Duration::try_from(self.timing.retry_initial)
                .unwrap_or(time::Duration::SECOND),
            max: time::Duration::try_from(self.timing.retry_max).unwrap_or(time::Duration::MINUTE),
        };
        to_std(backoff.delay(failures.saturating_sub(1), random()))
    }

    async fn config_loop(&self) {
        let mut failures = 0u32;
        loop {
            let known = lock(&self.shared.poll_version).clone();
            let poll = self
                .client
                .get_config(
                    &self.device_id,
                    known.as_deref(),
                    Some(self.timing.config_wait),
                )
                .await;
            let outcome = match poll {
                Ok(ConfigPoll::NotModified) => Ok(()),
                Ok(ConfigPoll::Config { etag, message }) => {
                    match message.content_as::<DeviceConfigurationMessage>() {
                        Ok(desired) => self.converge(etag, desired).await,
                        Err(error) => {
                            self.reject(etag, error.to_string()).await;
                            Ok(())
                        }
                    }
                }
                Err(error) => {
                    self.shared.refused(error.status());
                    tracing::warn!(%error, "configuration poll failed");
                    Err(())
                }
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(()) => {
                    failures = failures.saturating_add(1);
                    let delay = self.retry_delay(failures);
                    tracing::debug!(?delay, failures, "configuration poll backs off");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Records `version` as failed so the next polls name it and get 304.
    async fn remember_failed(&self, version: &str) {
        *lock(&self.shared.poll_version) = Some(version.to_owned());
        self.shared
            .update(|s| s.failed_version = Some(version.to_owned()));
        if let Err(error) = self
            .state
            .save(StateItem::FailedVersion, version.as_bytes())
            .await
        {
            self.shared
                .state_write_failed(StateItem::FailedVersion, &error);
        }
    }

    async fn reject(&self, version: String, reason: String) {
        tracing::warn!(%version, %reason, "configuration rejected");
        self.shared.report(
            "ConfigRejected",
            format!("version {version}: {reason}"),
            true,
        );
        self.remember_failed(&version).await;
        self.shared
            .emit(AgentEvent::ApplyFailed { version, reason });
    }

    /// Persists a configuration; a failure is reported (event, status) and returned.
    async fn save_config(&self, item: StateItem, config: &PersistedConfig) -> Result<(), ()> {
        match self.state.save(item, &config.encode()).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.shared.state_write_failed(item, &error);
                Err(())
            }
        }
    }

    async fn load_or_empty(&self, item: StateItem) -> PersistedConfig {
        match load_config(self.state.as_ref(), item).await {
            Ok(config) => config.unwrap_or_else(empty_config),
            Err(error) => {
                tracing::warn!(%error, "ignoring unusable persisted configuration");
                empty_config()
            }
        }
    }

    /// What the device has: the runtime's workloads, the OS as the updater reports
    /// it against `desired`'s target, and the rest as `base` says.
    async fn observe(
        &self,
        base: &RenderedConfig,
        desired: &RenderedConfig,
    ) -> Result<ObservedState, String> {
        let mut observed = ObservedState::from_config(base);
        observed.workloads = self
            .runtime
            .list()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|w| {
                (
                    w.name,
                    ObservedWorkload {
                        fingerprint: w.fingerprint,
                        phase: w.phase,
                    },
                )
            })
            .collect();
        let target = desired
            .message
            .configuration
            .as_ref()
            .and_then(|c| c.os.as_ref());
        if let (Some(target), Ok(Some(running))) = (target, self.os_updater.current_commit().await)
        {
            // The updater knows better than the last configuration whether the
            // target is reached (it was not when `automatically_upgrade` was off).
            let reached = target.commit_id.as_deref() == Some(running.as_str())
                || target.image.as_deref() == Some(running.as_str());
            observed.os = if reached {
                ObservedOs {
                    commit_id: target.commit_id.clone(),
                    image: target.image.clone(),
                }
            } else {
                ObservedOs {
                    commit_id: Some(running),
                    image: None,
                }
            };
        }
        Ok(observed)
    }

    /// Applies a configuration; on failure rolls back to the last good one. `Err`
    /// when state could not be persisted: nothing was applied (or the apply is not
    /// recorded) and the same version is tried again after a backoff.
    async fn converge(
        &self,
        version: String,
        message: DeviceConfigurationMessage,
    ) -> Result<(), ()> {
        let _applying = self.apply_lock.lock().await;
        let desired = PersistedConfig { version, message };
        // Never run a configuration the device could not restore after a restart.
        self.save_config(StateItem::DesiredConfig, &desired).await?;
        let current = self.load_or_empty(StateItem::CurrentConfig).await;
        let current_rendered = RenderedConfig::from_message(current.message);
        let desired_rendered = RenderedConfig::from_message(desired.message.clone());
        let outcome = match self.observe(&current_rendered, &desired_rendered).await {
            Ok(observed) => {
                let actions = plan(&current_rendered, &desired_rendered, &observed);
                self.execute(&actions).await
            }
            Err(reason) => Err(reason),
        };
        match outcome {
            Ok(()) => {
                self.save_config(StateItem::CurrentConfig, &desired).await?;
                self.save_config(StateItem::LastGoodConfig, &desired)
                    .await?;
                if let Err(error) = self.state.remove(StateItem::FailedVersion).await {
                    tracing::warn!(%error, "could not clear the failed version");
                }
                *lock(&self.shared.poll_version) = Some(desired.version.clone());
                self.shared.update(|s| {
                    s.config_version = Some(desired.version.clone());
                    s.failed_version = None;
                    s.state_error = None;
                });
                tracing::info!(version = %desired.version, "configuration applied");
                self.shared.report(
                    "ConfigApplied",
                    format!("version {}", desired.version),
                    false,
                );
                self.shared.emit(AgentEvent::ConfigApplied {
                    version: desired.version,
                });
            }
            Err(reason) => self.roll_back(desired, desired_rendered, reason).await,
        }
        self.shared.heartbeat_now.notify_one();
        Ok(())
    }

    async fn roll_back(
        &self,
        failed: PersistedConfig,
        failed_rendered: RenderedConfig,
        reason: String,
    ) {
        tracing::warn!(version = %failed.version, %reason, "apply failed; rolling back");
        self.shared.report(
            "ApplyFailed",
            format!("version {}: {reason}", failed.version),
            true,
        );
        self.shared.emit(AgentEvent::ApplyFailed {
            version: failed.version.clone(),
            reason,
        });
        let last_good = self.load_or_empty(StateItem::LastGoodConfig).await;
        let last_good_rendered = RenderedConfig::from_message(last_good.message.clone());
        let complete = match self.observe(&failed_rendered, &last_good_rendered).await {
            Ok(observed) => {
                let actions = rollback_plan(&failed_rendered, &last_good_rendered, &observed);
                match self.execute(&actions).await {
                    Ok(()) => true,
                    Err(reason) => {
                        tracing::error!(%reason, "rollback incomplete");
                        false
                    }
                }
            }
            Err(reason) => {
                tracing::error!(%reason, "rollback impossible");
                false
            }
        };
        // Failures are reported by save_config; the rollback itself stands.
        let _ = self.save_config(StateItem::CurrentConfig, &last_good).await;
        self.remember_failed(&failed.version).await;
        self.shared.update(|s| {
            s.config_version = Some(last_good.version.clone()).filter(|v| !v.is_empty());
        });
        self.shared.report(
            "RolledBack",
            format!(
                "from {} to {} ({})",
                failed.version,
                last_good.version,
                if complete { "complete" } else { "incomplete" }
            ),
            !complete,
        );
        self.shared.emit(AgentEvent::RolledBack {
            failed_version: failed.version,
            to_version: last_good.version,
            complete,
        });
    }

    /// Carries out `actions` in order, stopping at the first failure.
    async fn execute(&self, actions: &[Action]) -> Result<(), String> {
        for action in actions {
            match action {
                Action::RemoveWorkload { name } => {
                    self.runtime.remove(name).await.map_err(|e| e.to_string())?;
                }
                Action::StartWorkload { workload } | Action::ReplaceWorkload { workload } => {
                    self.runtime
                        .apply(workload)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Action::SetHeartbeat { heartbeat } => {
                    let period = heartbeat
                        .as_ref()
                        .and_then(|h| h.period_seconds)
                        .and_then(|s| u64::try_from(s).ok())
                        .filter(|s| *s > 0)
                        .map_or(self.timing.heartbeat_period, Duration::from_secs);
                    *lock(&self.shared.heartbeat_period) = period;
                    *lock(&self.shared.heartbeat_hardware) = includes_hardware(heartbeat.as_ref());
                }
                Action::UpgradeOs { os } => self.upgrade_os(os).await?,
                other => {
                    // Secrets, files and device settings have no backend in this
                    // agent yet; they stay recorded in the persisted configuration.
                    tracing::debug!(action = ?other, "action not handled by this agent");
                }
            }
        }
        Ok(())
    }

    /// Stages and activates `os` (planned only when it says
    /// `automatically_upgrade: true`), and rolls the OS back if it is then unhealthy.
    async fn upgrade_os(&self, os: &flotta_core::wire::OsInformation) -> Result<(), String> {
        let target = os
            .commit_id
            .clone()
            .or_else(|| os.image.clone())
            .unwrap_or_default();
        let result = async {
            self.os_updater.stage(os).await.map_err(|e| e.to_string())?;
            self.os_updater
                .activate()
                .await
                .map_err(|e| e.to_string())?;
            match self.os_updater.health().await {
                Ok(OsHealth::Healthy) => Ok(()),
                Ok(_) | Err(_) => {
                    let rolled_back = self.os_updater.rollback().await;
                    Err(format!(
                        "the OS is unhealthy after activating {target}; OS rollback {}",
                        if rolled_back.is_ok() {
                            "done"
                        } else {
                            "failed"
                        }
                    ))
                }
            }
        }
        .await;
        *lock(&self.shared.last_upgrade) = Some((
            result.is_ok(),
            OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        ));
        match &result {
            Ok(()) => self
                .shared
                .report("OsUpgraded", format!("activated {target}"), false),
            Err(reason) => self.shared.report("OsUpgradeFailed", reason.clone(), true),
        }
        result
    }

    async fn heartbeat_content(&self, events: Vec<EventInfo>) -> Heartbeat {
        let (workloads, degraded) = match self.runtime.list().await {
            Ok(list) => {
                let degraded = list.iter().any(|w| w.phase == WorkloadPhase::Failed);
                let statuses = list
                    .into_iter()
                    .map(|w| WorkloadStatus {
                        name: Some(w.name),
                        status: Some(w.phase.as_str().to_owned()),
                        ..Default::default()
                    })
                    .collect();
                (Some(statuses), degraded)
            }
            Err(error) => {
                tracing::warn!(%error, "could not list workloads for the heartbeat");
                (None, true)
            }
        };
        let status = lock(&self.shared.status).clone();
        let last_upgrade = lock(&self.shared.last_upgrade).clone();
        let current_commit = self.os_updater.current_commit().await.ok().flatten();
        let upgrade = (current_commit.is_some() || last_upgrade.is_some()).then(|| {
            let (succeeded, at) = last_upgrade.map_or((None, None), |(ok, at)| {
                (Some(if ok { "succeeded" } else { "failed" }), Some(at))
            });
            UpgradeStatus {
                current_commit_id: current_commit,
                last_upgrade_status: succeeded.map(str::to_owned),
                last_upgrade_time: at,
                ..Default::default()
            }
        });
        let include_hardware = *lock(&self.shared.heartbeat_hardware);
        let hardware = if include_hardware {
            Some(self.hardware.probe().await)
        } else {
            None
        };
        Heartbeat {
            hardware,
            status: Some(
                if degraded || status.failed_version.is_some() {
                    "degraded"
                } else {
                    "up"
                }
                .to_owned(),
            ),
            version: status.config_version,
            workloads,
            upgrade,
            events: Some(events).filter(|e| !e.is_empty()),
            ..Default::default()
        }
    }

    async fn heartbeat_loop(&self) {
        let mut failures = 0u32;
        loop {
            let batch = lock(&self.shared.pending).take();
            let content = self.heartbeat_content(batch.wire_events()).await;
            let now = OffsetDateTime::now_utc();
            match self.client.heartbeat(&self.device_id, &content).await {
                Ok(()) => {
                    let after_outage = failures > 0;
                    failures = 0;
                    self.shared.count_queue(&lock(&self.shared.pending));
                    self.shared.update(|s| {
                        s.last_heartbeat = Some(HeartbeatResult::Delivered { at: now })
                    });
                    self.shared.emit(AgentEvent::HeartbeatDelivered);
                    if after_outage || batch.dropped > 0 {
                        tracing::info!(
                            events = batch.events.len(),
                            dropped = batch.dropped,
                            "delivered what was queued while the server was unreachable"
                        );
                        self.shared.emit(AgentEvent::QueueDelivered {
                            events: batch.events.len(),
                            dropped: batch.dropped,
                        });
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    self.shared.refused(error.status());
                    {
                        let mut pending = lock(&self.shared.pending);
                        pending.restore(batch);
                        self.shared.count_queue(&pending);
                    }
                    let reason = error.to_string();
                    tracing::warn!(%reason, failures, "heartbeat failed");
                    self.shared.update(|s| {
                        s.last_heartbeat = Some(HeartbeatResult::Failed {
                            at: now,
                            reason: reason.clone(),
                            consecutive_failures: failures,
                        });
                    });
                    self.shared.emit(AgentEvent::HeartbeatFailed { reason });
                }
            }
            let delay = if failures == 0 {
                jittered(*lock(&self.shared.heartbeat_period), random())
            } else {
                self.retry_delay(failures)
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shared.heartbeat_now.notified(), if failures == 0 => {}
            }
        }
    }
}

/// The heartbeat period a configuration sets, if any.
fn heartbeat_period_of(message: &DeviceConfigurationMessage) -> Option<Duration> {
    let seconds = message
        .configuration
        .as_ref()?
        .heartbeat
        .as_ref()?
        .period_seconds?;
    u64::try_from(seconds)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// Whether heartbeat settings ask for the hardware inventory in every heartbeat
/// (`hardware_profile.include`; the `delta` scope is sent in full).
fn includes_hardware(heartbeat: Option<&flotta_core::wire::HeartbeatConfiguration>) -> bool {
    heartbeat
        .and_then(|h| h.hardware_profile.as_ref())
        .and_then(|p| p.include)
        .unwrap_or(false)
}

/// `period` spread by ±10 % according to `random` (uniform over `u32`), so devices
/// started together do not stay in step.
fn jittered(period: Duration, random: u32) -> Duration {
    let fraction = f64::from(random) / f64::from(u32::MAX);
    period.mul_f64(0.9 + 0.2 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let period = Duration::from_secs(100);
        assert_eq!(jittered(period, 0), Duration::from_secs(90));
        assert_eq!(jittered(period, u32::MAX), Duration::from_secs(110));
        let mid = jittered(period, u32::MAX / 2);
        assert!(mid > Duration::from_secs(99) && mid < Duration::from_secs(101));
    }

    #[test]
    fn heartbeat_period_comes_from_the_configuration_when_positive() {
        let mut message = DeviceConfigurationMessage::default();
        assert_eq!(heartbeat_period_of(&message), None);
        message.configuration = Some(flotta_core::wire::DeviceConfiguration {
            heartbeat: Some(flotta_core::wire::HeartbeatConfiguration {
                period_seconds: Some(15),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(heartbeat_period_of(&message), Some(Duration::from_secs(15)));
        if let Some(c) = message.configuration.as_mut() {
            c.heartbeat = Some(flotta_core::wire::HeartbeatConfiguration {
                period_seconds: Some(-1),
                ..Default::default()
            });
        }
        assert_eq!(heartbeat_period_of(&message), None);
    }

    #[test]
    fn hardware_is_sent_only_when_the_profile_asks() {
        use flotta_core::wire::{HardwareProfileConfiguration, HeartbeatConfiguration};
        let with = |include| HeartbeatConfiguration {
            hardware_profile: Some(HardwareProfileConfiguration {
                include,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!includes_hardware(None));
        assert!(!includes_hardware(Some(&HeartbeatConfiguration::default())));
        assert!(!includes_hardware(Some(&with(None))));
        assert!(!includes_hardware(Some(&with(Some(false)))));
        assert!(includes_hardware(Some(&with(Some(true)))));
    }

    #[test]
    fn the_builder_names_the_missing_setting() {
        let error = Agent::builder().build().expect_err("nothing set");
        assert!(
            matches!(
                error,
                AgentError::InvalidSetting {
                    field: "server",
                    ..
                }
            ),
            "{error:?}"
        );
        let error = Agent::builder()
            .server("https://x")
            .ca_pem("pem")
            .registration_identity("c", "k")
            .device_id("a/b")
            .build()
            .expect_err("bad id");
        assert!(
            matches!(
                error,
                AgentError::InvalidSetting {
                    field: "device_id",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
