//! Hardware inventory: the [`HardwareProbe`] trait and [`ProcHardwareProbe`].

use std::path::PathBuf;

use async_trait::async_trait;
use flotta_core::wire::{CpuInfo, HardwareInfo, MemoryInfo, SystemVendorInfo};

/// Reports the device's hardware for enrolment, registration and heartbeats.
///
/// Contract: never fails; what cannot be read is left `None`.
#[async_trait]
pub trait HardwareProbe: Send + Sync {
    /// The hardware inventory now.
    async fn probe(&self) -> HardwareInfo;
}

/// Reads hostname, processor (count, model, architecture) and memory from Linux's
/// `/proc`, and the machine's vendor, product and serial from `/sys/class/dmi/id`
/// (the serial is readable by root only; without it the field is left out).
#[derive(Debug, Clone)]
pub struct ProcHardwareProbe {
    proc_root: PathBuf,
    sys_root: PathBuf,
}

impl Default for ProcHardwareProbe {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcHardwareProbe {
    /// A probe reading the `/proc`-like tree at `proc_root` (and `/sys`).
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
            sys_root: PathBuf::from("/sys"),
        }
    }

    /// Reads the machine's vendor from the `/sys`-like tree at `sys_root`.
    pub fn with_sys_root(mut self, sys_root: impl Into<PathBuf>) -> Self {
        self.sys_root = sys_root.into();
        self
    }

    fn read(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(relative)).ok()
    }

    /// A DMI field, trimmed; `None` when unreadable, empty or a firmware
    /// placeholder.
    fn dmi(&self, field: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.sys_root.join("class/dmi/id").join(field)).ok()?;
        let text = text.trim();
        let placeholder = ["", "To Be Filled By O.E.M.", "Default string", "None"];
        (!placeholder.contains(&text)).then(|| text.to_owned())
    }

    fn system_vendor(&self) -> Option<SystemVendorInfo> {
        let vendor = SystemVendorInfo {
            manufacturer: self.dmi("sys_vendor"),
            product_name: self.dmi("product_name"),
            serial_number: self.dmi("product_serial"),
            ..Default::default()
        };
        let known = vendor.manufacturer.is_some()
            || vendor.product_name.is_some()
            || vendor.serial_number.is_some();
        known.then_some(vendor)
    }
}

/// The first `model name` (x86) or `Model` (ARM boards) of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        let value = value.trim();
        (matches!(key.trim(), "model name" | "Model") && !value.is_empty())
            .then(|| value.to_owned())
    })
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: i64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Number of `processor` entries of a `/proc/cpuinfo` text.
fn cpu_count(cpuinfo: &str) -> Option<i64> {
    let count = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count();
    i64::try_from(count).ok().filter(|c| *c > 0)
}

#[async_trait]
impl HardwareProbe for ProcHardwareProbe {
    async fn probe(&self) -> HardwareInfo {
        let hostname = self
            .read("sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        let cpuinfo = self.read("cpuinfo").unwrap_or_default();
        let physical_bytes = self.read("meminfo").as_deref().and_then(mem_total_bytes);
        // The architecture the kernel reports (`uname -m`); this build's own target
        // where the kernel does not say.
        let architecture = self
            .read("sys/kernel/arch")
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        HardwareInfo {
            hostname,
            cpu: Some(CpuInfo {
                count: cpu_count(&cpuinfo),
                model_name: cpu_model(&cpuinfo),
                architecture: Some(architecture),
                ..Default::default()
            }),
            system_vendor: self.system_vendor(),
            memory: physical_bytes.map(|bytes| MemoryInfo {
                physical_bytes: Some(bytes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_cpuinfo_are_read() {
        assert_eq!(
            mem_total_bytes("MemTotal:       2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total_bytes("MemTotal: lots kB\n"), None);
        assert_eq!(
            cpu_count("processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\n"),
            Some(2)
        );
        assert_eq!(cpu_count(""), None);
    }

    #[tokio::test]
    async fn a_fake_proc_tree_is_probed() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join("sys/kernel")).expect("mkdir");
        std::fs::write(dir.path().join("sys/kernel/hostname"), "cam-7\n").expect("write");
        std::fs::write(dir.path().join("sys/kernel/arch"), "aarch64\n").expect("write");
        std::fs::write(
            dir.path().join("cpuinfo"),
            "processor : 0\nBogoMIPS : 108.00\nModel : Raspberry Pi 4 Model B Rev 1.4\n",
        )
        .expect("write");
        let dmi = dir.path().join("sys-tree/class/dmi/id");
        std::fs::create_dir_all(&dmi).expect("mkdir");
        std::fs::write(dmi.join("sys_vendor"), "Raspberry Pi Foundation\n").expect("write");
        std::fs::write(dmi.join("product_name"), "To Be Filled By O.E.M.\n").expect("write");
        let info = ProcHardwareProbe::new(dir.path())
            .with_sys_root(dir.path().join("sys-tree"))
            .probe()
            .await;
        assert_eq!(info.hostname.as_deref(), Some("cam-7"));
        let cpu = info.cpu.expect("cpu");
        assert_eq!(cpu.count, Some(1));
        assert_eq!(cpu.architecture.as_deref(), Some("aarch64"));
        assert_eq!(
            cpu.model_name.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        let vendor = info.system_vendor.expect("vendor");
        assert_eq!(
            vendor.manufacturer.as_deref(),
            Some("Raspberry Pi Foundation")
        );
        assert_eq!(vendor.product_name, None, "placeholder left out");
        assert!(info.memory.is_none());
    }
}
