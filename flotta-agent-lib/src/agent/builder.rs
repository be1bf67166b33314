//! [`AgentBuilder`]: the agent's settings, checked by [`AgentBuilder::build`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use flotta_client::{EdgeClient, Identity, RetryPolicy};
use flotta_core::enrolment::AgentConfig;
use tokio::sync::{Notify, broadcast};

use super::Agent;
use super::status::{AgentStatus, AgentTiming, Shared};
use crate::clock::{Clock, SystemClock};
use crate::error::AgentError;
use crate::hardware::{HardwareProbe, ProcHardwareProbe};
use crate::offline::{DEFAULT_OFFLINE_QUEUE_CAPACITY, OfflineQueue};
use crate::os::{HealthChecks, NoOsUpdater, OsUpdater};
use crate::runtime::WorkloadRuntime;
use crate::state::{FileStateStore, StateStore};

/// Builds an [`Agent`]; see [`Agent::builder`].
pub struct AgentBuilder {
    server: Option<String>,
    ca_pem: Option<String>,
    registration: Option<(String, String)>,
    device_id: Option<String>,
    namespace: String,
    labels: BTreeMap<String, String>,
    state: Option<Arc<dyn StateStore>>,
    runtime: Option<Arc<dyn WorkloadRuntime>>,
    os_updater: Arc<dyn OsUpdater>,
    health_checks: HealthChecks,
    prefetch_min_free: Option<(PathBuf, u64)>,
    hardware: Arc<dyn HardwareProbe>,
    timing: AgentTiming,
    enrolment: AgentConfig,
    offline_queue_capacity: usize,
    net: NetSettings,
    clock: Arc<dyn Clock>,
    file_roots: Vec<String>,
    metrics_dir: Option<PathBuf>,
    state_dir_metrics: Option<PathBuf>,
    logs_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    ansible_dir: Option<PathBuf>,
    playbooks: Arc<dyn crate::ansible::PlaybookRunner>,
    proc_root: PathBuf,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("server", &self.server)
            .field("device_id", &self.device_id)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl AgentBuilder {
    /// Base URL of the Edge API, `https://host:port` (required).
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.server = Some(url.into());
        self
    }

    /// PEM of the CA that signs the server's certificate (required).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The fleet-wide registration certificate and its key, PEM (required): used to
    /// enrol and register only.
    pub fn registration_identity(
        mut self,
        certificate_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Self {
        self.registration = Some((certificate_pem.into(), key_pem.into()));
        self
    }

    /// The device id (required): the `EdgeDevice` name and certificate CN.
    pub fn device_id(mut self, id: impl Into<String>) -> Self {
        self.device_id = Some(id.into());
        self
    }

    /// Namespace the device asks to join (default `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Adds a label the device asks for at enrolment (the enrolment info's
    /// `labels`). The reference server keeps them in the signed request, where an
    /// approver may change them, and gives them to the device it creates.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Keeps state in files under `dir` ([`FileStateStore`]), the metrics
    /// buffer in `dir/metrics` unless [`metrics_dir`](Self::metrics_dir) says
    /// otherwise, the log forwarding cursors in `dir/logs` and the data upload
    /// states in `dir/data`. Without a state directory, a version asking to
    /// forward workload logs or upload their data is refused.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.state_dir_metrics = Some(dir.join("metrics"));
        self.logs_dir = Some(dir.join("logs"));
        self.data_dir = Some(dir.join("data"));
        self.ansible_dir = Some(dir.join("ansible"));
        self.state = Some(Arc::new(FileStateStore::new(dir)));
        self
    }

