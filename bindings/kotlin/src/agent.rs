//! The embeddable device agent: thin wrappers over `flotta_agent_lib::Agent`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::{AgentTiming, HeartbeatResult};
use flotta_core::enrolment::AgentConfig;
use tokio::sync::{Mutex, Notify, broadcast};

use crate::error::FlottaError;
use crate::os::{ForeignOsUpdater, OsUpdater};
use crate::runtime::{ForeignRuntime, WorkloadRuntime};

/// What an agent needs: the Edge API, the fleet's registration identity, who the
/// device is and where it keeps state. Durations are in milliseconds; `None` keeps
/// the library default.
#[derive(Debug, Clone, uniffi::Record)]
pub struct AgentSettings {
    /// Base URL of the Edge API, `https://host:port`.
    pub server: String,
    /// PEM of the CA that signs the server's certificate.
    pub ca_pem: String,
    /// The fleet-wide registration certificate, PEM.
    pub registration_certificate_pem: String,
    /// The registration certificate's private key, PEM.
    pub registration_key_pem: String,
    /// The device id: the `EdgeDevice` name and certificate CN.
    pub device_id: String,
    /// Directory for the device key, certificate and configuration.
    pub state_dir: String,
    /// Namespace the device asks to join (`default` when `None`).
    #[uniffi(default = None)]
    pub namespace: Option<String>,
    /// Labels the device reports about itself at enrolment.
    #[uniffi(default)]
    pub labels: HashMap<String, String>,
    /// Heartbeat period until the configuration sets one (default 60 s).
    #[uniffi(default = None)]
    pub heartbeat_period_ms: Option<u64>,
    /// How long one configuration long-poll waits on the server (default 60 s).
    #[uniffi(default = None)]
    pub config_wait_ms: Option<u64>,
    /// First delay after a failure, doubled per failure (default 1 s).
    #[uniffi(default = None)]
    pub retry_initial_ms: Option<u64>,
    /// Largest delay after failures (default 300 s).
    #[uniffi(default = None)]
    pub retry_max_ms: Option<u64>,
}

impl AgentSettings {
    fn timing(&self) -> AgentTiming {
        let defaults = AgentTiming::default();
        let ms =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
        defaults
            .with_heartbeat_period(ms(self.heartbeat_period_ms, defaults.heartbeat_period))
            .with_config_wait(ms(self.config_wait_ms, defaults.config_wait))
            .with_retry(
                ms(self.retry_initial_ms, defaults.retry.initial),
                ms(self.retry_max_ms, defaults.retry.max),
            )
    }

    fn enrolment(&self) -> AgentConfig {
        AgentConfig {
            backoff: self.timing().retry,
            ..AgentConfig::default()
        }
    }
}

/// A snapshot of the agent's state.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AgentStatus {
    /// Enrolment phase (`Enrolling`, `Registering`, `AwaitingApproval`, `Running`,
    /// `Renewing`), `None` before `run` reads the persisted state.
    pub phase: Option<String>,
    /// Version of the configuration the device runs.
    pub config_version: Option<String>,
    /// A version whose apply failed and that is not tried again.
    pub failed_version: Option<String>,
    /// Whether the last heartbeat was delivered (`None`: none sent yet).
    pub last_heartbeat_delivered: Option<bool>,
    /// Phase of the OS update in progress or last finished (`Staging`, `Staged`,
    /// `Rebooting`, `HealthCheck`, `Committed`, `RollingBack`,
    /// `RollbackRebooting`, `RolledBack`, `Failed`), `None` when there was none.
    pub os_update_phase: Option<String>,
    /// Its target commit or image.
    pub os_update_target: Option<String>,
    /// What happened, e.g. the failing health check's output.
    pub os_update_message: Option<String>,
}

impl From<flotta_agent_lib::AgentStatus> for AgentStatus {
    fn from(status: flotta_agent_lib::AgentStatus) -> Self {
        Self {
            phase: status.phase.map(|p| p.as_str().to_owned()),
            config_version: status.config_version,
            failed_version: status.failed_version,
            last_heartbeat_delivered: status
                .last_heartbeat
                .map(|h| matches!(h, HeartbeatResult::Delivered { .. })),
            os_update_phase: status
                .os_update
                .as_ref()
                .map(|os| os.phase.as_str().to_owned()),
            os_update_target: status.os_update.as_ref().map(|os| os.target.clone()),
            os_update_message: status.os_update.and_then(|os| os.message),
        }
    }
}

/// Something the agent did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum AgentEvent {
    /// The enrolment phase changed.
    PhaseChanged {
        /// The new phase, e.g. `Running`.
        phase: String,
    },
    /// The device got a new certificate.
    Registered,
    /// The agent started with a persisted certificate.
    Resumed,
    /// A configuration was applied completely.
    ConfigApplied {
        /// Its version.
        version: String,
    },
    /// A configuration could not be applied; it is not tried again.
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
        /// The version now in force (empty: none was ever good).
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
    /// Events were dropped because the subscriber fell behind.
    Lagged {
        /// How many.
        missed: u64,
    },
    /// An event of a newer library version.
    Other {
        /// Its debug text.
        description: String,
    },
}

