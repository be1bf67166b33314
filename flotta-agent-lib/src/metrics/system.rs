//! System metrics read from `/proc` (and the file systems it lists), named as
//! Prometheus' node_exporter names them, so dashboards built for it work unchanged.
//! The subset:
//!
//! | metric | labels | from |
//! |---|---|---|
//! | `node_cpu_seconds_total` | `cpu`, `mode` | `/proc/stat` (per-CPU lines; user, nice, system, idle, iowait, irq, softirq, steal) |
//! | `node_boot_time_seconds` | | `/proc/stat` `btime` |
//! | `node_load1`, `node_load5`, `node_load15` | | `/proc/loadavg` |
//! | `node_memory_MemTotal_bytes`, `node_memory_MemAvailable_bytes` | | `/proc/meminfo` |
//! | `node_filesystem_size_bytes`, `node_filesystem_avail_bytes` | `device`, `mountpoint`, `fstype` | `/proc/mounts` and `statvfs` of each real file system |
//! | `node_network_receive_bytes_total`, `node_network_transmit_bytes_total` | `device` | `/proc/net/dev` |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Point;

/// CPU modes of `/proc/stat`, in the order of its columns.
const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// File system types that hold no data of their own (node_exporter leaves the same
/// ones out by default).
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// Mount points under which nothing is a device's own storage.
const PSEUDO_MOUNT_ROOTS: &[&str] = &["/dev", "/proc", "/sys", "/run/credentials"];

/// Reads the system metrics from a `/proc`-like tree.
#[derive(Debug, Clone)]
pub struct SystemCollector {
    proc_root: PathBuf,
    clock_ticks: f64,
}

impl SystemCollector {
    /// A collector reading `proc_root` (`/proc` on a device; a fixture tree in
    /// tests). `/proc/stat` counts in clock ticks, read from the system.
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
            clock_ticks: rustix::param::clock_ticks_per_second() as f64,
        }
    }

    /// The same collector counting `/proc/stat` in `ticks` per second.
    pub fn with_clock_ticks(mut self, ticks: u64) -> Self {
        self.clock_ticks = ticks.max(1) as f64;
        self
    }

    /// The `/proc`-like tree read.
    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    fn read(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(relative)).ok()
    }

    /// Reads every metric it can; a file that cannot be read leaves its metrics out.
    /// Blocking (file reads and `statvfs`): call it off the async threads.
    pub fn collect(&self) -> Vec<Point> {
        let mut points = Vec::new();
        if let Some(text) = self.read("stat") {
            points.extend(stat(&text, self.clock_ticks));
        }
        if let Some(text) = self.read("loadavg") {
            points.extend(loadavg(&text));
        }
        if let Some(text) = self.read("meminfo") {
            points.extend(meminfo(&text));
        }
        if let Some(text) = self.read("net/dev") {
            points.extend(net_dev(&text));
        }
        if let Some(text) = self.read("mounts") {
            for mount in real_mounts(&text) {
                let Ok(stats) = rustix::fs::statvfs(mount.mountpoint.as_str()) else {
                    continue;
                };
                let labels = vec![
                    ("device".to_owned(), mount.device.clone()),
                    ("fstype".to_owned(), mount.fstype.clone()),
                    ("mountpoint".to_owned(), mount.mountpoint.clone()),
                ];
                let unit = stats.f_frsize as f64;
                points.push(Point::new(
                    "node_filesystem_size_bytes",
                    labels.clone(),
                    stats.f_blocks as f64 * unit,
                ));
                points.push(Point::new(
                    "node_filesystem_avail_bytes",
                    labels,
                    stats.f_bavail as f64 * unit,
                ));
            }
        }
        points
    }
}

/// `node_cpu_seconds_total` per CPU and mode, and `node_boot_time_seconds`.
fn stat(text: &str, ticks: f64) -> Vec<Point> {
    let mut points = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("btime") => {
                if let Some(boot) = fields.next().and_then(|v| v.parse::<f64>().ok()) {
                    points.push(Point::new("node_boot_time_seconds", Vec::new(), boot));
                }
            }
            Some(cpu) if cpu.len() > 3 && cpu.starts_with("cpu") => {
                let id = &cpu[3..];
                if !id.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                for (mode, value) in CPU_MODES.iter().zip(fields) {
                    let Ok(value) = value.parse::<f64>() else {
                        break;
                    };
                    points.push(Point::new(
                        "node_cpu_seconds_total",
                        vec![
                            ("cpu".to_owned(), id.to_owned()),
                            ("mode".to_owned(), (*mode).to_owned()),
                        ],
                        value / ticks,
                    ));
                }
            }
            _ => {}
        }
    }
    points
}

fn loadavg(text: &str) -> Vec<Point> {
    ["node_load1", "node_load5", "node_load15"]
        .iter()
        .zip(text.split_ascii_whitespace())
        .filter_map(|(name, value)| Some(Point::new(name, Vec::new(), value.parse().ok()?)))
        .collect()
}

fn meminfo(text: &str) -> Vec<Point> {
    let mut points = Vec::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let name = match key {
            "MemTotal" => "node_memory_MemTotal_bytes",
            "MemAvailable" => "node_memory_MemAvailable_bytes",
            _ => continue,
        };
        let mut fields = rest.split_ascii_whitespace();
        let Some(value) = fields.next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let scale = if fields.next() == Some("kB") {
            1024.0
        } else {
            1.0
        };
        points.push(Point::new(name, Vec::new(), value * scale));
    }
    points
}