    /// Keeps the metrics buffer (segment files, bounded by the configuration's
    /// `retention`) in `dir`. Without it, and without a
    /// [`state_dir`](Self::state_dir), a configuration with metrics is reported
    /// (`MetricsUnavailable`) and nothing is collected. Nothing is written there
    /// while the configuration has no `metrics` section.
    pub fn metrics_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.metrics_dir = Some(dir.into());
        self
    }

    /// Reads system metrics from the `/proc`-like tree at `dir` (`/proc` by
    /// default): for a containerised agent given the host's, and for tests.
    pub fn proc_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.proc_root = dir.into();
        self
    }

    /// Keeps state in `store` (instead of [`state_dir`](Self::state_dir)).
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.state = Some(store);
        self
    }

    /// Runs workloads with `runtime` (required).
    pub fn runtime(mut self, runtime: Arc<dyn WorkloadRuntime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Updates the OS with `updater` (default [`NoOsUpdater`]).
    pub fn os_updater(mut self, updater: Arc<dyn OsUpdater>) -> Self {
        self.os_updater = updater;
        self
    }

    /// Runs playbook executions with `runner` (default
    /// [`AnsiblePlaybook`](crate::ansible::AnsiblePlaybook), `ansible-playbook`
    /// from `PATH`).
    pub fn playbook_runner(mut self, runner: Arc<dyn crate::ansible::PlaybookRunner>) -> Self {
        self.playbooks = runner;
        self
    }

    /// Runs playbooks with the `ansible-playbook` at `command` (a path, or a name
    /// looked up in `PATH`).
    pub fn ansible_playbook(self, command: impl Into<PathBuf>) -> Self {
        self.playbook_runner(Arc::new(crate::ansible::AnsiblePlaybook::new(command)))
    }

    /// Writes and runs playbooks under `dir` (default `ansible/` in the
    /// [`state_dir`](Self::state_dir), else a directory under the system's
    /// temporary directory).
    pub fn ansible_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.ansible_dir = Some(dir.into());
        self
    }

    /// Reads the hardware with `probe` (default [`ProcHardwareProbe`]).
    pub fn hardware_probe(mut self, probe: Arc<dyn HardwareProbe>) -> Self {
        self.hardware = probe;
        self
    }

    /// Run-loop timers (default [`AgentTiming::default`]).
    pub fn timing(mut self, timing: AgentTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Enrolment backoff, approval wait and renewal policy.
    pub fn enrolment_config(mut self, config: AgentConfig) -> Self {
        self.enrolment = config;
        self
    }

    /// Most events kept while the server is unreachable (default 100, at least 1);
    /// when full, the oldest are dropped and counted.
    pub fn offline_queue_capacity(mut self, capacity: usize) -> Self {
        self.offline_queue_capacity = capacity;
        self
    }

    /// Binds the agent's connections to this local (source) address (default:
    /// chosen by the operating system). A simulator running many agents on one
    /// host spreads them over several loopback addresses this way.
    pub fn local_address(mut self, address: IpAddr) -> Self {
        self.net.local_address = Some(address);
        self
    }

    /// Speaks HTTP/1.1 only to the server, one request per connection at a time
    /// (a long-poll and a heartbeat then hold two connections). By default the
    /// agent offers HTTP/2 and carries all its calls over one connection when the
    /// server agrees; this is for networks whose middleboxes do not pass HTTP/2.
    pub fn http1_only(mut self) -> Self {
        self.net.http1_only = true;
        self
    }

    /// Reads the time and waits with `clock` (default [`SystemClock`]); tests pass a
    /// [`ManualClock`](crate::clock::ManualClock) to move time on at will.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Directories the `spec.files` overlay may write under (absolute paths);
    /// [`DEFAULT_FILE_ROOTS`](flotta_core::reconcile::DEFAULT_FILE_ROOTS) by default.
    /// A configuration naming a file elsewhere is refused whole.
    pub fn file_roots<I, S>(mut self, roots: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.file_roots = roots.into_iter().map(Into::into).collect();
        self
    }

    /// The health checks run after a boot into a new OS deployment (default:
    /// greenboot's directories, no user checks).
    pub fn health_checks(mut self, checks: HealthChecks) -> Self {
        self.health_checks = checks;
        self
    }

    /// Before prefetching a new version, require `bytes` free on the file system
    /// holding `path` (where images and OS deployments are downloaded); a version
    /// that does not fit fails its prefetch with the numbers. Unchecked by default.
    pub fn prefetch_min_free(mut self, path: impl Into<PathBuf>, bytes: u64) -> Self {
        self.prefetch_min_free = Some((path.into(), bytes));
        self
    }

    /// Checks the settings and builds the agent.
    pub fn build(self) -> Result<Agent, AgentError> {
        let missing = |field: &'static str| AgentError::InvalidSetting {
            field,
            reason: "required and not set".into(),
        };
        let server = self.server.ok_or_else(|| missing("server"))?;
        let ca_pem = self.ca_pem.ok_or_else(|| missing("ca_pem"))?;
        let (cert, key) = self
            .registration
            .ok_or_else(|| missing("registration_identity"))?;
        let device_id = self.device_id.ok_or_else(|| missing("device_id"))?;
        if device_id.is_empty() || device_id.contains(['/', '?', '#', '%']) {
            return Err(AgentError::InvalidSetting {
                field: "device_id",
                reason: format!("{device_id:?} is not a usable device id"),
            });
        }
        if let Some(root) = self.file_roots.iter().find(|r| !r.starts_with('/')) {
            return Err(AgentError::InvalidSetting {
                field: "file_roots",
                reason: format!("{root:?} is not an absolute path"),
            });
        }
        if self.namespace.is_empty() {
            return Err(AgentError::InvalidSetting {
                field: "namespace",
                reason: "empty".into(),
            });
        }
        let state = self
            .state
            .ok_or_else(|| missing("state_dir or state_store"))?;
        let runtime = self.runtime.ok_or_else(|| missing("runtime"))?;
        let registration =
            Identity::from_pem(&cert, &key).map_err(|source| AgentError::Client {
                what: "registration identity",
                source,
            })?;
        let client = edge_client(
            &server,
            &ca_pem,
            registration.clone(),
            &self.timing,
            &self.net,
        )
        .map_err(|source| AgentError::Client {
            what: "Edge API client",
            source,
        })?;
        let (events, _) = broadcast::channel(256);
        let ansible_dir = self
            .ansible_dir
            .unwrap_or_else(|| std::env::temp_dir().join(format!("flotta-ansible-{device_id}")));
        Ok(Agent {
            device_id,
            namespace: self.namespace,
            labels: self.labels,
            server,
            ca_pem: Mutex::new(ca_pem),
            offered_trust: Mutex::new(None),
            registration,
            client,
            apply_lock: tokio::sync::Mutex::new(()),
            state,
            runtime,
            os_updater: self.os_updater,
            health_checks: self.health_checks,
            prefetch_min_free: self.prefetch_min_free,
            hardware: self.hardware,
            timing: self.timing,
            enrolment: self.enrolment,
            net: self.net,
            clock: self.clock,
            applied: Default::default(),
            file_roots: self.file_roots,
            written: Default::default(),
            settings: Default::default(),
            metrics_plan: tokio::sync::watch::Sender::new(None),
            metrics_dir: self.metrics_dir.or(self.state_dir_metrics),
            system_metrics: crate::metrics::SystemCollector::new(self.proc_root),
            logs_plan: tokio::sync::watch::Sender::new(None),
            logs_dir: self.logs_dir,
            data_plan: tokio::sync::watch::Sender::new(None),
            data_dir: self.data_dir,
            last_data_upload: Default::default(),
            ansible_period: tokio::sync::watch::Sender::new(None),
            ansible_dir,
            playbooks: self.playbooks,
            shared: Arc::new(Shared {
                status: Mutex::new(AgentStatus::default()),
                events,
                pending: Mutex::new(OfflineQueue::new(self.offline_queue_capacity)),
                queue_changed: Notify::new(),
                heartbeat_period: Mutex::new(self.timing.heartbeat_period),
                long_poll: Mutex::new(None),
                max_silence: Mutex::new(None),
                poll_failing: AtomicBool::new(false),
                report_now: AtomicBool::new(false),
                heartbeat_hardware: Mutex::new(false),
                heartbeat_now: Notify::new(),
                playbooks: Mutex::new(BTreeMap::new()),
                poll_version: Mutex::new(None),
                renewal_requested: AtomicBool::new(false),
                renew_now: Notify::new(),
                control_check: Notify::new(),
                last_upgrade: Mutex::new(None),
            }),
        })
    }
}

