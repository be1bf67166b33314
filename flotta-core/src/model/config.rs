//! Configuration sections shared by `EdgeDevice` and `EdgeDeviceSet` specs (and by
//! the device template of a set), plus the config-file overlay.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::UnknownFields;

/// Reference to an object (ConfigMap or Secret) in the resource's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectRef {
    /// Name of the referenced object.
    pub name: String,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// How often a device sends heartbeats and what they carry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatConfiguration {
    /// Which hardware information a heartbeat includes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_profile: Option<HardwareProfileConfiguration>,
    /// Seconds between two heartbeats, at least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub period_seconds: Option<i64>,
    /// Seconds a flotta-rs agent's configuration long-poll waits for a change
    /// (beyond Flotta; Flotta's agents ignore it). The server stamps the device's
    /// `lastSeen` when the poll arrives and when it is answered, so the poll carries
    /// liveness: at most 2.5 periods, so that a device is never judged offline
    /// between two polls. Default: 2.5 periods, at most 300.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub long_poll_seconds: Option<i64>,
    /// Longest a flotta-rs agent goes without a heartbeat when nothing changed
    /// (beyond Flotta): it sends one when its report changes, and otherwise after
    /// this many seconds. At least one period. Default: 900, or the period if longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_silence_seconds: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Hardware information carried by heartbeats.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HardwareProfileConfiguration {
    /// Whether heartbeats include hardware information at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<bool>,
    /// `full` or `delta` (see [`HardwareProfileConfiguration::SCOPES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl HardwareProfileConfiguration {
    /// Accepted values of `scope`.
    pub const SCOPES: &'static [&'static str] = &["full", "delta"];
}

/// One log collection target of a device, keyed by its name in `logCollection`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogCollectionConfig {
    /// MiB of unsent log the device keeps per workload container while the
    /// server is unreachable, at least 1 (default 12, as Flotta's); older lines
    /// beyond it are dropped and counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub buffer_size: Option<i32>,
    /// Kind of log collection; only `syslog` exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// ConfigMap holding the syslog server configuration: `Address`
    /// (`host:port`), `Protocol` (`tcp`, the default, `udp`, or `tls`) and, for
    /// `tls`, `CA` (PEM certificates the server's certificate is checked with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog_config: Option<ObjectRef>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl LogCollectionConfig {
    /// Accepted values of `kind`.
    pub const KINDS: &'static [&'static str] = &["syslog"];
}

/// Metric collection and upload configuration of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsConfiguration {
    /// Metrics of the data-transfer component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_transfer: Option<ComponentMetricsConfiguration>,
    /// Where the device writes its metrics (remote write receiver).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_configuration: Option<MetricsReceiverConfiguration>,
    /// How long and how much metric data the device keeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<MetricsRetention>,
    /// System (node-exporter) metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<ComponentMetricsConfiguration>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Metric scraping of one device component.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentMetricsConfiguration {
    /// ConfigMap listing the metric names to scrape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_list: Option<ObjectRef>,
    /// Turns this component's metrics off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Seconds between two scrapes, at least 0 (Flotta's default: 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub interval: Option<i32>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Remote-write receiver of device metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsReceiverConfiguration {
    /// Secret holding the receiver's CA certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
    /// Samples sent per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_num_samples: Option<i64>,
    /// Request timeout in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Receiver URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Limits of metric data kept on the device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsRetention {
    /// Hours metric data is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_hours: Option<i32>,
    /// Disk space used by metric data, in MiB.
    #[serde(rename = "maxMiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_mib: Option<i32>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A block device mounted on the device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Mount {
    /// Device path to mount, e.g. `/dev/sdb1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Destination directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// Mount options, e.g. `rw,nosuid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
    /// File system type, e.g. `ext4`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Target operating system of the device.
///
/// Flotta's fields select an OSTree commit; `image` (beyond Flotta) selects a
/// bootable container image instead. `automaticRollback` makes the device return
/// to the previous OS when the new one does not report healthy within
/// `rollbackAfterSeconds`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsInformation {
    /// Whether the device upgrades to the target automatically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatically_upgrade: Option<bool>,
    /// Target OSTree commit.
    #[serde(rename = "commitID", skip_serializing_if = "Option::is_none")]
    pub commit_id: Option<String>,
    /// URL of the web server hosting the OSTree commits.
    #[serde(rename = "hostedObjectsURL", skip_serializing_if = "Option::is_none")]
    pub hosted_objects_url: Option<String>,
    /// Target bootable OS image reference (beyond Flotta), e.g. `quay.io/org/os:1.2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Roll back to the previous OS automatically when the new one fails (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic_rollback: Option<bool>,
    /// Seconds the new OS has to report healthy before it is rolled back (beyond Flotta).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rollback_after_seconds: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Data upload storage of the device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StorageConfiguration {
    /// S3-compatible bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3StorageConfiguration>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// S3-compatible bucket used for data upload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3StorageConfiguration {
    /// ConfigMap with the bucket coordinates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// Create an ObjectBucketClaim when no bucket is configured.
    #[serde(rename = "createOBC", skip_serializing_if = "Option::is_none")]
    pub create_obc: Option<bool>,
    /// Secret with the bucket credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Encoding of a [`ConfigFile`]'s `content`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    /// The content is the file's text as is.
    #[default]
    Plain,
    /// The content is the file's bytes, base64-encoded (standard alphabet, padded).
    Base64,
}

// Written by hand: the derived schema is a `oneOf` per variant, which a CRD's
// structural schema does not allow.
impl JsonSchema for FileEncoding {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FileEncoding".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Encoding of the content: `plain` text or `base64` bytes.",
            "type": "string",
            "enum": ["plain", "base64"],
        })
    }
}

/// A file the device writes onto its file system (the config-file overlay, beyond
/// Flotta).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigFile {
    /// Absolute path of the file on the device.
    pub path: String,
    /// File content, encoded as `encoding` says.
    pub content: String,
    /// Encoding of `content`; `plain` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<FileEncoding>,
    /// Permission bits as an octal string, e.g. `"0644"`; `"0644"` when absent.
    ///
    /// A string rather than a number because YAML reads `0644` as decimal 644.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Owner as `user` or `user:group`; the agent's user when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Log collection targets keyed by name.
pub type LogCollection = BTreeMap<String, LogCollectionConfig>;

/// When devices download and apply updates (`spec.updatePolicy`, as Flight Control
/// has it; beyond Flotta). Absent: at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePolicy {
    /// When a new version may be downloaded (prefetched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_schedule: Option<UpdateSchedule>,
    /// When a downloaded version may be applied (workloads replaced, the OS
    /// rebooted into).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_schedule: Option<UpdateSchedule>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A window: it opens at each time `at` matches and stays open
/// `startGraceDuration`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSchedule {
    /// Five-field cron expression (`*`, `a-b`, `a,b`, `*/n`), e.g. `0 2 * * 1-5`.
    pub at: String,
    /// `UTC` or `GMT` (absent: UTC); other zones are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How long the window stays open, e.g. `2h`, `30m`.
    pub start_grace_duration: String,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}
