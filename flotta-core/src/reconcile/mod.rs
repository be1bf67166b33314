//! Reconciliation: pure functions from resources to what a device should run, and
//! from what devices report back to resource status.
//!
//! - [`plan`](mod@plan): current/desired/observed → ordered [`Action`]s, [`apply_to`].
//! - [`render`]: device, sets, workloads, secrets, config maps → [`RenderedConfig`].
//! - [`status`]: heartbeats → `EdgeDevice.status` (with conditions) and
//!   `EdgeWorkload.status` (devices by revision).
//! - [`set_status`]: devices → `EdgeDeviceSet.status`.
//! - [`hardware_labels`](mod@hardware_labels): hardware reports → `device.*` labels.
//! - [`member_metadata`](mod@member_metadata): a set's `template.metadata` → its members' labels and annotations.
//! - [`template`]: device-set template parameters (`{{ .metadata.name }}`, ...).
//! - [`version`]: the configuration version, a content hash ([`ConfigVersion`]).
//! - [`rollout`]: staged rollouts of a workload ([`decide_rollout`]).
//! - [`revision`]: workload revisions and the enforced rollout between them
//!   ([`step_rollout`], [`assigned_revision`]).
//!
//! ```
//! use flotta_core::model::{EdgeDevice, EdgeWorkload};
//! use flotta_core::reconcile::{Action, ObservedState, apply_to, plan, render_device_config};
//!
//! let device: EdgeDevice = serde_yaml_ng::from_str(
//!     "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDevice\n\
//!      metadata: {name: cam-1, labels: {app: camera}}\nspec: {}\n",
//! )?;
//! let workload: EdgeWorkload = serde_yaml_ng::from_str(
//!     "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\n\
//!      metadata: {name: recorder}\nspec:\n  type: pod\n  \
//!      deviceSelector: {matchLabels: {app: camera}}\n  \
//!      pod: {spec: {containers: [{name: rec, image: 'registry.local/rec:1'}]}}\n",
//! )?;
//!
//! let empty = render_device_config(&device, &[], &[], &[], &[]);
//! let desired = render_device_config(&device, &[], &[workload], &[], &[]);
//! assert!(!desired.has_errors());
//! assert_ne!(empty.version, desired.version);
//!
//! let observed = ObservedState::from_config(&empty);
//! let actions = plan(&empty, &desired, &observed);
//! assert!(matches!(actions.as_slice(), [Action::StartWorkload { .. }]));
//! let after = apply_to(&observed, &actions);
//! assert!(plan(&desired, &desired, &after).is_empty());
//! # Ok::<(), serde_yaml_ng::Error>(())
//! ```

pub mod files;
pub mod hardware_labels;
pub mod inputs;
pub mod member_metadata;
pub mod plan;
pub mod render;
pub mod revision;
pub mod rollout;
pub mod set_status;
pub mod status;
pub mod template;
pub mod version;

pub use files::{
    DEFAULT_FILE_MODE, DEFAULT_FILE_ROOTS, FileError, FileWrite, check_path, file_write,
};
pub use hardware_labels::{HARDWARE_LABEL_KEYS, hardware_labels, relabel_from_hardware};
pub use inputs::{
    ContainerInputs, InputError, SecretData, VolumeFile, VolumeFiles, WorkloadInputs, expand,
};
pub use member_metadata::{DeviceMetadata, TEMPLATE_KEYS_ANNOTATION, apply_template_metadata};
pub use plan::{
    Action, ObservedOs, ObservedState, ObservedWorkload, apply_to, fingerprint, plan,
    rollback_plan, secrets_read_by,
};
pub use render::{
    CONFIG_RENDERED_CONDITION, DEFAULT_HEARTBEAT_PERIOD_SECONDS, DEFAULT_MAX_SILENCE_SECONDS,
    LAST_RESOLVED_SPEC_FIELD, MAX_LONG_POLL_SECONDS, ObjectUses, PreparedWorkload, ProblemReason,
    REFERENCES_RESOLVED_CONDITION, RenderProblem, RenderedConfig, ServedConfig, ServedSource,
    claiming_sets, is_member, keep_last_good, longest_long_poll_seconds,
    prepare_with_last_resolved, prepare_workload, references_condition, render_device_config,
    render_device_config_for_workloads, render_device_config_prepared, workload_targets,
};
pub use revision::{
    APPROVED_ANNOTATION, AssignedRevision, BatchRecord, PAUSED_ANNOTATION, REVISION_HISTORY_LIMIT,
    ROLLOUT_ANNOTATION_PREFIX, ROLLOUT_STATUS_FIELD, RevisionEntry, RolloutChanges,
    RolloutControls, RolloutRecord, RolloutSubject, RolloutTarget, SetRevision, WorkloadRevision,
    approve_next_batch, assigned_revision, for_device, step_rollout, workload_for_device,
};
pub use rollout::{
    BatchProgress, RolloutDecision, RolloutDevice, RolloutError, RolloutState, RolloutStatus,
    decide_rollout,
};
pub use set_status::{device_set_status, set_member_state, set_rollout_targets};
pub use status::{
    DeviceWorkloadState, WorkloadReport, age_device_status, device_conditions, device_status_at,
    device_status_from_heartbeat, is_stale, offline_at, workload_status,
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
