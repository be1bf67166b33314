//! What the configuration asks of the metrics subsystem ([`MetricsPlan`]), with the
//! defaults filled in. Derived from the configuration the device runs; the agent
//! restarts its collection with a new plan whenever the plan changes.

use std::collections::BTreeSet;
use std::time::Duration;

use flotta_core::wire::{DeviceConfigurationMessage, MetricsAllowList, MetricsConfiguration};

use super::buffer::BufferLimits;

/// Collection interval when the configuration sets none (or 0): the CRDs' default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Buffer bound in MiB when `retention.max_mib` is unset or 0.
pub const DEFAULT_MAX_MIB: u64 = 64;
/// Buffer age bound in hours when `retention.max_hours` is unset or 0.
pub const DEFAULT_MAX_HOURS: u64 = 24;
/// Samples per push when `request_num_samples` is unset or not positive
/// (Prometheus' own `max_samples_per_send`).
pub const DEFAULT_BATCH: usize = 500;
/// Push timeout when `timeout_seconds` is unset or not positive (Prometheus' own
/// `remote_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Workload metrics path when the configuration sets none (the CRD's default).
pub const DEFAULT_PATH: &str = "/";

/// Metric names to keep; `None` keeps every name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList(Option<BTreeSet<String>>);

impl AllowList {
    fn from_wire(list: Option<&MetricsAllowList>) -> Self {
        Self(
            list.and_then(|l| l.names.as_ref())
                .map(|names| names.iter().cloned().collect()),
        )
    }

    /// Whether samples named `name` are kept: the name is listed, or it is a
    /// histogram's or summary's series (`_bucket`, `_sum`, `_count`) of a listed name.
    pub fn allows(&self, name: &str) -> bool {
        let Some(names) = &self.0 else {
            return true;
        };
        names.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|family| names.contains(family))
            })
    }
}

/// The system metrics to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPlan {
    /// Time between two collections.
    pub interval: Duration,
    /// Names kept.
    pub allow: AllowList,
}

/// One workload endpoint to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The workload's name (label `workload`).
    pub workload: String,
    /// The container's name (label `container`) for a per-container endpoint.
    pub container: Option<String>,
    /// `http://127.0.0.1:PORT/PATH`.
    pub url: String,
    /// Time between two scrapes.
    pub interval: Duration,
    /// Names kept.
    pub allow: AllowList,
}

/// Where and how samples are pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverPlan {
    /// The remote-write endpoint.
    pub url: String,
    /// How long one push may take.
    pub timeout: Duration,
    /// Samples per push, at most.
    pub batch: usize,
    /// CA certificates (PEM) trusted for an `https` endpoint.
    pub ca_pem: Option<String>,
}

/// What the metrics subsystem does under one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsPlan {
    /// System metrics, unless `system.disabled`.
    pub system: Option<SystemPlan>,
    /// Time between two collections of the agent's own metrics (the system
    /// interval, whether or not system metrics are on).
    pub agent_interval: Duration,
    /// Workload endpoints.
    pub targets: Vec<ScrapeTarget>,
    /// The receiver; without one samples are buffered (within the bounds) until a
    /// configuration names one.
    pub receiver: Option<ReceiverPlan>,
    /// The buffer's bounds.
    pub limits: BufferLimits,
}

impl MetricsPlan {
    /// The plan of `message`; `None` when its configuration has no `metrics`
    /// section, and then nothing runs.
    pub fn from_message(message: &DeviceConfigurationMessage) -> Option<Self> {
        let metrics: &MetricsConfiguration = message.configuration.as_ref()?.metrics.as_ref()?;
        let system_interval = interval(metrics.system.as_ref().and_then(|s| s.interval));
        let system = metrics.system.as_ref().map_or(
            Some(SystemPlan {
                interval: system_interval,
                allow: AllowList::default(),
            }),
            |s| {
                (!s.disabled.unwrap_or(false)).then(|| SystemPlan {
                    interval: system_interval,
                    allow: AllowList::from_wire(s.allow_list.as_ref()),
                })
            },
        );
        let mut targets = Vec::new();
        for workload in message.workloads.iter().flatten() {
            let (Some(name), Some(m)) = (workload.name.as_ref(), workload.metrics.as_ref()) else {
                continue;
            };
            let every = interval(m.interval);
            let allow = AllowList::from_wire(m.allow_list.as_ref());
            let path = m
                .path
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or(DEFAULT_PATH);
            if let Some(port) = m.port.filter(|p| (1..=65535).contains(p)) {
                targets.push(ScrapeTarget {
                    workload: name.clone(),
                    container: None,
                    url: url(port, path),
                    interval: every,
                    allow: allow.clone(),
                });
            }
            for (container, c) in m.containers.iter().flatten() {
                if c.disabled.unwrap_or(false) {
                    continue;
                }
                let Some(port) = c.port.filter(|p| (1..=65535).contains(p)) else {
                    continue;
                };
                let path = c.path.as_deref().filter(|p| !p.is_empty()).unwrap_or(path);
                targets.push(ScrapeTarget {
                    workload: name.clone(),
                    container: Some(container.clone()),
                    url: url(port, path),
                    interval: every,
                    allow: allow.clone(),
                });
            }
        }
        let receiver = metrics.receiver.as_ref().and_then(|r| {
            let url = r.url.clone().filter(|u| !u.is_empty())?;
            Some(ReceiverPlan {
                url,
                timeout: r
                    .timeout_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
                batch: r
                    .request_num_samples
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_BATCH),
                ca_pem: r.ca_cert.clone().filter(|c| !c.trim().is_empty()),
            })
        });
        let retention = metrics.retention.as_ref();
        let max_mib = retention
            .and_then(|r| r.max_mib)
            .and_then(|m| u64::try_from(m).ok())
            .filter(|m| *m > 0)
            .unwrap_or(DEFAULT_MAX_MIB);
        let max_hours = retention
            .and_then(|r| r.max_hours)
            .and_then(|h| u64::try_from(h).ok())
            .filter(|h| *h > 0)
            .unwrap_or(DEFAULT_MAX_HOURS);
        Some(Self {
            system,
            agent_interval: system_interval,
            targets,
            receiver,
            limits: BufferLimits {
                max_bytes: max_mib << 20,
                max_age: Duration::from_secs(max_hours * 3600),
            },
        })
    }
}

