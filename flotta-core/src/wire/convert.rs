//! Conversions between the resource shape ([`crate::model`], camelCase) and the
//! wire shape ([`crate::wire`], snake_case) of the same data.
//!
//! Conversions map known fields only: unknown fields (`extra`) stay with the shape
//! they were read in, because their names are in that shape's convention.
//! Conversions that can meet a value the other side cannot hold (a CPU frequency
//! that is not a number, an id that does not fit in 32 bits) are `TryFrom` and say
//! which field failed.

use crate::model;
use crate::wire;

/// A value that the target shape cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{path}: {message}")]
pub struct ConversionError {
    /// Path of the field in the source shape, e.g. `cpu.frequency`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

fn narrow(path: &str, value: Option<i64>) -> Result<Option<i32>, ConversionError> {
    value
        .map(|v| {
            i32::try_from(v).map_err(|_| ConversionError {
                path: path.to_owned(),
                message: format!("{v} does not fit in 32 bits"),
            })
        })
        .transpose()
}

impl From<wire::MountInfo> for model::Mount {
    fn from(m: wire::MountInfo) -> Self {
        Self {
            device: m.device,
            folder: m.directory,
            options: m.options,
            type_: m.type_,
            extra: Default::default(),
        }
    }
}

impl From<model::Mount> for wire::MountInfo {
    fn from(m: model::Mount) -> Self {
        Self {
            device: m.device,
            directory: m.folder,
            type_: m.type_,
            options: m.options,
            extra: Default::default(),
        }
    }
}

impl From<wire::HardwareProfileConfiguration> for model::HardwareProfileConfiguration {
    fn from(p: wire::HardwareProfileConfiguration) -> Self {
        Self {
            include: p.include,
            scope: p.scope,
            extra: Default::default(),
        }
    }
}

impl From<model::HardwareProfileConfiguration> for wire::HardwareProfileConfiguration {
    fn from(p: model::HardwareProfileConfiguration) -> Self {
        Self {
            include: p.include,
            scope: p.scope,
            extra: Default::default(),
        }
    }
}

impl From<wire::HeartbeatConfiguration> for model::HeartbeatConfiguration {
    fn from(h: wire::HeartbeatConfiguration) -> Self {
        Self {
            hardware_profile: h.hardware_profile.map(Into::into),
            period_seconds: h.period_seconds,
            long_poll_seconds: h.long_poll_seconds,
            max_silence_seconds: h.max_silence_seconds,
            extra: Default::default(),
        }
    }
}

impl From<model::HeartbeatConfiguration> for wire::HeartbeatConfiguration {
    fn from(h: model::HeartbeatConfiguration) -> Self {
        Self {
            period_seconds: h.period_seconds,
            hardware_profile: h.hardware_profile.map(Into::into),
            long_poll_seconds: h.long_poll_seconds,
            max_silence_seconds: h.max_silence_seconds,
            extra: Default::default(),
        }
    }
}

impl From<model::OsInformation> for wire::OsInformation {
    fn from(o: model::OsInformation) -> Self {
        Self {
            commit_id: o.commit_id,
            hosted_objects_url: o.hosted_objects_url,
            automatically_upgrade: o.automatically_upgrade,
            image: o.image,
            automatic_rollback: o.automatic_rollback,
            rollback_after_seconds: o.rollback_after_seconds,
            extra: Default::default(),
        }
    }
}

impl From<model::ConfigFile> for wire::FileInfo {
    fn from(f: model::ConfigFile) -> Self {
        Self {
            path: f.path,
            content: f.content,
            encoding: f.encoding,
            mode: f.mode,
            owner: f.owner,
            extra: Default::default(),
        }
    }
}

impl TryFrom<wire::HardwareInfo> for model::Hardware {
    type Error = ConversionError;

