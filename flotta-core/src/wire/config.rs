//! The device configuration message (`GET /data/{id}/in`, directive `device`) and
//! every section of it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{FileEncoding, UnknownFields};

use super::MountInfo;

/// Content of a `device` message: everything a device should run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceConfigurationMessage {
    /// Device id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Configuration version (a content hash in flotta-rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Device-level configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<DeviceConfiguration>,
    /// Workloads to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<Workload>>,
    /// Seconds between two workload health evaluations, greater than 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads_monitoring_interval: Option<i64>,
    /// Secrets the workloads use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<Secret>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Device-level configuration (`device-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceConfiguration {
    /// Ansible manager.
    #[serde(rename = "ansible-manager", skip_serializing_if = "Option::is_none")]
    pub ansible_manager: Option<AnsibleManagerConfiguration>,
    /// Heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatConfiguration>,
    /// Data upload storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfiguration>,
    /// Metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfiguration>,
    /// Operating system target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInformation>,
    /// When updates are downloaded and applied (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_policy: Option<UpdatePolicy>,
    /// Log collection targets by name.
    #[serde(rename = "log-collection", skip_serializing_if = "Option::is_none")]
    pub log_collection: Option<BTreeMap<String, LogsCollectionInformation>>,
    /// Block devices to mount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<MountInfo>>,
    /// Files to write (beyond Flotta; Flotta agents ignore it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileInfo>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Ansible manager configuration (`ansible-manager-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnsibleManagerConfiguration {
    /// Seconds between two playbook polls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Heartbeat configuration (`heartbeat-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatConfiguration {
    /// Seconds between two heartbeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
    /// Hardware information carried by heartbeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_profile: Option<HardwareProfileConfiguration>,
    /// Seconds the configuration long-poll waits (beyond Flotta): the poll keeps
    /// the device's `lastSeen` current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_poll_seconds: Option<i64>,
    /// Longest time without a heartbeat while nothing changes (beyond Flotta;
    /// Flotta's agents send one every period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_silence_seconds: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Hardware profile (`hardware-profile-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HardwareProfileConfiguration {
    /// Whether heartbeats include hardware information.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<bool>,
    /// `full` or `delta`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Data upload storage (`storage-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StorageConfiguration {
    /// S3-compatible bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3StorageConfiguration>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// S3-compatible bucket with resolved credentials (`s3-storage-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct S3StorageConfiguration {
    /// Bucket host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_host: Option<String>,
    /// Bucket port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_port: Option<i32>,
    /// Bucket name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// Bucket region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_region: Option<String>,
    /// Access key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<String>,
    /// Secret access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_secret_access_key: Option<String>,
    /// CA bundle (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_ca_bundle: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metrics configuration (`metrics-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricsConfiguration {
    /// Data retention limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<MetricsRetention>,
    /// System metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<ComponentMetricsConfiguration>,
    /// Data-transfer component metrics.
    #[serde(rename = "data-transfer", skip_serializing_if = "Option::is_none")]
    pub data_transfer: Option<ComponentMetricsConfiguration>,
    /// Remote-write receiver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver: Option<MetricsReceiverConfiguration>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metrics data retention (`metrics-retention`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricsRetention {
    /// Most MiB stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_mib: Option<i32>,
    /// Most hours kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_hours: Option<i32>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metric scraping of a device component (`component-metrics-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentMetricsConfiguration {
    /// Seconds between two scrapes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i32>,
    /// Metric names to keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_list: Option<MetricsAllowList>,
    /// Turns collection off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metric names to collect (`metrics-allow-list`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricsAllowList {
    /// Metric names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Remote-write receiver (`metrics-receiver-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricsReceiverConfiguration {
    /// Receiver URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Request timeout in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Samples per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_num_samples: Option<i64>,
    /// CA certificate (PEM); camelCase on the wire, as Flotta has it.
    #[serde(rename = "caCert", skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// OS lifecycle information (`os-information`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OsInformation {
    /// Target commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_id: Option<String>,
    /// URL of the web server hosting the commits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosted_objects_url: Option<String>,
    /// Whether the device upgrades automatically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatically_upgrade: Option<bool>,
    /// Target bootable OS image (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Roll back automatically when the new OS fails (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic_rollback: Option<bool>,
    /// Seconds the new OS has to report healthy (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_after_seconds: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A log collection target (`logs-collection-information`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogsCollectionInformation {
    /// Kind, e.g. `syslog`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// MiB of unsent log kept per workload container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_size: Option<i32>,
    /// Syslog server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog_config: Option<SyslogConfig>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Syslog server of a log collection target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyslogConfig {
    /// Server address, `host:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `tcp`, `udp` or `tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// PEM CA certificates the server's TLS certificate is checked with
    /// (protocol `tls`; beyond Flotta, from the ConfigMap key `CA`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A file to write on the device (beyond Flotta; mirrors
/// [`crate::model::ConfigFile`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileInfo {
    /// Absolute path.
    pub path: String,
    /// Content, encoded as `encoding` says.
    pub content: String,
    /// `plain` or `base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<FileEncoding>,
    /// Octal permission string, e.g. `0644`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `user` or `user:group`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A workload to run (`workload`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Workload {
    /// Workload name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Workload namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Workload labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The pod as Kubernetes YAML text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specification: Option<String>,
    /// Data transfer paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataConfiguration>,
    /// Registry credentials (camelCase on the wire, as Flotta has it).
    #[serde(rename = "imageRegistries", skip_serializing_if = "Option::is_none")]
    pub image_registries: Option<ImageRegistries>,
    /// Metrics endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// ConfigMaps the workload uses, each as Kubernetes YAML text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configmaps: Option<Vec<String>>,
    /// Log collection target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_collection: Option<String>,
    /// Workload annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Data transfer paths (`data-configuration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataConfiguration {
    /// Control plane to device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<DataPath>>,
    /// Device to control plane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<DataPath>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A path mapping (`data-path`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataPath {
    /// Path in the workload container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Path in the control-plane storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Registry credentials (`image-registries`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRegistries {
    /// Auth file as written by `podman login`.
    #[serde(rename = "authFile", skip_serializing_if = "Option::is_none")]
    pub auth_file: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metrics endpoint of a workload (`metrics`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metrics {
    /// HTTP path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Metric names to keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_list: Option<MetricsAllowList>,
    /// Seconds between two scrapes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i32>,
    /// Per-container endpoints by container name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<BTreeMap<String, ContainerMetrics>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metrics endpoint of one container (`container-metrics`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerMetrics {
    /// Turns this container's metrics off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// HTTP path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A secret (`secret`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Secret {
    /// Secret name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The secret's data section as JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// When updates are downloaded and applied (`update_policy`, beyond Flotta).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpdatePolicy {
    /// When a new version may be downloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_schedule: Option<UpdateSchedule>,
    /// When a downloaded version may be applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_schedule: Option<UpdateSchedule>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A window (`update_schedule`, `download_schedule`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateSchedule {
    /// Five-field cron expression.
    pub at: String,
    /// `UTC` or `GMT`; absent: UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How long the window stays open (`2h`, `30m`).
    pub start_grace_duration: String,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl UpdateSchedule {
    /// The schedule, parsed.
    pub fn parse(&self) -> Result<crate::schedule::Schedule, crate::schedule::ScheduleError> {
        crate::schedule::Schedule::parse(
            &self.at,
            self.time_zone.as_deref(),
            &self.start_grace_duration,
        )
    }
}