fn interval(seconds: Option<i32>) -> Duration {
    seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_INTERVAL, Duration::from_secs)
}

fn url(port: i32, path: &str) -> String {
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("http://127.0.0.1:{port}{slash}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(value: serde_json::Value) -> DeviceConfigurationMessage {
        serde_json::from_value(value).expect("message")
    }

    #[test]
    fn no_metrics_section_no_plan() {
        assert_eq!(
            MetricsPlan::from_message(&message(serde_json::json!({}))),
            None
        );
        assert_eq!(
            MetricsPlan::from_message(&message(
                serde_json::json!({"configuration": {"heartbeat": {"period_seconds": 5}}})
            )),
            None
        );
    }

    #[test]
    fn defaults_fill_what_the_configuration_leaves_out() {
        let plan = MetricsPlan::from_message(&message(serde_json::json!({
            "configuration": {"metrics": {}}
        })))
        .expect("plan");
        assert_eq!(
            plan.system,
            Some(SystemPlan {
                interval: DEFAULT_INTERVAL,
                allow: AllowList::default()
            })
        );
        assert_eq!(plan.receiver, None);
        assert_eq!(plan.limits.max_bytes, 64 << 20);
        assert_eq!(plan.limits.max_age, Duration::from_secs(24 * 3600));
        assert!(plan.targets.is_empty());
    }

    #[test]
    fn reads_intervals_receiver_retention_and_workload_endpoints() {
        let plan = MetricsPlan::from_message(&message(serde_json::json!({
            "configuration": {"metrics": {
                "retention": {"max_mib": 5, "max_hours": 2},
                "system": {"interval": 15, "allow_list": {"names": ["node_load1", "http_latency"]}},
                "receiver": {"url": "https://metrics.example/api/v1/write", "timeout_seconds": 7,
                             "request_num_samples": 100, "caCert": "PEM"}
            }},
            "workloads": [
                {"name": "web", "metrics": {"port": 9100, "path": "metrics", "interval": 5,
                    "containers": {"side": {"port": 9200}, "off": {"port": 9300, "disabled": true}, "noport": {}}}},
                {"name": "quiet"}
            ]
        })))
        .expect("plan");
        let system = plan.system.expect("system");
        assert_eq!(system.interval, Duration::from_secs(15));
        assert!(system.allow.allows("node_load1"));
        assert!(system.allow.allows("http_latency_bucket"));
        assert!(!system.allow.allows("node_load5"));
        assert_eq!(plan.agent_interval, Duration::from_secs(15));
        assert_eq!(
            plan.receiver,
            Some(ReceiverPlan {
                url: "https://metrics.example/api/v1/write".into(),
                timeout: Duration::from_secs(7),
                batch: 100,
                ca_pem: Some("PEM".into()),
            })
        );
        assert_eq!(plan.limits.max_bytes, 5 << 20);
        assert_eq!(plan.limits.max_age, Duration::from_secs(7200));
        let urls: Vec<(&str, Option<&str>, &str)> = plan
            .targets
            .iter()
            .map(|t| (t.workload.as_str(), t.container.as_deref(), t.url.as_str()))
            .collect();
        assert_eq!(
            urls,
            vec![
                ("web", None, "http://127.0.0.1:9100/metrics"),
                ("web", Some("side"), "http://127.0.0.1:9200/metrics"),
            ]
        );
        assert!(
            plan.targets
                .iter()
                .all(|t| t.interval == Duration::from_secs(5))
        );
    }

    #[test]
    fn disabled_system_metrics_keep_the_agent_metrics() {
        let plan = MetricsPlan::from_message(&message(serde_json::json!({
            "configuration": {"metrics": {"system": {"disabled": true, "interval": 30}}}
        })))
        .expect("plan");
        assert_eq!(plan.system, None);
        assert_eq!(plan.agent_interval, Duration::from_secs(30));
    }
}