impl From<flotta_agent_lib::AgentEvent> for AgentEvent {
    fn from(event: flotta_agent_lib::AgentEvent) -> Self {
        use flotta_agent_lib::AgentEvent as E;
        match event {
            E::PhaseChanged(phase) => Self::PhaseChanged {
                phase: phase.as_str().to_owned(),
            },
            E::Registered => Self::Registered,
            E::Resumed => Self::Resumed,
            E::ConfigApplied { version } => Self::ConfigApplied { version },
            E::ApplyFailed { version, reason } => Self::ApplyFailed { version, reason },
            E::RolledBack {
                failed_version,
                to_version,
                complete,
            } => Self::RolledBack {
                failed_version,
                to_version,
                complete,
            },
            E::HeartbeatDelivered => Self::HeartbeatDelivered,
            E::HeartbeatFailed { reason } => Self::HeartbeatFailed { reason },
            other => Self::Other {
                description: format!("{other:?}"),
            },
        }
    }
}

/// The agent's events from the moment of `Agent::subscribe`.
#[derive(uniffi::Object)]
pub struct AgentEvents {
    inner: Mutex<broadcast::Receiver<flotta_agent_lib::AgentEvent>>,
}

impl std::fmt::Debug for AgentEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEvents").finish_non_exhaustive()
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl AgentEvents {
    /// The next event; `None` once the agent is gone.
    pub async fn next(&self) -> Option<AgentEvent> {
        match self.inner.lock().await.recv().await {
            Ok(event) => Some(event.into()),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(AgentEvent::Lagged { missed }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The device agent: enrols, then keeps the device's workloads converged on the
/// configuration the server sends, through the given `WorkloadRuntime`, reporting
/// heartbeats.
#[derive(uniffi::Object)]
pub struct Agent {
    inner: Arc<flotta_agent_lib::Agent>,
    stop: Arc<Notify>,
}

/// A task aborted when its handle is dropped: a cancelled `run` stops the agent.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Agent {
    fn build(
        settings: AgentSettings,
        runtime: Arc<dyn WorkloadRuntime>,
        os_updater: Option<Arc<dyn OsUpdater>>,
    ) -> Result<Arc<Self>, FlottaError> {
        let mut builder = flotta_agent_lib::Agent::builder()
            .server(settings.server.clone())
            .ca_pem(settings.ca_pem.clone())
            .registration_identity(
                settings.registration_certificate_pem.clone(),
                settings.registration_key_pem.clone(),
            )
            .device_id(settings.device_id.clone())
            .namespace(
                settings
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            )
            .state_dir(settings.state_dir.clone())
            .runtime(Arc::new(ForeignRuntime::new(runtime)))
            .timing(settings.timing())
            .enrolment_config(settings.enrolment());
        if let Some(updater) = os_updater {
            builder = builder.os_updater(Arc::new(ForeignOsUpdater::new(updater)));
        }
        for (key, value) in &settings.labels {
            builder = builder.label(key.clone(), value.clone());
        }
        Ok(Arc::new(Self {
            inner: Arc::new(builder.build()?),
            stop: Arc::new(Notify::new()),
        }))
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Agent {
    /// Checks the settings and builds the agent (it does nothing until `run`).
    #[uniffi::constructor]
    pub fn new(
        settings: AgentSettings,
        runtime: Arc<dyn WorkloadRuntime>,
    ) -> Result<Arc<Self>, FlottaError> {
        Self::build(settings, runtime, None)
    }

    /// As `new`, with the device's OS updated through `osUpdater` (the agent owns
    /// the sequence and persists it across the reboot; see `OsUpdater`).
    #[uniffi::constructor]
    pub fn with_os_updater(
        settings: AgentSettings,
        runtime: Arc<dyn WorkloadRuntime>,
        os_updater: Arc<dyn OsUpdater>,
    ) -> Result<Arc<Self>, FlottaError> {
        Self::build(settings, runtime, Some(os_updater))
    }

    /// The device id.
    pub fn device_id(&self) -> String {
        self.inner.device_id().to_owned()
    }

    /// The agent's state now (does not block).
    pub fn status(&self) -> AgentStatus {
        self.inner.handle().status().into()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> Arc<AgentEvents> {
        Arc::new(AgentEvents {
            inner: Mutex::new(self.inner.handle().subscribe()),
        })
    }

    /// Runs until `stop` is called (or the calling coroutine is cancelled): enrols
    /// or resumes, then long-polls the configuration, applies it through the
    /// runtime and sends heartbeats. A server that is down is retried, never fatal;
    /// errors are unusable persisted state only.
    pub async fn run(&self) -> Result<(), FlottaError> {
        let agent = Arc::clone(&self.inner);
        let stop = Arc::clone(&self.stop);
        // The agent runs as a task of the tokio runtime, on its threads' stacks, not
        // polled on the calling JVM thread, whose stack is too small for the
        // agent's future in a debug build (the JVM dies with SIGSEGV).
        let mut task = AbortOnDrop(tokio::spawn(
            async move { agent.run(stop.notified()).await },
        ));
        match (&mut task.0).await {
            Ok(result) => Ok(result?),
            Err(error) => Err(FlottaError::Agent(format!("the agent task ended: {error}"))),
        }
    }

    /// Asks a running `run` to return. Does not block. A `stop` before `run` makes
    /// the next `run` return at once.
    pub fn stop(&self) {
        self.stop.notify_one();
    }
}
