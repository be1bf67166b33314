//! Reconciliation: pure functions from resources to what a device should run, and
//! from what devices report back to resource status.
//!
//! - [`render`]: device, sets, workloads, secrets, config maps → [`RenderedConfig`].
//! - [`template`]: device-set template parameters (`{{ .metadata.name }}`, ...).
//! - [`version`]: the configuration version, a content hash ([`ConfigVersion`]).
//! - [`rollout`]: staged rollouts of a workload ([`decide_rollout`]).

pub mod render;
pub mod rollout;
pub mod template;
pub mod version;

pub use render::{
    CONFIG_RENDERED_CONDITION, DEFAULT_HEARTBEAT_PERIOD_SECONDS, ProblemReason, RenderProblem,
    RenderedConfig, is_member, render_device_config, render_device_config_for_workloads,
    workload_targets,
};
pub use rollout::{
    BatchProgress, RolloutDecision, RolloutDevice, RolloutError, RolloutState, RolloutStatus,
    decide_rollout,
};
pub use template::{TemplateError, TemplateFieldError, render_template_string};
pub use version::{ConfigVersion, SET_LIKE_ARRAYS};

/// Errors of the reconciliation layer that are not reported as render problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// A configuration could not be encoded as JSON (for hashing or embedding).
    #[error("could not encode the configuration as JSON")]
    Encode(#[source] serde_json::Error),
}

/// Phase of one workload on one device, as the server sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadPhase {
    /// Being created, started or pulled.
    Deploying,
    /// Running.
    Running,
    /// Crashed, exited or refused.
    Failed,
    /// Not reported, or the device has not been heard from recently.
    #[default]
    Unknown,
}

impl WorkloadPhase {
    /// Maps a phase string reported by a device (Flotta's agent reports podman's
    /// states: `Running`, `Created`, `Exited`, `Dead`, ...) to a phase.
    pub fn from_reported(phase: &str) -> Self {
        match phase.to_ascii_lowercase().as_str() {
            "running" => Self::Running,
            "deploying" | "created" | "creating" | "starting" | "pending" | "pulling"
            | "restarting" | "configured" | "initialized" => Self::Deploying,
            "failed" | "exited" | "dead" | "error" | "degraded" | "stopped" | "crashed" => {
                Self::Failed
            }
            _ => Self::Unknown,
        }
    }

    /// The phase as written in status: `Deploying`, `Running`, `Failed` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploying => "Deploying",
            Self::Running => "Running",
            Self::Failed => "Failed",
            Self::Unknown => "Unknown",
        }
    }
}