    fn try_from(h: wire::HardwareInfo) -> Result<Self, ConversionError> {
        let host_devices = h
            .host_devices
            .map(|devices| {
                devices
                    .into_iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let at = |field: &str| format!("host_devices[{i}].{field}");
                        Ok(model::HostDevice {
                            device_type: d.device_type,
                            group: narrow(&at("gid"), d.gid)?,
                            major: narrow(&at("major"), d.major)?,
                            minor: narrow(&at("minor"), d.minor)?,
                            owner: narrow(&at("uid"), d.uid)?,
                            path: d.path,
                            extra: Default::default(),
                        })
                    })
                    .collect::<Result<Vec<_>, ConversionError>>()
            })
            .transpose()?;
        Ok(Self {
            boot: h.boot.map(|b| model::Boot {
                current_boot_mode: b.current_boot_mode,
                pxe_interface: b.pxe_interface,
                extra: Default::default(),
            }),
            cpu: h.cpu.map(|c| model::Cpu {
                architecture: c.architecture,
                count: c.count,
                flags: c.flags.unwrap_or_default(),
                frequency: c.frequency.map(|f| f.to_string()),
                model_name: c.model_name,
                extra: Default::default(),
            }),
            disks: h
                .disks
                .unwrap_or_default()
                .into_iter()
                .map(|d| model::Disk {
                    bootable: d.bootable,
                    by_id: d.by_id,
                    by_path: d.by_path,
                    drive_type: d.drive_type,
                    hctl: d.hctl,
                    id: d.id,
                    io_perf: d.io_perf.map(|p| model::IoPerf {
                        sync_duration: p.sync_duration,
                        extra: Default::default(),
                    }),
                    is_installation_media: d.is_installation_media,
                    model: d.model,
                    name: d.name,
                    path: d.path,
                    serial: d.serial,
                    size_bytes: d.size_bytes,
                    smart: d.smart,
                    vendor: d.vendor,
                    wwn: d.wwn,
                    extra: Default::default(),
                })
                .collect(),
            gpus: h
                .gpus
                .unwrap_or_default()
                .into_iter()
                .map(|g| model::Gpu {
                    address: g.address,
                    device_id: g.device_id,
                    name: g.name,
                    vendor: g.vendor,
                    vendor_id: g.vendor_id,
                    extra: Default::default(),
                })
                .collect(),
            host_devices,
            hostname: h.hostname,
            interfaces: h
                .interfaces
                .unwrap_or_default()
                .into_iter()
                .map(|n| model::Interface {
                    biosdevname: n.biosdevname,
                    client_id: n.client_id,
                    flags: n.flags.unwrap_or_default(),
                    has_carrier: n.has_carrier,
                    ipv4_addresses: n.ipv4_addresses,
                    ipv6_addresses: n.ipv6_addresses,
                    mac_address: n.mac_address,
                    mtu: n.mtu,
                    name: n.name,
                    product: n.product,
                    speed_mbps: n.speed_mbps,
                    vendor: n.vendor,
                    extra: Default::default(),
                })
                .collect(),
            memory: h.memory.map(|m| model::Memory {
                physical_bytes: m.physical_bytes,
                usable_bytes: m.usable_bytes,
                extra: Default::default(),
            }),
            mounts: h.mounts.map(|m| m.into_iter().map(Into::into).collect()),
            system_vendor: h.system_vendor.map(|v| model::SystemVendor {
                manufacturer: v.manufacturer,
                product_name: v.product_name,
                serial_number: v.serial_number,
                is_virtual: v.is_virtual,
                extra: Default::default(),
            }),
            extra: Default::default(),
        })
    }
}

impl TryFrom<model::Hardware> for wire::HardwareInfo {
    type Error = ConversionError;

    fn try_from(h: model::Hardware) -> Result<Self, ConversionError> {
        let cpu = h
            .cpu
            .map(|c| {
                let frequency = c
                    .frequency
                    .map(|f| {
                        f.trim()
                            .parse::<serde_json::Number>()
                            .map_err(|_| ConversionError {
                                path: "cpu.frequency".to_owned(),
                                message: format!("{f:?} is not a number"),
                            })
                    })
                    .transpose()?;
                Ok(wire::CpuInfo {
                    count: c.count,
                    frequency,
                    flags: Some(c.flags),
                    model_name: c.model_name,
                    architecture: c.architecture,
                    extra: Default::default(),
                })
            })
            .transpose()?;
        Ok(Self {
            hostname: h.hostname,
            interfaces: Some(
                h.interfaces
                    .into_iter()
                    .map(|n| wire::InterfaceInfo {
                        ipv6_addresses: n.ipv6_addresses,
                        vendor: n.vendor,
                        name: n.name,
                        has_carrier: n.has_carrier,
                        product: n.product,
                        mtu: n.mtu,
                        ipv4_addresses: n.ipv4_addresses,
                        biosdevname: n.biosdevname,
                        client_id: n.client_id,
                        mac_address: n.mac_address,
                        flags: Some(n.flags),
                        speed_mbps: n.speed_mbps,
                        extra: Default::default(),
                    })
                    .collect(),
            ),
            disks: Some(
                h.disks
                    .into_iter()
                    .map(|d| wire::DiskInfo {
                        id: d.id,
                        drive_type: d.drive_type,
                        vendor: d.vendor,
                        name: d.name,
                        path: d.path,
                        hctl: d.hctl,
                        by_path: d.by_path,
                        by_id: d.by_id,
                        model: d.model,
                        wwn: d.wwn,
                        serial: d.serial,
                        size_bytes: d.size_bytes,
                        bootable: d.bootable,
                        is_installation_media: d.is_installation_media,
                        smart: d.smart,
                        io_perf: d.io_perf.map(|p| wire::IoPerfInfo {
                            sync_duration: p.sync_duration,
                            extra: Default::default(),
                        }),
                        extra: Default::default(),
                    })
                    .collect(),
            ),
            boot: h.boot.map(|b| wire::BootInfo {
                current_boot_mode: b.current_boot_mode,
                pxe_interface: b.pxe_interface,
                extra: Default::default(),
            }),
            system_vendor: h.system_vendor.map(|v| wire::SystemVendorInfo {
                serial_number: v.serial_number,
                product_name: v.product_name,
                manufacturer: v.manufacturer,
                is_virtual: v.is_virtual,
                extra: Default::default(),
            }),
            memory: h.memory.map(|m| wire::MemoryInfo {
                physical_bytes: m.physical_bytes,
                usable_bytes: m.usable_bytes,
                extra: Default::default(),
            }),
            cpu,
            gpus: Some(
                h.gpus
                    .into_iter()
                    .map(|g| wire::GpuInfo {
                        vendor: g.vendor,
                        vendor_id: g.vendor_id,
                        device_id: g.device_id,
                        name: g.name,
                        address: g.address,
                        extra: Default::default(),
                    })
                    .collect(),
            ),
            host_devices: h.host_devices.map(|devices| {
                devices
                    .into_iter()
                    .map(|d| wire::HostDeviceInfo {
                        path: d.path,
                        device_type: d.device_type,
                        uid: d.owner.map(i64::from),
                        gid: d.group.map(i64::from),
                        major: d.major.map(i64::from),
                        minor: d.minor.map(i64::from),
                        extra: Default::default(),
                    })
                    .collect()
            }),
            mounts: h.mounts.map(|m| m.into_iter().map(Into::into).collect()),
            extra: Default::default(),
        })
    }
}

