//! `EdgeDeviceSet`: configuration shared by a group of devices.
//!
//! Flotta groups devices by the `flotta/member-of: <set>` label. Beyond Flotta a
//! set may carry an explicit label `selector` and a device `template` whose string
//! values may hold parameters such as `{{ .metadata.name }}`,
//! `{{ .metadata.labels.KEY }}` or `{{ getOrDefault .metadata.labels "KEY" "DEFAULT" }}`,
//! rendered per device (rendering lives in the reconciliation layer).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Condition, ConfigFile, EdgeDeviceSpec, HeartbeatConfiguration, LabelSelector, LogCollection,
    MetricsConfiguration, Mount, ObjectMeta, OsInformation, StorageConfiguration, UnknownFields,
    impl_resource,
};

/// Label that makes a device a member of the set it names (Flotta's grouping).
pub const MEMBER_OF_LABEL: &str = "flotta/member-of";

/// A group of devices sharing configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeviceSet {
    /// Always `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
    /// Always `EdgeDeviceSet`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Shared configuration (an empty spec when absent).
    #[serde(default)]
    pub spec: EdgeDeviceSetSpec,
    /// Observed state, written by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<EdgeDeviceSetStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl_resource!(EdgeDeviceSet, EdgeDeviceSetSpec);

/// Configuration shared by the devices of a set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeviceSetSpec {
    /// Files written onto every member (beyond Flotta).
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
    /// How a change of the set reaches its members: in batches, within
    /// `maxUnavailable`, optionally with manual approval (beyond Flotta; see
    /// [`crate::reconcile::SetRevision`] for what a change is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_policy: Option<super::RolloutPolicy>,
    /// When updates are downloaded and applied (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_policy: Option<super::UpdatePolicy>,
    /// Devices that belong to the set in addition to those labelled
    /// `flotta/member-of: <set name>` (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Data upload storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfiguration>,
    /// Per-device template, rendered for each member (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<DeviceTemplate>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Template of each member's labels, annotations and device spec. String values may
/// contain parameters (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceTemplate {
    /// Labels and annotations given to each member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Device spec of each member; set-level fields take precedence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<EdgeDeviceSpec>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metadata part of a [`DeviceTemplate`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateMetadata {
    /// Labels given to each member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations given to each member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Observed state of a set (Flotta leaves it empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeviceSetStatus {
    /// Conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Number of member devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_count: Option<i64>,
    /// Generation of the spec this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Members whose `Updated` condition is `True`: they run the configuration the
    /// server renders for them (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_devices: Option<i64>,
    /// The rollout record of the set's changes (beyond Flotta): a
    /// [`RolloutRecord`](crate::reconcile::RolloutRecord) of
    /// [`SetRevision`](crate::reconcile::SetRevision)s, kept as JSON so that an
    /// unreadable one is carried, not lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::reconcile::RolloutRecord<crate::reconcile::SetRevision>>")]
    pub rollout: Option<serde_json::Value>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}
