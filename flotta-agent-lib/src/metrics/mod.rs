//! Metrics: what the agent collects and how it pushes it with Prometheus
//! remote-write 1.0 (see `docs/observability.md`).
//!
//! The rooms, from the leaves up:
//! - [`exposition`]: the text format workloads serve, parsed tolerantly;
//! - [`remote_write`]: the `prompb` messages and the snappy body of a push;
//! - [`system`]: node_exporter-named metrics from `/proc`;
//! - [`plan`]: what a configuration asks ([`MetricsPlan`]), defaults filled in;
//! - [`buffer`]: the bounded on-disk buffer samples wait in until acknowledged;
//! - [`receiver`]: one push to the remote-write endpoint and what its answer means;
//! - [`scrape`]: one scrape of a workload endpoint.
//!
//! The agent composes them in its metrics loop: collect on each source's interval,
//! label, append to the buffer, push batches from the buffer with backoff.

pub mod buffer;
pub mod exposition;
pub mod plan;
pub mod receiver;
pub mod remote_write;
pub mod scrape;
pub mod system;

use std::path::{Path, PathBuf};

pub use buffer::{Batch, BufferLimits, MetricsBuffer};
pub use plan::{MetricsPlan, ReceiverPlan, ScrapeTarget, SystemPlan};
pub use receiver::{PushError, Receiver};
pub use system::SystemCollector;

use remote_write::{Label, Sample, TimeSeries, WriteRequest};

/// Label naming the device on every sample.
pub const DEVICE_LABEL: &str = "device_id";
/// Label naming the device's namespace on every sample.
pub const NAMESPACE_LABEL: &str = "namespace";
/// Label naming the workload a scraped sample comes from.
pub const WORKLOAD_LABEL: &str = "workload";
/// Label naming the container of a per-container endpoint.
pub const CONTAINER_LABEL: &str = "container";

/// One value of a metric, before the agent's labels are added.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Metric name.
    pub name: String,
    /// Its own labels.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// A timestamp of its own (milliseconds); the collection's time otherwise.
    pub timestamp_ms: Option<i64>,
}

impl Point {
    /// A point taken at the collection's time.
    pub fn new(name: &str, labels: Vec<(String, String)>, value: f64) -> Self {
        Self {
            name: name.to_owned(),
            labels,
            value,
            timestamp_ms: None,
        }
    }
}

/// Turns points of one collection into a remote-write request: each series gets
/// `__name__`, its own labels and `target` (the device, namespace, workload...),
/// sorted by name as Prometheus expects. A label of the point's own that `target`
/// also sets is kept as `exported_NAME`, as a Prometheus scrape does.
pub fn series(points: Vec<Point>, target: &[(&str, &str)], at_ms: i64) -> WriteRequest {
    let timeseries = points
        .into_iter()
        .map(|point| {
            let mut labels = Vec::with_capacity(point.labels.len() + target.len() + 1);
            labels.push(Label::new("__name__", point.name));
            for (name, value) in point.labels {
                if name == "__name__" {
                    continue;
                }
                let name = if target.iter().any(|(t, _)| *t == name) {
                    format!("exported_{name}")
                } else {
                    name
                };
                labels.push(Label { name, value });
            }
            labels.extend(target.iter().map(|(n, v)| Label::new(*n, *v)));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            labels.dedup_by(|a, b| a.name == b.name);
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: point.value,
                    timestamp: point.timestamp_ms.unwrap_or(at_ms),
                }],
            }
        })
        .collect();
    WriteRequest { timeseries }
}

/// Why a metrics operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A file of the buffer could not be read or written.
    #[error("could not {operation} {path}")]
    Io {
        /// `create`, `open`, `read`, `write`, `truncate` or `remove`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The buffer's content is not what it wrote.
    #[error("metrics buffer: {0}")]
    Corrupt(String),
    /// The blocking task doing file IO did not finish.
    #[error("the metrics IO task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl MetricsError {
    pub(crate) fn io(operation: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            operation,
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_the_target_labels_sorted_and_keep_clashing_ones_as_exported() {
        let mut point = Point::new(
            "hits_total",
            vec![
                ("workload".into(), "theirs".into()),
                ("code".into(), "200".into()),
            ],
            3.0,
        );
        point.timestamp_ms = Some(5);
        let request = series(
            vec![point, Point::new("up", Vec::new(), 1.0)],
            &[
                ("device_id", "cam-1"),
                ("namespace", "default"),
                ("workload", "web"),
            ],
            1000,
        );
        let names: Vec<String> = request.timeseries[0]
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        assert_eq!(
            names,
            vec![
                "__name__=hits_total",
                "code=200",
                "device_id=cam-1",
                "exported_workload=theirs",
                "namespace=default",
                "workload=web"
            ]
        );
        assert_eq!(request.timeseries[0].samples[0].timestamp, 5);
        assert_eq!(request.timeseries[1].samples[0].timestamp, 1000);
    }
}
