//! Heartbeat content and its parts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::HardwareInfo;
use crate::model::UnknownFields;

/// Content of a `heartbeat` message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    /// `up` or `degraded` (see [`Heartbeat::STATUSES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Configuration version the device runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Workloads and their status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<WorkloadStatus>>,
    /// Playbook executions and their status.
    #[serde(
        rename = "playbook-executions",
        skip_serializing_if = "Option::is_none"
    )]
    pub playbook_executions: Option<Vec<PlaybookExecutionStatus>>,
    /// OS upgrade status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeStatus>,
    /// Hardware inventory, when the heartbeat configuration asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareInfo>,
    /// Events since the last heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventInfo>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl Heartbeat {
    /// Values of `status` Flotta defines.
    pub const STATUSES: &'static [&'static str] = &["up", "degraded"];
}

/// An event produced by the device (`event-info`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventInfo {
    /// One-word subject of the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `info` or `warn`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Status of a workload on the device (`workload-status`).
///
/// `status` is a string rather than an enum: Flotta defines `deploying`, `running`,
/// `crashed`, `stopped`, but real agents send podman's states (`Running`,
/// `Created`, ...), which must survive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadStatus {
    /// Workload name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Last successful data upload (RFC 3339, as sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_data_upload: Option<String>,
    /// Workload status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Revision of the workload definition the device runs: the content hash of the
    /// `workload` it was applied from ([`crate::reconcile::fingerprint`]). Beyond
    /// Flotta, whose agents omit it; the server then goes by the configuration
    /// `version` the heartbeat reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Status of a playbook execution on the device (`playbook-execution-status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlaybookExecutionStatus {
    /// Playbook execution name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Last successful data upload (RFC 3339, as sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_data_upload: Option<String>,
    /// `Deploying`, `TargetVerification`, `Running`, `SuccessfullyCompleted` or
    /// `CompletedWithError`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What the run said: the recap (`ok=2 changed=1 failed=0 ...`) or why it
    /// failed (beyond Flotta, whose agents omit it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// OS upgrade status (`upgrade-status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpgradeStatus {
    /// Commit the device runs.
    #[serde(rename = "current_commit_ID", skip_serializing_if = "Option::is_none")]
    pub current_commit_id: Option<String>,
    /// `succeeded` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upgrade_status: Option<String>,
    /// Time of the last upgrade, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upgrade_time: Option<String>,
    /// Where the OS update under way (or the last one) stands: `Staging`,
    /// `Staged`, `Rebooting`, `HealthCheck`, `Committed`, `RollingBack`,
    /// `RollbackRebooting`, `RolledBack`, `Failed` (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The commit or image the update is for (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why the update failed, with the failing check's output, or what it waits
    /// for (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A playbook to run on the device (`playbook-execution`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlaybookExecution {
    /// Last successful data upload (RFC 3339, as sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_data_upload: Option<String>,
    /// Playbook execution name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The playbook, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ansible_playbook_string: Option<String>,
    /// Seconds the run may take, and ansible's connection timeout (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Check mode, `--check` (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<bool>,
    /// Privilege escalation, `--become` (beyond Flotta).
    #[serde(rename = "become", skip_serializing_if = "Option::is_none")]
    pub become_: Option<bool>,
    /// `sudo` or `su` (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub become_method: Option<String>,
    /// The user to become (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub become_user: Option<String>,
    /// How many times to try before reporting `CompletedWithError` (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
    /// Content hash of the playbook and its options (beyond Flotta): a device
    /// runs an execution again only when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}
