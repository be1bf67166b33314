//! The result of one run: a table on stdout and a JSON file.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::SimError;
use crate::server::MemorySample;
use crate::stats::LatencySummary;

/// What the server process used during the measured part of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerUsage {
    /// User + system CPU seconds in the measured window.
    pub cpu_seconds: f64,
    /// CPU seconds per second of the window (2.0 = both cores busy).
    pub cpu_cores: f64,
    /// Peak resident memory, MiB (VmHWM of the last incarnation).
    pub peak_rss_mib: f64,
    /// Resident memory when the window began, MiB.
    pub rss_start_mib: f64,
    /// Resident memory when it ended, MiB.
    pub rss_end_mib: f64,
    /// Resident memory over the run, when sampled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rss_curve: Vec<MemorySample>,
}

/// Traffic per device and hour, as measured at the simulator's sockets.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Wire {
    /// TLS bytes sent and received per device per hour (no TCP/IP headers); zero
    /// where the scenario does not route devices through the counting relay.
    pub bytes_per_device_hour: f64,
    /// Requests per device per hour.
    pub requests_per_device_hour: f64,
}

/// One scenario's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Store of the server (`sqlite`, `postgres`, `bare`, `external`, `none`).
    pub backend: String,
    /// `agent` (real agents) or `light` (enrolled identities, one connection each).
    pub model: String,
    /// Simulated devices.
    pub devices: usize,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// What an operation is here (heartbeat, enrolment, propagation, ...).
    pub operation: String,
    /// Operations completed in the window.
    pub operations: u64,
    /// Operations per second.
    pub throughput_per_s: f64,
    /// Latency of one operation.
    pub latency: LatencySummary,
    /// Failed operations (and devices that never got there).
    pub errors: u64,
    /// Server CPU and memory; absent without a spawned server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
    /// Traffic per device and hour.
    pub wire: Wire,
    /// Scenario-specific figures.
    pub extra: serde_json::Map<String, Value>,
    /// Broken guarantees the scenario checks (e.g. a device given a revision
    /// before its rollout batch was released); any fails the run, whatever
    /// `--allow-errors` says.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<String>,
}

impl Report {
    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), SimError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| SimError::Server(format!("encoding the report: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|source| SimError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
    }

    /// The report as an aligned two-column table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("scenario".into(), self.scenario.clone()),
            ("server store".into(), self.backend.clone()),
            ("device model".into(), self.model.clone()),
            ("devices".into(), self.devices.to_string()),
            ("window".into(), format!("{:.1} s", self.window_s)),
            (format!("{}s", self.operation), self.operations.to_string()),
            (
                "throughput".into(),
                format!("{:.1} {}s/s", self.throughput_per_s, self.operation),
            ),
            (
                "latency p50 / p95 / p99".into(),
                if self.latency.count == 0 {
                    "not measured".into()
                } else {
                    format!(
                        "{:.2} / {:.2} / {:.2} ms (max {:.2})",
                        self.latency.p50_ms,
                        self.latency.p95_ms,
                        self.latency.p99_ms,
                        self.latency.max_ms
                    )
                },
            ),
            ("errors".into(), self.errors.to_string()),
        ];
        if !self.violations.is_empty() {
            rows.push(("violations".into(), self.violations.len().to_string()));
        }
        if let Some(server) = &self.server {
            rows.push((
                "server CPU".into(),
                format!(
                    "{:.1} s ({:.2} cores)",
                    server.cpu_seconds, server.cpu_cores
                ),
            ));
            rows.push((
                "server RSS start / end / peak".into(),
                format!(
                    "{:.1} / {:.1} / {:.1} MiB",
                    server.rss_start_mib, server.rss_end_mib, server.peak_rss_mib
                ),
            ));
        }
        if self.wire.bytes_per_device_hour > 0.0 {
            rows.push((
                "bytes per device-hour".into(),
                format!("{:.0}", self.wire.bytes_per_device_hour),
            ));
        }
        if self.wire.requests_per_device_hour > 0.0 {
            rows.push((
                "requests per device-hour".into(),
                format!("{:.1}", self.wire.requests_per_device_hour),
            ));
        }
        for (key, value) in &self.extra {
            let shown = match value {
                Value::Number(n) => n
                    .as_f64()
                    .map(|f| format!("{f:.2}"))
                    .unwrap_or_else(|| n.to_string()),
                other => other.to_string(),
            };
            rows.push((key.clone(), shown));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(key, value)| format!("{key:<width$}  {value}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_figure_and_json_round_trips() {
        let mut report = Report {
            scenario: "steady".into(),
            backend: "sqlite".into(),
            model: "light".into(),
            devices: 100,
            window_s: 10.0,
            operation: "heartbeat".into(),
            operations: 5000,
            throughput_per_s: 500.0,
            errors: 2,
            ..Report::default()
        };
        report.extra.insert("outage_s".into(), Value::from(1.25));
        let table = report.table();
        assert!(table.contains("500.0 heartbeats/s"), "{table}");
        assert!(table.contains("errors"), "{table}");
        assert!(table.contains("outage_s"), "{table}");
        assert!(table.contains("1.25"), "{table}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        report.write_json(&path).expect("write");
        let value: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(value["throughput_per_s"], 500.0);
        assert_eq!(value["errors"], 2);
        assert_eq!(value["extra"]["outage_s"], 1.25);
    }
}
