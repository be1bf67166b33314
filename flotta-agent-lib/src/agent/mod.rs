//! The agent itself: [`AgentBuilder`] → [`Agent`], [`Agent::run`], and the
//! [`AgentHandle`] that observes it.
//!
//! One room per concern, each an `impl Agent` block: [`builder`] (settings),
//! [`identity`] (enrolment, registration, renewal), [`config`] (long-poll, apply,
//! rollback, the record of applied workloads), [`os_update`] (the OS update across
//! the reboot), [`heartbeat`], [`control`] (commands,
//! disconnect), [`ansible`] (playbook executions), [`metrics`] (collection and
//! remote-write push) and [`status`] (what
//! the agent shows of itself). Time is read and
//! waited on only through the agent's [`Clock`].

mod ansible;
mod builder;
mod config;
mod control;
mod data;
mod event_queue;
mod heartbeat;
mod identity;
mod logs;
mod metrics;
mod os_update;
mod status;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotta_client::{EdgeClient, Identity};
use flotta_core::enrolment::{AgentConfig, AgentPhase};

pub use builder::AgentBuilder;
pub use status::{
    AgentCounters, AgentEvent, AgentHandle, AgentStatus, AgentTiming, DataStatus, HeartbeatResult,
    LogsStatus, MetricsStatus, OsUpdateStatus,
};

use crate::clock::Clock;
use crate::error::AgentError;
use crate::hardware::HardwareProbe;
use crate::os::OsUpdater;
use crate::runtime::WorkloadRuntime;
use crate::state::{AppliedWorkloads, StateStore};
use status::Shared;

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
    /// The CAs trusted for the server: the configured ones, until the server hands
    /// out others with a certificate ([`StateItem::ServerTrust`](crate::state::StateItem)).
    ca_pem: Mutex<String>,
    /// A `caBundle` that came with the certificate being obtained, adopted once
    /// that certificate is.
    offered_trust: Mutex<Option<String>>,
    registration: Identity,
    /// The client of the run loops; it carries the device certificate once there
    /// is one.
    client: EdgeClient,
    /// Held while a configuration is applied, and by the disconnect clean-up.
    apply_lock: tokio::sync::Mutex<()>,
    state: Arc<dyn StateStore>,
    runtime: Arc<dyn WorkloadRuntime>,
    os_updater: Arc<dyn OsUpdater>,
    /// The file system and free bytes the prefetch checks first.
    prefetch_min_free: Option<(std::path::PathBuf, u64)>,
    /// What decides whether a new OS deployment stays.
    health_checks: crate::os::HealthChecks,
    hardware: Arc<dyn HardwareProbe>,
    timing: AgentTiming,
    enrolment: AgentConfig,
    net: builder::NetSettings,
    /// Where the agent reads the time and waits.
    clock: Arc<dyn Clock>,
    /// Which definition each workload was applied from (the runtimes do not say).
    applied: Mutex<AppliedWorkloads>,
    /// Roots the `spec.files` overlay may write under.
    file_roots: Vec<String>,
    /// The overlay files the agent wrote, and how it found them.
    written: Mutex<crate::files::WrittenFiles>,
    /// The device settings last applied (metrics, storage, log collection, mounts),
    /// kept for the subsystems that act on them.
    settings: Mutex<Option<flotta_core::wire::DeviceConfiguration>>,
    /// What the metrics loop does, from the configuration in force (`None`: nothing).
    metrics_plan: tokio::sync::watch::Sender<Option<Arc<crate::metrics::MetricsPlan>>>,
    /// Where the metrics buffer lives (`metrics/` in the state directory).
    metrics_dir: Option<std::path::PathBuf>,
    /// Reads the system metrics.
    system_metrics: crate::metrics::SystemCollector,
    /// Which workloads' logs go where, from the configuration in force (`None`:
    /// nothing).
    logs_plan: tokio::sync::watch::Sender<Option<Arc<crate::logs::LogsPlan>>>,
    /// Where the log cursors live (`logs/` in the state directory).
    logs_dir: Option<std::path::PathBuf>,
    /// Which workloads' files go to which bucket, from the configuration in force
    /// (`None`: nothing).
    data_plan: tokio::sync::watch::Sender<Option<Arc<crate::data::DataPlan>>>,
    /// Where the upload states live (`data/` in the state directory).
    data_dir: Option<std::path::PathBuf>,
    /// When each workload's last complete upload pass started.
    last_data_upload: Mutex<BTreeMap<String, time::OffsetDateTime>>,
    /// How often to ask for playbook executions, from the configuration in force
    /// (`None`: never).
    ansible_period: tokio::sync::watch::Sender<Option<Duration>>,
    /// Where playbooks are written and run (`ansible/` in the state directory).
    ansible_dir: std::path::PathBuf,
    /// Runs the playbooks.
    playbooks: Arc<dyn crate::ansible::PlaybookRunner>,
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

impl Agent {
    /// Starts building an agent.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::new()
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

    /// The device settings of the configuration last applied (metrics, storage, log
    /// collection, mounts), for the subsystems that act on them.
    pub fn settings(&self) -> Option<flotta_core::wire::DeviceConfiguration> {
        status::lock(&self.settings).clone()
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
            // First, so that the first heartbeat carries what a previous run queued.
            let saved_queue = self.load_event_queue().await;
            let running = async {
                self.converge_persisted().await?;
                let held = self.establish_identity().await?;
                tokio::select! {
                    result = self.identity_loop(held) => result,
                    result = self.control_loop() => result,
                    () = self.config_loop() => Ok(()),
                    () = self.heartbeat_loop() => Ok(()),
                    () = self.os_update_loop() => Ok(()),
                    () = self.metrics_loop() => Ok(()),
                    () = self.logs_loop() => Ok(()),
                    () = self.data_loop() => Ok(()),
                    () = self.ansible_loop() => Ok(()),
                }
            };
            // From the start: events queued while enrolling are kept too.
            tokio::select! {
                result = running => result,
                never = self.event_queue_loop(saved_queue) => match never {},
            }
        };
        tokio::select! {
            () = shutdown => Ok(()),
            result = work => result,
        }
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

    /// The wait after `failures` failures in a row, by [`AgentTiming::retry`].
    fn retry_delay(&self, failures: u32) -> Duration {
        self.timing
            .retry
            .delay(failures.saturating_sub(1), random())
    }
}

fn random() -> u32 {
    // A failing OS RNG only makes the jitter less random.
    getrandom::u32().unwrap_or(u32::MAX / 2)
}