impl From<model::UpdateSchedule> for wire::UpdateSchedule {
    fn from(s: model::UpdateSchedule) -> Self {
        Self {
            at: s.at,
            time_zone: s.time_zone,
            start_grace_duration: s.start_grace_duration,
            extra: s.extra,
        }
    }
}

impl From<model::UpdatePolicy> for wire::UpdatePolicy {
    fn from(p: model::UpdatePolicy) -> Self {
        Self {
            download_schedule: p.download_schedule.map(Into::into),
            update_schedule: p.update_schedule.map(Into::into),
            extra: p.extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_folder_is_wire_directory() {
        let wire_mount = wire::MountInfo {
            device: Some("/dev/sdb1".into()),
            directory: Some("/data".into()),
            type_: Some("ext4".into()),
            options: Some("rw".into()),
            extra: Default::default(),
        };
        let model_mount = model::Mount::from(wire_mount.clone());
        assert_eq!(model_mount.folder.as_deref(), Some("/data"));
        assert_eq!(wire::MountInfo::from(model_mount), wire_mount);
    }

    #[test]
    fn cpu_frequency_converts_between_number_and_string() {
        let hardware = model::Hardware {
            cpu: Some(model::Cpu {
                frequency: Some("3400.00".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = wire::HardwareInfo::try_from(hardware).expect("numeric frequency");
        let frequency = info.cpu.as_ref().and_then(|c| c.frequency.as_ref());
        assert_eq!(frequency.and_then(|f| f.as_f64()), Some(3400.0));
        let back = model::Hardware::try_from(info).expect("converts back");
        assert_eq!(
            back.cpu.and_then(|c| c.frequency).as_deref(),
            Some("3400.0")
        );
    }

    #[test]
    fn non_numeric_frequency_names_the_field() {
        let hardware = model::Hardware {
            cpu: Some(model::Cpu {
                frequency: Some("fast".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = wire::HardwareInfo::try_from(hardware).expect_err("not a number");
        assert_eq!(err.path, "cpu.frequency");
    }

    #[test]
    fn oversized_host_device_id_names_the_field() {
        let info = wire::HardwareInfo {
            host_devices: Some(vec![wire::HostDeviceInfo {
                uid: Some(1 << 40),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let err = model::Hardware::try_from(info).expect_err("does not fit");
        assert_eq!(err.path, "host_devices[0].uid");
    }

    #[test]
    fn heartbeat_configuration_round_trips_through_wire() {
        let config = model::HeartbeatConfiguration {
            period_seconds: Some(30),
            hardware_profile: Some(model::HardwareProfileConfiguration {
                include: Some(true),
                scope: Some("delta".into()),
                extra: Default::default(),
            }),
            long_poll_seconds: Some(75),
            max_silence_seconds: Some(900),
            extra: Default::default(),
        };
        let on_wire = wire::HeartbeatConfiguration::from(config.clone());
        let json = serde_json::to_value(&on_wire).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"period_seconds": 30, "hardware_profile": {"include": true, "scope": "delta"},
                "long_poll_seconds": 75, "max_silence_seconds": 900})
        );
        assert_eq!(model::HeartbeatConfiguration::from(on_wire), config);
    }
}