fn net_dev(text: &str) -> Vec<Point> {
    let mut points = Vec::new();
    // Two header lines, then `  name: rx_bytes rx_packets ... (8 receive columns)
    // tx_bytes ...`.
    for line in text.lines() {
        let Some((device, counters)) = line.split_once(':') else {
            continue;
        };
        let device = device.trim();
        let columns: Vec<f64> = counters
            .split_ascii_whitespace()
            .map_while(|v| v.parse().ok())
            .collect();
        if device.is_empty() || columns.len() < 16 {
            continue;
        }
        let labels = vec![("device".to_owned(), device.to_owned())];
        points.push(Point::new(
            "node_network_receive_bytes_total",
            labels.clone(),
            columns[0],
        ));
        points.push(Point::new(
            "node_network_transmit_bytes_total",
            labels,
            columns[8],
        ));
    }
    points
}

/// A line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    device: String,
    mountpoint: String,
    fstype: String,
}

/// The mounts holding real storage, one per mount point (the last mounted wins, as
/// it is the one visible).
fn real_mounts(text: &str) -> Vec<Mount> {
    let mut by_point = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(device), Some(point), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mountpoint = unescape(point);
        let pseudo_point = PSEUDO_MOUNT_ROOTS.iter().any(|root| {
            mountpoint == *root
                || mountpoint
                    .strip_prefix(root)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if PSEUDO_FILESYSTEMS.contains(&fstype) || pseudo_point {
            by_point.remove(&mountpoint);
            continue;
        }
        by_point.insert(
            mountpoint.clone(),
            Mount {
                device: unescape(device),
                mountpoint,
                fstype: fstype.to_owned(),
            },
        );
    }
    by_point.into_values().collect()
}

/// Undoes the octal escapes of `/proc/mounts` (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(code).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics/fixtures/proc")
    }

    fn find<'a>(points: &'a [Point], name: &str, labels: &[(&str, &str)]) -> Option<&'a Point> {
        points.iter().find(|p| {
            p.name == name
                && labels
                    .iter()
                    .all(|(k, v)| p.labels.iter().any(|(pk, pv)| pk == k && pv == v))
        })
    }

    #[test]
    fn reads_the_fixture_tree_with_node_exporter_names() {
        let points = SystemCollector::new(fixture())
            .with_clock_ticks(100)
            .collect();
        let value = |name: &str, labels: &[(&str, &str)]| {
            find(&points, name, labels)
                .unwrap_or_else(|| panic!("{name} {labels:?} missing from {points:#?}"))
                .value
        };
        assert_eq!(
            value("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "user")]),
            1234.56
        );
        assert_eq!(
            value("node_cpu_seconds_total", &[("cpu", "1"), ("mode", "steal")]),
            0.07
        );
        // The aggregate `cpu` line is not a CPU.
        assert_eq!(
            points
                .iter()
                .filter(|p| p.name == "node_cpu_seconds_total")
                .count(),
            16
        );
        assert_eq!(value("node_boot_time_seconds", &[]), 1_700_000_000.0);
        assert_eq!(value("node_load1", &[]), 0.52);
        assert_eq!(value("node_load5", &[]), 0.41);
        assert_eq!(value("node_load15", &[]), 0.3);
        assert_eq!(
            value("node_memory_MemTotal_bytes", &[]),
            8_041_040.0 * 1024.0
        );
        assert_eq!(
            value("node_memory_MemAvailable_bytes", &[]),
            5_120_000.0 * 1024.0
        );
        assert_eq!(
            value("node_network_receive_bytes_total", &[("device", "eth0")]),
            987_654_321.0
        );
        assert_eq!(
            value("node_network_transmit_bytes_total", &[("device", "eth0")]),
            123_456_789.0
        );
        assert_eq!(
            value("node_network_receive_bytes_total", &[("device", "lo")]),
            1000.0
        );
        // The fixture's mounts list `/` (ext4) among pseudo file systems: only it
        // is measured, with statvfs of the machine's `/`.
        let sizes: Vec<&Point> = points
            .iter()
            .filter(|p| p.name == "node_filesystem_size_bytes")
            .collect();
        assert_eq!(sizes.len(), 1, "{sizes:?}");
        assert_eq!(
            sizes[0].labels,
            vec![
                ("device".to_owned(), "/dev/vda1".to_owned()),
                ("fstype".to_owned(), "ext4".to_owned()),
                ("mountpoint".to_owned(), "/".to_owned()),
            ]
        );
        assert!(sizes[0].value > 0.0);
        assert!(value("node_filesystem_avail_bytes", &[("mountpoint", "/")]) <= sizes[0].value);
    }

    #[test]
    fn a_missing_tree_yields_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(SystemCollector::new(dir.path()).collect().is_empty());
    }

    #[test]
    fn mounts_keep_real_file_systems_only() {
        let text = "proc /proc proc rw 0 0\n\
                    /dev/sda1 / ext4 rw 0 0\n\
                    tmpfs /run tmpfs rw 0 0\n\
                    /dev/sdb1 /mnt/my\\040disk xfs rw 0 0\n\
                    /dev/sdc1 /sys/kernel/x ext4 rw 0 0\n\
                    overlay /var/lib/x overlay rw 0 0\n\
                    /dev/sdd1 /data ext4 rw 0 0\n\
                    /dev/sde1 /data vfat rw 0 0\n\
                    short line\n";
        let mounts = real_mounts(text);
        let points: Vec<(&str, &str, &str)> = mounts
            .iter()
            .map(|m| (m.device.as_str(), m.mountpoint.as_str(), m.fstype.as_str()))
            .collect();
        assert_eq!(
            points,
            vec![
                ("/dev/sda1", "/", "ext4"),
                ("/dev/sde1", "/data", "vfat"),
                ("/dev/sdb1", "/mnt/my disk", "xfs"),
                ("tmpfs", "/run", "tmpfs"),
            ]
        );
    }
}
