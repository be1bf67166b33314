//! Hardware inventory in the wire shape (`hardware-info` and its parts).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::UnknownFields;

/// Hardware inventory (`hardware-info`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HardwareInfo {
    /// Host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Network interfaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<InterfaceInfo>>,
    /// Disks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<DiskInfo>>,
    /// Boot mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootInfo>,
    /// Machine vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_vendor: Option<SystemVendorInfo>,
    /// Memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryInfo>,
    /// Processor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuInfo>,
    /// GPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Vec<GpuInfo>>,
    /// Devices under `/dev`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_devices: Option<Vec<HostDeviceInfo>>,
    /// Mounted file systems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<MountInfo>>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A network interface (`interface`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterfaceInfo {
    /// IPv6 addresses in CIDR notation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_addresses: Option<Vec<String>>,
    /// PCI vendor id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Interface name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether a link is detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_carrier: Option<bool>,
    /// PCI product id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// MTU in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    /// IPv4 addresses in CIDR notation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_addresses: Option<Vec<String>>,
    /// BIOS device name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biosdevname: Option<String>,
    /// DHCP client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// MAC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// Interface flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    /// Link speed in Mbit/s (-1 when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A disk (`disk`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiskInfo {
    /// Unique identifier: `by_id` when present, else `by_path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Drive type, e.g. `SSD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_type: Option<String>,
    /// Vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Kernel name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Device path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// SCSI host:channel:target:lun.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hctl: Option<String>,
    /// Shortest physical path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_path: Option<String>,
    /// World Wide Number path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_id: Option<String>,
    /// Model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// World Wide Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// Serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// Whether the disk is bootable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootable: Option<bool>,
    /// Whether the disk looks like installation media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_installation_media: Option<bool>,
    /// SMART data (JSON text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smart: Option<String>,
    /// I/O performance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_perf: Option<IoPerfInfo>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Disk I/O performance (`io_perf`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IoPerfInfo {
    /// 99th percentile of fsync duration, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_duration: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Boot mode (`boot`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BootInfo {
    /// `bios` or `uefi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_boot_mode: Option<String>,
    /// Interface used for PXE boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pxe_interface: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Vendor of the machine (`system_vendor`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SystemVendorInfo {
    /// Serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// Manufacturer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Whether the machine is virtual.
    #[serde(rename = "virtual", skip_serializing_if = "Option::is_none")]
    pub is_virtual: Option<bool>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Memory (`memory`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemoryInfo {
    /// Installed memory in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_bytes: Option<i64>,
    /// Memory usable by the OS in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usable_bytes: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Processor (`cpu`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CpuInfo {
    /// Number of logical processors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Frequency in MHz. A JSON number kept as written (`3600` stays `3600`, not
    /// `3600.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency: Option<serde_json::Number>,
    /// CPU flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    /// Model name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Architecture, e.g. `x86_64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A GPU (`gpu`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GpuInfo {
    /// Vendor name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// PCI vendor id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// PCI device id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// PCI address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A device node (`host_device`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostDeviceInfo {
    /// Path of the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `block` or `character`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Owner user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    /// Group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<i64>,
    /// Major number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// Minor number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A mount (`mount`). The model calls `directory` `folder`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MountInfo {
    /// Device path to mount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Destination directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// File system type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Mount options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}
