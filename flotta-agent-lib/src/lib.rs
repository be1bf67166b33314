#![doc = include_str!("../README.md")]

mod agent;
mod command;
mod error;
pub mod hardware;
mod offline;
pub mod os;
pub mod runtime;
pub mod state;

pub use agent::{
    Agent, AgentBuilder, AgentEvent, AgentHandle, AgentStatus, AgentTiming, HeartbeatResult,
};
pub use error::AgentError;
pub use hardware::{HardwareProbe, ProcHardwareProbe};
pub use offline::{DEFAULT_OFFLINE_QUEUE_CAPACITY, EVENTS_DROPPED_REASON};
pub use os::{BootcUpdater, NoOsUpdater, OsError, OsHealth, OsUpdater, RpmOstreeUpdater};
pub use runtime::{
    MemoryRuntime, PodmanOptions, PodmanRuntime, ProcessOptions, ProcessRuntime, RuntimeError,
    WorkloadRuntime, WorkloadState,
};
pub use state::{
    FileStateStore, PersistedConfig, PersistedIdentity, StateError, StateItem, StateStore,
};

/// The enrolment phase reported in [`AgentStatus::phase`] and
/// [`AgentEvent::PhaseChanged`].
pub use flotta_core::enrolment::AgentPhase;
