//! Hardware inventory of a device as stored in resources (camelCase, as Flotta's
//! CRDs). The agent reports the same data in the snake_case wire shape
//! ([`crate::wire::HardwareInfo`]); `From`/`TryFrom` convert between the two.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Mount, UnknownFields};

/// Hardware inventory of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hardware {
    /// Boot mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<Boot>,
    /// Processor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Disks.
    pub disks: Vec<Disk>,
    /// GPUs.
    pub gpus: Vec<Gpu>,
    /// Devices under `/dev`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_devices: Option<Vec<HostDevice>>,
    /// Host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Network interfaces.
    pub interfaces: Vec<Interface>,
    /// Memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Mounted file systems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    /// Machine vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_vendor: Option<SystemVendor>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Boot mode of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Boot {
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

/// Processor of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    /// Architecture, e.g. `x86_64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Number of logical processors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// CPU flags.
    pub flags: Vec<String>,
    /// Frequency in MHz, as a decimal string (the wire shape carries a number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency: Option<String>,
    /// Model name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A disk of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    /// Whether the disk is bootable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootable: Option<bool>,
    /// World Wide Number path (`/dev/disk/by-id/...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_id: Option<String>,
    /// Shortest physical path (`/dev/disk/by-path/...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_path: Option<String>,
    /// Drive type, e.g. `SSD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_type: Option<String>,
    /// SCSI host:channel:target:lun.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hctl: Option<String>,
    /// Unique identifier: `byId` when present, else `byPath`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// I/O performance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_perf: Option<IoPerf>,
    /// Whether the disk looks like installation media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_installation_media: Option<bool>,
    /// Model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Kernel name, e.g. `sda`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Device path, e.g. `/dev/sda`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// SMART data (JSON text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smart: Option<String>,
    /// Vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// World Wide Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Disk I/O performance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IoPerf {
    /// 99th percentile of fsync duration, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_duration: Option<i64>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A GPU of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    /// PCI address, e.g. `0000:00:02.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// PCI device id, e.g. `3ea0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Vendor name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// PCI vendor id, e.g. `8086`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A device node under `/dev`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostDevice {
    /// `block` or `character`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<i32>,
    /// Major number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i32>,
    /// Minor number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i32>,
    /// Owner user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<i32>,
    /// Path, e.g. `/dev/loop0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A network interface of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// BIOS device name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biosdevname: Option<String>,
    /// DHCP client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Interface flags, e.g. `up`.
    pub flags: Vec<String>,
    /// Whether a link is detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_carrier: Option<bool>,
    /// IPv4 addresses in CIDR notation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_addresses: Option<Vec<String>>,
    /// IPv6 addresses in CIDR notation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_addresses: Option<Vec<String>>,
    /// MAC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// MTU in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    /// Interface name, e.g. `eth0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// PCI product id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Link speed in Mbit/s (-1 when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<i64>,
    /// PCI vendor id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Memory of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
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

/// Vendor of the machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemVendor {
    /// Manufacturer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// Serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Whether the machine is virtual.
    #[serde(rename = "virtual", skip_serializing_if = "Option::is_none")]
    pub is_virtual: Option<bool>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}
