//! Hardware inventory: the [`HardwareProbe`] trait and [`ProcHardwareProbe`].

use std::path::PathBuf;

use async_trait::async_trait;
use flotta_core::wire::{CpuInfo, HardwareInfo, MemoryInfo};

/// Reports the device's hardware for enrolment, registration and heartbeats.
///
/// Contract: never fails; what cannot be read is left `None`.
#[async_trait]
pub trait HardwareProbe: Send + Sync {
    /// The hardware inventory now.
    async fn probe(&self) -> HardwareInfo;
}

/// Reads hostname, CPU count and memory from Linux's `/proc`.
#[derive(Debug, Clone)]
pub struct ProcHardwareProbe {
    proc_root: PathBuf,
}

impl Default for ProcHardwareProbe {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcHardwareProbe {
    /// A probe reading the `/proc`-like tree at `proc_root`.
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
        }
    }

    fn read(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(relative)).ok()
    }
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
        let count = self.read("cpuinfo").as_deref().and_then(cpu_count);
        let physical_bytes = self.read("meminfo").as_deref().and_then(mem_total_bytes);
        HardwareInfo {
            hostname,
            cpu: count.map(|count| CpuInfo {
                count: Some(count),
                ..Default::default()
            }),
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
        std::fs::write(dir.path().join("cpuinfo"), "processor : 0\n").expect("write");
        let info = ProcHardwareProbe::new(dir.path()).probe().await;
        assert_eq!(info.hostname.as_deref(), Some("cam-7"));
        assert_eq!(info.cpu.and_then(|c| c.count), Some(1));
        assert!(info.memory.is_none());
    }
}
