//! `EdgeWorkload`: a pod deployed to the devices a selector (or a device name)
//! picks, with an optional staged rollout and a real status.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Condition, IntOrString, LabelSelector, ObjectMeta, ObjectRef, PodSpec, UnknownFields,
    impl_resource,
};

/// A workload deployed to devices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeWorkload {
    /// Always `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
    /// Always `EdgeWorkload`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to run and where.
    pub spec: EdgeWorkloadSpec,
    /// Observed state, written by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<EdgeWorkloadStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl_resource!(EdgeWorkload, EdgeWorkloadSpec);

/// What a workload runs and where.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeWorkloadSpec {
    /// Data transfer between the workload and the control plane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataConfiguration>,
    /// Name of the single device to deploy to (alternative to `deviceSelector`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Devices to deploy to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_selector: Option<LabelSelector>,
    /// Credentials for pulling the workload's images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_registries: Option<ImageRegistries>,
    /// Name of the device log collection target the workload logs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_collection: Option<String>,
    /// Metric scraping of the workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<WorkloadMetrics>,
    /// The pod to run.
    pub pod: WorkloadPod,
    /// How the workload reaches its devices (beyond Flotta); all at once when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_policy: Option<RolloutPolicy>,
    /// Workload type; `pod` is the only one.
    #[serde(rename = "type")]
    pub type_: String,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl EdgeWorkloadSpec {
    /// Accepted values of `type`.
    pub const TYPES: &'static [&'static str] = &["pod"];
}

/// The pod of a workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadPod {
    /// Pod spec, as Kubernetes defines it (Flotta's admission rules restrict it; see
    /// [`crate::validation`]).
    pub spec: PodSpec,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Data transfer paths of a workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataConfiguration {
    /// Paths uploaded from the device to the control plane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<DataPath>>,
    /// Paths downloaded from the control plane to the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<DataPath>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// One device-to-control-plane path mapping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataPath {
    /// Path in the workload container.
    pub source: String,
    /// Path in the control-plane storage.
    pub target: String,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Image registry credentials of a workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRegistries {
    /// Secret holding the registry auth file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectRef>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metric scraping of a workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadMetrics {
    /// ConfigMap listing the metric names to keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_list: Option<ObjectRef>,
    /// Per-container endpoints, keyed by container name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<BTreeMap<String, ContainerMetrics>>,
    /// Seconds between two scrapes (Flotta's default: 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i32>,
    /// HTTP path of the metrics endpoint (default `/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port of the metrics endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metric endpoint of one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerMetrics {
    /// Turns this container's metrics off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// HTTP path (default `/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Staged rollout of a workload (beyond Flotta, after Flight Control).
///
/// Batches run in order; each picks devices among the workload's targets that no
/// earlier batch picked. A batch's `limit` is a device count (`5`) or a percentage of
/// the targets (`"20%"`). Devices left after the last batch form a final batch. The
/// next batch starts when at least `successThreshold` of the current batch runs the
/// new revision (and, with `manualApproval`, an operator approved it). Enforced by
/// [`crate::reconcile::step_rollout`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicy {
    /// Batches, in rollout order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<Vec<RolloutBatch>>,
    /// Devices of the workload that may be unavailable at once during a rollout:
    /// a count or a percentage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Share of a batch that must be running before the next starts, as a percentage
    /// string such as `"90%"` (default `"100%"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<IntOrString>,
    /// When true, every batch after the first waits for an operator's approval
    /// (`flotta rollout approve`) once the batch before it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manual_approval: Option<bool>,
    /// Seconds a released batch may take to reach its `successThreshold`; past that the
    /// rollout pauses (`ProgressDeadlineExceeded`). No deadline when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// One batch of a [`RolloutPolicy`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RolloutBatch {
    /// Devices eligible for this batch; all remaining targets when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Most devices in this batch: a count or a percentage of the targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<IntOrString>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Observed state of a workload across its devices (beyond Flotta, which left it
/// empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeWorkloadStatus {
    /// Conditions, e.g. `Progressing`, `Available`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Index of the rollout batch in progress (0-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_batch: Option<i32>,
    /// Generation of the spec this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Devices per phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_counts: Option<WorkloadPhaseCounts>,
    /// The workload's current revision: the content hash of the definition devices
    /// are sent for `observedGeneration`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Target devices by what they run of it, compared with `revision`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<WorkloadDeviceCounts>,
    /// The rollout record the server keeps and renders from (current and previous
    /// revision, batches, pause, history): a
    /// [`RolloutRecord`](crate::reconcile::RolloutRecord), kept as JSON so that an
    /// unreadable one is carried, not lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::reconcile::RolloutRecord>")]
    pub rollout: Option<serde_json::Value>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Target devices of a workload by revision and state. Every target counts in
/// exactly one of `current`, `older`, `deploying`, `failed` and `unknown`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadDeviceCounts {
    /// Devices the workload targets.
    pub targeted: i64,
    /// Devices running the current revision.
    pub current: i64,
    /// Devices running an older revision (or one the server cannot tell).
    pub older: i64,
    /// Devices that have not reported the workload running yet.
    pub deploying: i64,
    /// Devices where the workload failed, or that failed to apply the current
    /// revision.
    pub failed: i64,
    /// Devices not heard from recently.
    pub unknown: i64,
    /// Failed devices by reason (e.g. `ApplyFailed`, `WorkloadExited`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_reasons: BTreeMap<String, i64>,
}

/// Number of target devices per workload phase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadPhaseCounts {
    /// Being deployed.
    pub deploying: i64,
    /// Running.
    pub running: i64,
    /// Failed (crashed or stopped).
    pub failed: i64,
    /// Not reported recently.
    pub unknown: i64,
}
