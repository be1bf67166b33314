//! `WorkloadRuntime` implemented in Kotlin: a uniffi foreign trait, bridged to
//! `flotta_agent_lib::WorkloadRuntime`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use flotta_agent_lib::{RuntimeError, WorkloadState};
use flotta_core::reconcile::{self, ConfigVersion, fingerprint};
use flotta_core::wire;

/// A workload the agent asks the runtime to run.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Workload {
    /// Workload name, unique on the device.
    pub name: String,
    /// Namespace of the `EdgeWorkload` it comes from.
    pub namespace: Option<String>,
    /// Workload labels.
    pub labels: HashMap<String, String>,
    /// Workload annotations.
    pub annotations: HashMap<String, String>,
    /// The pod spec as Kubernetes YAML text.
    pub specification: String,
    /// ConfigMaps the workload uses, each as Kubernetes YAML text.
    pub configmaps: Vec<String>,
    /// Identifies this definition: report it back from `list` while running it.
    pub fingerprint: String,
}

impl From<&wire::Workload> for Workload {
    fn from(workload: &wire::Workload) -> Self {
        Self {
            name: workload.name.clone().unwrap_or_default(),
            namespace: workload.namespace.clone(),
            labels: workload
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            annotations: workload
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            specification: workload.specification.clone().unwrap_or_default(),
            configmaps: workload.configmaps.clone().unwrap_or_default(),
            fingerprint: fingerprint(workload).as_str().to_owned(),
        }
    }
}

/// The phase of a workload on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum WorkloadPhase {
    /// Being created, started or pulled.
    Deploying,
    /// Running.
    Running,
    /// Crashed, exited or refused.
    Failed,
    /// Not known.
    Unknown,
}

impl From<WorkloadPhase> for reconcile::WorkloadPhase {
    fn from(phase: WorkloadPhase) -> Self {
        match phase {
            WorkloadPhase::Deploying => Self::Deploying,
            WorkloadPhase::Running => Self::Running,
            WorkloadPhase::Failed => Self::Failed,
            WorkloadPhase::Unknown => Self::Unknown,
        }
    }
}

/// One workload as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RuntimeWorkload {
    /// Workload name.
    pub name: String,
    /// The `fingerprint` of the [`Workload`] it was applied from; `None` for a
    /// workload the agent did not start (left alone).
    pub fingerprint: Option<String>,
    /// Its phase.
    pub phase: WorkloadPhase,
}

impl From<RuntimeWorkload> for WorkloadState {
    fn from(workload: RuntimeWorkload) -> Self {
        Self {
            name: workload.name,
            fingerprint: workload.fingerprint.map(ConfigVersion::from_received),
            phase: workload.phase.into(),
        }
    }
}

/// Why a runtime could not do what it was asked. Kotlin implementations throw
/// `WorkloadRuntimeException.Failed(reason)`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum WorkloadRuntimeError {
    /// The runtime failed; `reason` says why.
    #[error("{reason}")]
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for WorkloadRuntimeError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed {
            reason: format!(
                "the runtime threw an unexpected exception: {}",
                error.reason
            ),
        }
    }
}

/// Runs the workloads of a device, implemented by the embedding application.
///
/// Contract (as `flotta_agent_lib::WorkloadRuntime`): `apply` runs exactly this
/// definition under the workload's name, replacing an earlier one, and fails without
/// keeping a half-started copy; `remove` is idempotent; `list` reports every
/// workload with the fingerprint it was applied from. Calls may come concurrently.
#[uniffi::export(with_foreign)]
#[async_trait]
pub trait WorkloadRuntime: Send + Sync {
    /// Starts `workload`, or replaces the running workload of the same name.
    async fn apply(&self, workload: Workload) -> Result<(), WorkloadRuntimeError>;
    /// Stops and removes the workload `name`.
    async fn remove(&self, name: String) -> Result<(), WorkloadRuntimeError>;
    /// Every workload the runtime has.
    async fn list(&self) -> Result<Vec<RuntimeWorkload>, WorkloadRuntimeError>;
}

/// A foreign runtime seen as the agent library's runtime.
pub(crate) struct ForeignRuntime {
    inner: Arc<dyn WorkloadRuntime>,
}

impl ForeignRuntime {
    pub(crate) fn new(inner: Arc<dyn WorkloadRuntime>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl flotta_agent_lib::WorkloadRuntime for ForeignRuntime {
    async fn apply(&self, workload: &wire::Workload) -> Result<(), RuntimeError> {
        let record = Workload::from(workload);
        if record.name.is_empty() {
            return Err(RuntimeError::UnnamedWorkload);
        }
        let name = record.name.clone();
        self.inner
            .apply(record)
            .await
            .map_err(|e| RuntimeError::ApplyFailed {
                name,
                reason: e.to_string(),
                source: None,
            })
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.inner
            .remove(name.to_owned())
            .await
            .map_err(|e| RuntimeError::RemoveFailed {
                name: name.to_owned(),
                reason: e.to_string(),
            })
    }

    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError> {
        let mut workloads: Vec<WorkloadState> = self
            .inner
            .list()
            .await
            .map_err(|e| RuntimeError::ListFailed {
                reason: e.to_string(),
            })?
            .into_iter()
            .map(WorkloadState::from)
            .collect();
        // The agent library expects the list sorted by name.
        workloads.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(workloads)
    }
}