impl AgentBuilder {
    /// The defaults; see [`Agent::builder`].
    pub(super) fn new() -> Self {
        Self {
            server: None,
            ca_pem: None,
            registration: None,
            device_id: None,
            namespace: "default".into(),
            labels: BTreeMap::new(),
            state: None,
            runtime: None,
            os_updater: Arc::new(NoOsUpdater),
            health_checks: HealthChecks::default(),
            prefetch_min_free: None,
            hardware: Arc::new(ProcHardwareProbe::default()),
            timing: AgentTiming::default(),
            enrolment: AgentConfig::default(),
            offline_queue_capacity: DEFAULT_OFFLINE_QUEUE_CAPACITY,
            net: NetSettings::default(),
            clock: Arc::new(SystemClock),
            file_roots: flotta_core::reconcile::DEFAULT_FILE_ROOTS
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            metrics_dir: None,
            state_dir_metrics: None,
            logs_dir: None,
            data_dir: None,
            ansible_dir: None,
            playbooks: Arc::new(crate::ansible::AnsiblePlaybook::default()),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// How the agent's connections leave the device.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct NetSettings {
    /// The source address, when set.
    pub(super) local_address: Option<IpAddr>,
    /// HTTP/1.1 only (no HTTP/2 offered).
    pub(super) http1_only: bool,
}

/// An Edge API client as the agent uses them: no retries of its own (the loops
/// back off), the agent's request timeout.
pub(super) fn edge_client(
    server: &str,
    ca_pem: &str,
    identity: Identity,
    timing: &AgentTiming,
    net: &NetSettings,
) -> Result<EdgeClient, flotta_client::ClientError> {
    let mut builder = EdgeClient::builder(server)
        .ca_pem(ca_pem)
        .identity(identity)
        .timeout(timing.request_timeout)
        .connect_timeout(
            timing
                .request_timeout
                .min(flotta_client::DEFAULT_CONNECT_TIMEOUT),
        )
        .retry_policy(RetryPolicy::never());
    if let Some(address) = net.local_address {
        builder = builder.local_address(address);
    }
    if net.http1_only {
        builder = builder.http1_only();
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_names_the_missing_setting() {
        let error = Agent::builder().build().expect_err("nothing set");
        assert!(
            matches!(
                error,
                AgentError::InvalidSetting {
                    field: "server",
                    ..
                }
            ),
            "{error:?}"
        );
        let error = Agent::builder()
            .server("https://x")
            .ca_pem("pem")
            .registration_identity("c", "k")
            .device_id("a/b")
            .build()
            .expect_err("bad id");
        assert!(
            matches!(
                error,
                AgentError::InvalidSetting {
                    field: "device_id",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
