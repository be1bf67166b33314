//! `EdgeDevice`: one registered device, its desired configuration and its observed
//! state.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Condition, ConfigFile, Hardware, HeartbeatConfiguration, LogCollection, MetricsConfiguration,
    Mount, ObjectMeta, OsInformation, StorageConfiguration, Time, UnknownFields, impl_resource,
};

/// A registered edge device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDevice {
    /// Always `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
    /// Always `EdgeDevice`.
    pub kind: String,
    /// Object metadata; the name is the device id.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired configuration (an empty spec when absent).
    #[serde(default)]
    pub spec: EdgeDeviceSpec,
    /// Observed state, written by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<EdgeDeviceStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl_resource!(EdgeDevice, EdgeDeviceSpec);

/// Desired configuration of one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeviceSpec {
    /// Files written onto the device (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ConfigFile>>,
    /// Heartbeat configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatConfiguration>,
    /// Log collection targets by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_collection: Option<LogCollection>,
    /// Metric collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfiguration>,
    /// Block devices to mount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    /// Target operating system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_information: Option<OsInformation>,
    /// When updates are downloaded and applied (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_policy: Option<super::UpdatePolicy>,
    /// Time of the device's registration request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_time: Option<Time>,
    /// Data upload storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfiguration>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Observed state of one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeviceStatus {
    /// Conditions computed by the server (beyond Flotta): `Online`, `Updated`,
    /// `Degraded`, `SpecValid`, `MultipleOwners` (see
    /// [`crate::reconcile::status::device_condition`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Playbook executions on the device.
    #[serde(rename = "PlaybookExec", skip_serializing_if = "Option::is_none")]
    pub playbook_exec: Option<Vec<PlaybookExec>>,
    /// Name of the device's ObjectBucketClaim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_obc: Option<String>,
    /// Revision of its device set (see [`crate::reconcile::SetRevision`]) in the
    /// configuration the device reports running, when known (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_set_revision: Option<String>,
    /// Hardware inventory last reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    /// When the server last heard from the device (beyond Flotta). Stamped by the
    /// server on receipt; the device's own clock is never trusted for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// Resource version of the configuration the device last acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_synced_resource_version: Option<String>,
    /// Device phase as reported, e.g. `up` or `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// OS upgrade state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_information: Option<UpgradeInformation>,
    /// Workloads on the device and their phases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<DeviceWorkloadStatus>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// One playbook execution reported by a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlaybookExec {
    /// Name of the playbook execution.
    pub name: String,
    /// Its observed state.
    #[serde(
        rename = "PlaybookExecutionStatus",
        skip_serializing_if = "Option::is_none"
    )]
    pub playbook_execution_status: Option<PlaybookExecutionStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Observed state of a playbook execution.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlaybookExecutionStatus {
    /// Conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<StatusCondition>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A condition in Flotta's own shape, where only `type` and `status` are required
/// (unlike Kubernetes' `Condition`, which also requires `reason`, `message` and
/// `lastTransitionTime`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCondition {
    /// When the condition last changed status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Human-readable detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// One-word reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// OS upgrade state of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeInformation {
    /// Commit the device runs.
    #[serde(rename = "currentCommitID")]
    pub current_commit_id: String,
    /// `succeeded` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upgrade_status: Option<String>,
    /// Time of the last upgrade, as reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upgrade_time: Option<String>,
    /// Where the OS update stands, as the device reports it (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The commit or image the update is for (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why the update failed or what it waits for (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Phase of one workload on one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceWorkloadStatus {
    /// Last successful data upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_data_upload: Option<Time>,
    /// When the phase last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Workload name.
    pub name: String,
    /// Phase, e.g. `Running`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Revision of the workload the device runs (content hash of its definition),
    /// as the device reports it or as the server infers it from the configuration
    /// version the device runs (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}
