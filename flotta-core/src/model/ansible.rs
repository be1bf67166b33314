//! `EdgeConfig` and `PlaybookExecution`: Ansible playbooks run on devices.
//!
//! Field names follow Flotta's CRDs (`spec.edgePlaybook.playbooks[]` with
//! `content`, `timeoutSeconds`, `ansibleOptions`, `privilegeEscalationOptions`,
//! `requiredPrivilegeLevel`, `executionStrategy`; a `PlaybookExecution`'s
//! `spec.playbook` and `spec.executionAttempt`, its `status.conditions`). A device
//! labelled `config/device-by-config=<name>` runs the `EdgeConfig` of that name;
//! what that means (which executions exist, what a device is sent, how its reports
//! become conditions) is decided by [`crate::ansible`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ObjectMeta, PlaybookExecutionStatus, UnknownFields, impl_resource};

/// Playbooks to run on the devices labelled `config/device-by-config=<its name>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeConfig {
    /// Always `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
    /// Always `EdgeConfig`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The playbooks.
    #[serde(default)]
    pub spec: EdgeConfigSpec,
    /// Observed state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<EdgeConfigStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl_resource!(EdgeConfig, EdgeConfigSpec);

/// What an `EdgeConfig` runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeConfigSpec {
    /// The playbooks to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_playbook: Option<EdgePlaybook>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// An `EdgeConfig`'s playbooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgePlaybook {
    /// The playbooks, the first with the highest priority. flotta-rs runs one
    /// playbook per `EdgeConfig`: a list of more is refused.
    #[serde(default)]
    pub playbooks: Vec<Playbook>,
    /// The user who runs the playbook (refused: the agent runs playbooks as its own
    /// user; use `privilegeEscalationOptions` to become another).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// How many times a device tries the playbook before it reports
    /// `CompletedWithError` (beyond Flotta; copied into each execution's
    /// `spec.executionAttempt`); absent: once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_attempts: Option<i64>,
    /// The timeout of playbooks that give none (as in Flotta's sample `EdgeConfig`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// One playbook and how to run it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Playbook {
    /// The playbook's YAML, base64-encoded.
    #[serde(default)]
    pub content: String,
    /// Seconds the whole run may take (also ansible's connection timeout); the run
    /// is stopped and reported failed after it. Absent: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Options of `ansible-playbook`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ansible_options: Option<AnsibleOptions>,
    /// Privilege escalation (`--become`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privilege_escalation_options: Option<PrivilegeEscalationOptions>,
    /// Capabilities the playbook needs (refused when not empty: the agent does not
    /// change its capabilities).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_privilege_level: Option<RequiredPrivilegeLevel>,
    /// How to run it: absent or `Once` (run once per execution attempt budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_strategy: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Options of `ansible-playbook`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnsibleOptions {
    /// Check mode (`--check`): predict changes without making them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<bool>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Privilege escalation for a playbook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivilegeEscalationOptions {
    /// Whether to become another user (`--become`).
    #[serde(rename = "become", skip_serializing_if = "Option::is_none")]
    pub become_: Option<bool>,
    /// `sudo` or `su`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub become_method: Option<String>,
    /// The user to become.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub become_user: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Capabilities a playbook needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequiredPrivilegeLevel {
    /// Capabilities to add.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_add: Option<Vec<i64>>,
    /// Capabilities to drop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_drop: Option<Vec<i64>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// What the server observed of an `EdgeConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeConfigStatus {
    /// Conditions of the playbook runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_playbook_status: Option<PlaybookExecutionStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// One run of an `EdgeConfig`'s playbook on one device, named
/// `<device>-<edgeconfig>`; the server creates it and writes its status from the
/// device's reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaybookExecution {
    /// Always `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
    /// Always `PlaybookExecution`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The playbook and how often to try it.
    #[serde(default)]
    pub spec: PlaybookExecutionSpec,
    /// Conditions, one per state the device reported (`Deploying`, `Running`,
    /// `SuccessfullyCompleted`, `CompletedWithError`), the current one `True`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PlaybookExecutionStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl_resource!(PlaybookExecution, PlaybookExecutionSpec);

/// What a `PlaybookExecution` runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaybookExecutionSpec {
    /// How many times the device tries the playbook before it reports
    /// `CompletedWithError`; 0 or absent: once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_attempt: Option<i64>,
    /// The playbook.
    #[serde(default)]
    pub playbook: Playbook,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}
