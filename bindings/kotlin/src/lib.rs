#![doc = include_str!("../README.md")]
// The uniffi scaffolding is `extern "C"` functions and raw-pointer handling, generated
// by its macros; this crate is the only one where unsafe code is allowed (see
// Cargo.toml's lint table).

mod agent;
mod client;
mod error;
mod manifest;
mod os;
mod runtime;
mod selector;

pub use agent::{Agent, AgentEvent, AgentEvents, AgentSettings, AgentStatus};
pub use client::{
    ApplyAction, ApplyOutcome, ManagementClient, WatchEvent, WatchEventType, WatchStream,
};
pub use error::FlottaError;
pub use manifest::{
    DeviceStatus, DeviceWorkload, FieldProblem, Resource, ResourceKind, ResourceKindInfo,
    manifests_to_yaml, parse_manifests, resource_kind_named, resource_kinds,
};
pub use os::{OsDeployment, OsDeployments, OsTarget, OsUpdater, OsUpdaterError};
pub use runtime::{
    RuntimeWorkload, Workload, WorkloadPhase, WorkloadRuntime, WorkloadRuntimeError,
};
pub use selector::{FieldSelector, Selector};

uniffi::setup_scaffolding!();
