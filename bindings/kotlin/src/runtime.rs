//! `WorkloadRuntime` implemented in Kotlin: a uniffi foreign trait, bridged to
//! `flotta_agent_lib::WorkloadRuntime`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use flotta_agent_lib::{RuntimeError, WorkloadState};
use flotta_core::reconcile;
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
    /// Each container's environment, resolved from its config maps and secrets.
    pub containers: Vec<ContainerEnv>,
    /// The files of its `configMap` and `secret` volumes.
    pub volumes: Vec<VolumeFiles>,
    /// Registry credentials (a `containers-auth.json` text), when it has its own.
    pub auth_file: Option<String>,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Value (may come from a secret: do not log it).
    pub value: String,
}

/// A container's resolved environment.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ContainerEnv {
    /// Container name.
    pub name: String,
    /// Variables in definition order.
    pub env: Vec<EnvVar>,
}

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VolumeFile {
    /// Path relative to the volume's root.
    pub path: String,
    /// Content.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// The files of one `configMap` or `secret` volume.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VolumeFiles {
    /// Volume name.
    pub name: String,
    /// Whether it comes from a secret.
    pub secret: bool,
    /// Its files.
    pub files: Vec<VolumeFile>,
}

impl Workload {
    /// The record of `workload` with its resolved `inputs`.
    fn resolved(workload: &wire::Workload, inputs: &reconcile::WorkloadInputs) -> Self {
        Self {
            containers: inputs
                .containers
                .iter()
                .map(|c| ContainerEnv {
                    name: c.name.clone(),
                    env: c
                        .env
                        .iter()
                        .map(|(name, value)| EnvVar {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
                .collect(),
            volumes: inputs
                .volumes
                .iter()
                .map(|v| VolumeFiles {
                    name: v.name.clone(),
                    secret: v.secret,
                    files: v
                        .files
                        .iter()
                        .map(|f| VolumeFile {
                            path: f.path.clone(),
                            content: f.content.clone(),
                            mode: f.mode,
                        })
                        .collect(),
                })
                .collect(),
            auth_file: inputs.auth_file.clone(),
            ..Self::from(workload)
        }
    }
}

impl From<&wire::Workload> for Workload {
    fn from(workload: &wire::Workload) -> Self {
        Self {
            containers: Vec::new(),
            volumes: Vec::new(),
            auth_file: None,
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
    /// Its phase.
    pub phase: WorkloadPhase,
}

impl From<RuntimeWorkload> for WorkloadState {
    fn from(workload: RuntimeWorkload) -> Self {
        Self {
            name: workload.name,
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
/// workload with its phase. Which definition each workload was applied from is the
/// agent's bookkeeping. Calls may come concurrently.
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
        self.apply_with(workload, &reconcile::WorkloadInputs::default())
            .await
    }

    async fn apply_with(
        &self,
        workload: &wire::Workload,
        inputs: &reconcile::WorkloadInputs,
    ) -> Result<(), RuntimeError> {
        let record = Workload::resolved(workload, inputs);
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
