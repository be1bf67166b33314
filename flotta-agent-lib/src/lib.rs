#![doc = include_str!("../README.md")]

mod agent;
pub mod ansible;
pub mod clock;
mod command;
pub mod data;
mod error;
pub mod files;
pub mod hardware;
pub mod logs;
pub mod metrics;
mod offline;
pub mod os;
pub mod runtime;
pub mod state;

pub use agent::{
    Agent, AgentBuilder, AgentCounters, AgentEvent, AgentHandle, AgentStatus, AgentTiming,
    DataStatus, HeartbeatResult, LogsStatus, MetricsStatus, OsUpdateStatus,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AgentError;
pub use hardware::{HardwareProbe, ProcHardwareProbe};
pub use offline::{DEFAULT_OFFLINE_QUEUE_CAPACITY, EVENTS_DROPPED_REASON, PersistedEventQueue};
pub use os::{
    BootcUpdater, BootedOs, Deployment, HealthChecks, NoOsUpdater, OsError, OsHealth,
    OsUpdatePhase, OsUpdateRecord, OsUpdater, RpmOstreeUpdater,
};
pub use runtime::{
    LogFormat, MemoryRuntime, PodmanOptions, PodmanRuntime, ProcessOptions, ProcessRuntime,
    RuntimeError, WorkloadRuntime, WorkloadState,
};
pub use state::{
    AppliedWorkloads, FileStateStore, PersistedConfig, PersistedIdentity, StateError, StateItem,
    StateStore,
};

/// The enrolment phase reported in [`AgentStatus::phase`] and
/// [`AgentEvent::PhaseChanged`].
pub use flotta_core::enrolment::AgentPhase;
