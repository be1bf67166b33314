//! [`ProcessRuntime`]: each container of a workload's pod runs as a supervised host
//! process.
//!
//! For devices without a container engine, and for tests. A container's `command`
//! followed by its `args` is the argument vector (there is no image, so there is no
//! entrypoint to fall back on); `env` and `envFrom` are resolved against the
//! workload's config maps and the configuration's secrets
//! ([`WorkloadInputs`]); `$(VAR)` in command,
//! args and values expands as in Kubernetes. The files of `configMap` and `secret`
//! volumes are written under `<log_dir>/<workload>/volumes/<volume>/` (secrets 0600
//! unless the volume says otherwise), the working directory of containers that set
//! none. Processes start with an empty environment plus `PATH` (the agent's),
//! `FLOTTA_EXPORT_DIR` (`<log_dir>/<workload>/export`, the directory the data
//! upload sends, a container's `/export`) and the container's variables, stdin closed, stdout and stderr appended to
//! `<log_dir>/<workload>/<container>.log`, in a process group of their own so that
//! stopping one stops everything it started.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use flotta_core::backoff::Backoff;
use flotta_core::reconcile::{WorkloadInputs, WorkloadPhase, expand};
use flotta_core::wire::Workload;
use k8s_openapi::api::core::v1::PodSpec;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{RuntimeError, WorkloadRuntime, WorkloadState};

/// `PATH` for workload processes when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The directory, in a workload's directory, whose files the data upload sends
/// (`data.egress` sources are paths in it; a container sees it as `/export`).
pub const EXPORT_DIR: &str = "export";
/// The variable naming a process its export directory (processes have no
/// `/export`).
pub const EXPORT_VARIABLE: &str = "FLOTTA_EXPORT_DIR";

/// Settings of a [`ProcessRuntime`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessOptions {
    /// Directory of one subdirectory per workload, holding its log files
    /// (`<container>.log`) and pid files; also the working directory of containers
    /// that set none.
    pub log_dir: PathBuf,
    /// Waits before restarting a process that exited: `restart.initial` first,
    /// doubling after each failed run up to `restart.max` ([`Backoff::cap`]; no
    /// jitter, the processes are one device's own).
    pub restart: Backoff,
    /// A run at least this long resets the wait to `restart.initial`.
    pub stable_after: Duration,
    /// Time between SIGTERM and SIGKILL when a workload is stopped.
    pub stop_grace: Duration,
}

impl ProcessOptions {
    /// Defaults as Kubernetes has them (restarts after 10 s doubling up to 5 min,
    /// reset after 10 min of running, 30 s grace), logs under `log_dir`.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        Self {
            log_dir: log_dir.into(),
            restart: Backoff::new(Duration::from_secs(10), Duration::from_secs(300)),
            stable_after: Duration::from_secs(600),
            stop_grace: Duration::from_secs(30),
        }
    }
}

/// What a container's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcessState {
    /// Alive.
    Running,
    /// Exited (or failed to start) and waiting to be restarted.
    BackingOff,
    /// Exited, and the restart policy says it stays so.
    Exited {
        /// Whether it exited with status 0.
        success: bool,
    },
}

#[derive(Debug)]
struct ContainerStatus {
    state: ProcessState,
    /// Process group of the running process (its pid).
    pid: Option<u32>,
}

/// Everything needed to start one container's process, resolved at apply.
#[derive(Debug, Clone)]
struct ProcessSpec {
    workload: String,
    container: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: PathBuf,
    log_file: PathBuf,
    pid_file: PathBuf,
    restart: RestartPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    fn restarts(self, status: Option<ExitStatus>) -> bool {
        match self {
            Self::Always => true,
            // A process that could not be waited for counts as failed.
            Self::OnFailure => !status.is_some_and(|s| s.success()),
            Self::Never => false,
        }
    }
}

/// One applied workload: its supervisors and how to stop them.
#[derive(Debug)]
struct Supervised {
    containers: Vec<Arc<Mutex<ContainerStatus>>>,
    /// Each container's name and log file.
    log_files: Vec<(String, PathBuf)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervised {
    fn phase(&self) -> WorkloadPhase {
        let states: Vec<ProcessState> = self.containers.iter().map(|c| lock(c).state).collect();
        if states.iter().any(|s| {
            matches!(
                s,
                ProcessState::BackingOff | ProcessState::Exited { success: false }
            )
        }) {
            WorkloadPhase::Failed
        } else if states.contains(&ProcessState::Running) {
            WorkloadPhase::Running
        } else {
            // Every process completed: podman reports such a pod as exited.
            WorkloadPhase::Failed
        }
    }

    /// Stops every process (SIGTERM, then SIGKILL after the grace period) and waits
    /// for the supervisors to finish.
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Kills every process group at once, without waiting: for drop.
    fn kill_now(&self) {
        for container in &self.containers {
            if let Some(pid) = lock(container).pid {
                signal_group(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update under these locks is a single assignment, so a panic in a holder
    // cannot leave a half-written value.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs each container of a workload's pod as a supervised host process.
///
/// Restarts follow the pod's `restartPolicy` (`Always` by default) with a
/// wait doubling per [`ProcessOptions::restart`]. [`list`](WorkloadRuntime::list)
/// reports `Running` when every process runs, `Failed` when one is waiting to be
/// restarted after an exit or exited for good with a non-zero status (and when all
/// completed, as podman reports an exited pod). [`remove`](WorkloadRuntime::remove)
/// sends SIGTERM to each process group and SIGKILL after `stop_grace`.
///
/// Processes are children of the agent: [`shutdown`](Self::shutdown) stops them, and
/// dropping the runtime kills them. Processes left behind by an agent that was
/// killed are found from their pid files and stopped by [`open`](Self::open), so
/// the restarted agent starts from a clean slate and re-applies its configuration.
///
/// Not supported (apply fails naming the field): init containers,
/// `resourceFieldRef`. Volumes other than `configMap` and `secret` ones, volume
/// mounts, ports, probes and images are ignored: a host process has no image and
/// shares the host's network and file system; it finds its volumes' files under
/// `volumes/<volume>/` of its working directory.
///
/// ```no_run
/// # async fn demo() -> Result<(), flotta_agent_lib::RuntimeError> {
/// use flotta_agent_lib::runtime::{ProcessOptions, ProcessRuntime};
/// let runtime = ProcessRuntime::open(ProcessOptions::new("/var/lib/flotta/workloads")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ProcessRuntime {
    options: ProcessOptions,
    workloads: Mutex<BTreeMap<String, Supervised>>,
    /// Serializes apply and remove; `list` only takes the short lock above.
    changes: tokio::sync::Mutex<()>,
}

impl ProcessRuntime {
    /// Creates the log directory and stops processes a previous agent left running
    /// (found from the pid files under it).
    pub async fn open(options: ProcessOptions) -> Result<Self, RuntimeError> {
        tokio::fs::create_dir_all(&options.log_dir)
            .await
            .map_err(|source| RuntimeError::Unavailable {
                reason: format!("cannot create {}", options.log_dir.display()),
                source: Some(Box::new(source)),
            })?;
        stop_leftovers(&options.log_dir, options.stop_grace).await;
        Ok(Self {
            options,
            workloads: Mutex::new(BTreeMap::new()),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// The settings the runtime was opened with.
    pub fn options(&self) -> &ProcessOptions {
        &self.options
    }

    /// The log file of container `container` of workload `workload`.
    pub fn log_file(&self, workload: &str, container: &str) -> PathBuf {
        self.options
            .log_dir
            .join(workload)
            .join(format!("{container}.log"))
    }

    /// Pids of the running processes of `workload`, in container order (`None` for a
    /// container that is not running).
    pub fn pids(&self, workload: &str) -> Vec<Option<u32>> {
        lock(&self.workloads)
            .get(workload)
            .map(|w| w.containers.iter().map(|c| lock(c).pid).collect())
            .unwrap_or_default()
    }

    /// Stops every workload (SIGTERM, then SIGKILL after the grace period). The
    /// runtime stays usable.
    pub async fn shutdown(&self) {
        let _changes = self.changes.lock().await;
        let all = std::mem::take(&mut *lock(&self.workloads));
        for (_, supervised) in all {
            supervised.stop().await;
        }
    }

    fn resolve(
        &self,
        name: &str,
        workload: &Workload,
        inputs: &WorkloadInputs,
    ) -> Result<Vec<ProcessSpec>, String> {
        let text = workload
            .specification
            .as_deref()
            .ok_or("the workload has no pod specification")?;
        let pod: PodSpec = serde_yaml_ng::from_str(text)
            .map_err(|e| format!("the pod specification is not a valid PodSpec: {e}"))?;
        if pod.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err("initContainers are not supported by the process runtime".into());
        }
        if pod.containers.is_empty() {
            return Err("the pod has no containers".into());
        }
        let restart = match pod.restart_policy.as_deref() {
            None | Some("Always") => RestartPolicy::Always,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            Some(other) => {
                return Err(format!(
                    "spec.restartPolicy {other:?} is not Always, OnFailure or Never"
                ));
            }
        };
        let directory = self.options.log_dir.join(name);
        let mut seen = std::collections::BTreeSet::new();
        pod.containers
            .iter()
            .enumerate()
            .map(|(index, container)| {
                let field = format!("spec.containers[{index}]");
                super::check_file_name(&container.name)
                    .map_err(|e| format!("{field}.name: {e}"))?;
                if !seen.insert(container.name.clone()) {
                    return Err(format!(
                        "{field}.name: container {:?} appears twice",
                        container.name
                    ));
                }
                let mut env = inputs
                    .container(&container.name)
                    .map(|c| c.env.clone())
                    .unwrap_or_default();
                env.push((
                    EXPORT_VARIABLE.to_owned(),
                    directory.join(EXPORT_DIR).display().to_string(),
                ));
                let argv: Vec<String> = container
                    .command
                    .iter()
                    .flatten()
                    .chain(container.args.iter().flatten())
                    .map(|arg| expand(arg, &env))
                    .collect();
                if container.command.as_ref().is_none_or(Vec::is_empty) {
                    return Err(format!(
                        "{field}.command is empty: the process runtime runs commands, not images"
                    ));
                }
                let working_dir = container
                    .working_dir
                    .as_ref()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| directory.clone());
                Ok(ProcessSpec {
                    workload: name.to_owned(),
                    container: container.name.clone(),
                    argv,
                    env,
                    working_dir,
                    log_file: directory.join(format!("{}.log", container.name)),
                    pid_file: directory.join(format!("{}.pid", container.name)),
                    restart,
                })
            })
            .collect()
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        for supervised in lock(&self.workloads).values() {
            supervised.kill_now();
        }
    }
}

#[async_trait]
impl WorkloadRuntime for ProcessRuntime {
    fn collects_logs(&self) -> bool {
        true
    }

    fn exports_data(&self) -> bool {
        true
    }

    fn export_dir(&self, name: &str) -> Option<PathBuf> {
        lock(&self.workloads)
            .contains_key(name)
            .then(|| self.options.log_dir.join(name).join(EXPORT_DIR))
    }

    fn log_files(&self, name: &str) -> Vec<(String, PathBuf)> {
        lock(&self.workloads)
            .get(name)
            .map(|w| w.log_files.clone())
            .unwrap_or_default()
    }

    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError> {
        let name = workload
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(RuntimeError::UnnamedWorkload)?;
        // Without the configuration's secrets: a secret reference fails here.
        let inputs =
            WorkloadInputs::resolve(workload, &[]).map_err(|e| RuntimeError::ApplyFailed {
                name,
                reason: e.to_string(),
                source: None,
            })?;
        self.apply_with(workload, &inputs).await
    }

    async fn apply_with(
        &self,
        workload: &Workload,
        inputs: &WorkloadInputs,
    ) -> Result<(), RuntimeError> {
        let name = workload
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(RuntimeError::UnnamedWorkload)?;
        let failed = |reason: String, source: Option<std::io::Error>| RuntimeError::ApplyFailed {
            name: name.clone(),
            reason,
            source: source.map(|e| Box::new(e) as _),
        };
        super::check_file_name(&name).map_err(|e| failed(format!("name: {e}"), None))?;
        let _changes = self.changes.lock().await;
        let specs = self
            .resolve(&name, workload, inputs)
            .map_err(|r| failed(r, None))?;

        let previous = lock(&self.workloads).remove(&name);
        if let Some(previous) = previous {
            previous.stop().await;
        }
        let directory = self.options.log_dir.join(&name);
        tokio::fs::create_dir_all(&directory)
            .await
            .map_err(|e| failed(format!("cannot create {}", directory.display()), Some(e)))?;
        write_volumes(&directory.join("volumes"), inputs)
            .await
            .map_err(|(what, e)| failed(what, Some(e)))?;
        let export = directory.join(EXPORT_DIR);
        tokio::fs::create_dir_all(&export)
            .await
            .map_err(|e| failed(format!("cannot create {}", export.display()), Some(e)))?;

        // Start every process first, so that a container that cannot start leaves
        // nothing of the new definition running.
        let mut started = Vec::with_capacity(specs.len());
        for spec in &specs {
            match spawn(spec) {
                Ok(child) => started.push(child),
                Err(error) => {
                    for mut child in started {
                        terminate(&mut child, Duration::ZERO).await;
                    }
                    for spec in &specs {
                        let _ = std::fs::remove_file(&spec.pid_file);
                    }
                    return Err(failed(
                        format!(
                            "container {} could not start {:?}",
                            spec.container,
                            spec.argv.first().map(String::as_str).unwrap_or_default()
                        ),
                        Some(error),
                    ));
                }
            }
        }

        let (stop, stop_rx) = watch::channel(false);
        let log_files = specs
            .iter()
            .map(|spec| (spec.container.clone(), spec.log_file.clone()))
            .collect();
        let mut containers = Vec::with_capacity(specs.len());
        let mut tasks = Vec::with_capacity(specs.len());
        for (spec, child) in specs.into_iter().zip(started) {
            let status = Arc::new(Mutex::new(ContainerStatus {
                state: ProcessState::Running,
                pid: child.id(),
            }));
            containers.push(status.clone());
            tasks.push(tokio::spawn(supervise(
                spec,
                child,
                status,
                stop_rx.clone(),
                self.options.clone(),
            )));
        }
        tracing::info!(workload = %name, "workload started");
        lock(&self.workloads).insert(
            name,
            Supervised {
                containers,
                log_files,
                stop,
                tasks,
            },
        );
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let _changes = self.changes.lock().await;
        let removed = lock(&self.workloads).remove(name);
        if let Some(supervised) = removed {
            supervised.stop().await;
            tracing::info!(workload = %name, "workload removed");
        }
        // The volume files may hold secrets: they go with the workload (logs stay).
        if super::check_file_name(name).is_ok() {
            let volumes = self.options.log_dir.join(name).join("volumes");
            match tokio::fs::remove_dir_all(&volumes).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RuntimeError::RemoveFailed {
                        name: name.to_owned(),
                        reason: format!("cannot remove {}: {e}", volumes.display()),
                    });
                }
            }
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError> {
        Ok(lock(&self.workloads)
            .iter()
            .map(|(name, supervised)| WorkloadState {
                name: name.clone(),
                phase: supervised.phase(),
            })
            .collect())
    }
}

/// Replaces `<root>` with the volumes' files: each written to a temporary name with
/// its mode, then renamed into place, so a process never reads half a file.
async fn write_volumes(
    root: &Path,
    inputs: &WorkloadInputs,
) -> Result<(), (String, std::io::Error)> {
    use std::os::unix::fs::PermissionsExt as _;
    let at = |path: &Path| format!("cannot write {}", path.display());
    match tokio::fs::remove_dir_all(root).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err((at(root), e)),
    }
    for volume in &inputs.volumes {
        super::check_file_name(&volume.name).map_err(|e| {
            (
                format!("volume {:?}", volume.name),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            )
        })?;
        let dir = root.join(&volume.name);
        for file in &volume.files {
            let path = dir.join(&file.path);
            let parent = path.parent().unwrap_or(&dir).to_owned();
            tokio::fs::create_dir_all(&parent)
                .await
                .map_err(|e| (at(&parent), e))?;
            let temp = parent.join(format!(
                ".{}.tmp",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            let content = file.content.clone();
            let mode = file.mode;
            let temp_for_write = temp.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut out = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&temp_for_write)?;
                out.set_permissions(std::fs::Permissions::from_mode(mode))?;
                out.write_all(&content)?;
                out.sync_all()
            })
            .await
            .map_err(|e| (at(&temp), std::io::Error::other(e)))?
            .map_err(|e| (at(&temp), e))?;
            tokio::fs::rename(&temp, &path)
                .await
                .map_err(|e| (at(&path), e))?;
        }
    }
    Ok(())
}

/// Starts one process, appending its output to its log file, and records its pid
/// file.
fn spawn(spec: &ProcessSpec) -> std::io::Result<Child> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)?;
    let stderr = log.try_clone()?;
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", path)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn()?;
    let pid = child.id().unwrap_or_default();
    let _ = writeln!(
        log,
        "--- flotta: started {program:?} as pid {pid} ({}/{}) ---",
        spec.workload, spec.container
    );
    write_pid_file(&spec.pid_file, pid);
    Ok(child)
}

fn write_pid_file(path: &Path, pid: u32) {
    // The start time tells this process from a later one that reuses the pid.
    let Some(start) = process_start_time(pid) else {
        return;
    };
    if let Err(error) = std::fs::write(path, format!("{pid} {start}\n")) {
        tracing::warn!(path = %path.display(), %error, "cannot write pid file");
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks after boot), `None` for
/// a process that is gone or a zombie.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after it
    // start after the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn signal_group(pid: u32, signal: rustix::process::Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // ESRCH (already gone) is what we want anyway.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// SIGTERM to the process group, SIGKILL after `grace`, and the exit reaped.
async fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let Some(pid) = child.id() else {
        return child.wait().await.ok();
    };
    signal_group(pid, rustix::process::Signal::TERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            signal_group(pid, rustix::process::Signal::KILL);
            child.wait().await.ok()
        }
    };
    // Whatever the leader started and left behind in its group.
    signal_group(pid, rustix::process::Signal::KILL);
    status
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => status.to_string(),
        None => "could not be waited for".to_owned(),
    }
}

fn append_log(path: &Path, line: &str) {
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "--- flotta: {line} ---");
    }
}

/// Resolves once the workload is to stop (or its runtime is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The borrowed value is dropped here: it must not live across an await.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Watches one process: restarts it per the restart policy with a doubling wait,
/// and stops it when `stop` turns true (or its sender is gone).
async fn supervise(
    spec: ProcessSpec,
    mut child: Child,
    status: Arc<Mutex<ContainerStatus>>,
    mut stop: watch::Receiver<bool>,
    options: ProcessOptions,
) {
    // Restarts since the process last ran for `stable_after`.
    let mut restarts = 0u32;
    loop {
        let stable = tokio::time::sleep(options.stable_after);
        tokio::pin!(stable);
        let exit = loop {
            tokio::select! {
                exit = child.wait() => break exit.ok(),
                () = &mut stable, if restarts > 0 => restarts = 0,
                _ = stopped(&mut stop) => {
                    let exit = terminate(&mut child, options.stop_grace).await;
                    append_log(&spec.log_file, &format!("stopped ({})", describe(exit)));
                    let _ = std::fs::remove_file(&spec.pid_file);
                    lock(&status).pid = None;
                    return;
                }
            }
        };
        // Whatever the process started and left behind in its group goes with it.
        if let Some(pid) = lock(&status).pid {
            signal_group(pid, rustix::process::Signal::KILL);
        }
        let _ = std::fs::remove_file(&spec.pid_file);
        append_log(&spec.log_file, &format!("exited ({})", describe(exit)));
        tracing::info!(workload = %spec.workload, container = %spec.container, status = %describe(exit), "process exited");
        if !spec.restart.restarts(exit) {
            *lock(&status) = ContainerStatus {
                state: ProcessState::Exited {
                    success: exit.is_some_and(|s| s.success()),
                },
                pid: None,
            };
            stopped(&mut stop).await;
            return;
        }
        *lock(&status) = ContainerStatus {
            state: ProcessState::BackingOff,
            pid: None,
        };
        // Wait, then start again; a process that cannot start waits longer each time.
        loop {
            let wait = options.restart.cap(restarts);
            restarts = restarts.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut stop) => return,
            }
            match spawn(&spec) {
                Ok(new_child) => {
                    *lock(&status) = ContainerStatus {
                        state: ProcessState::Running,
                        pid: new_child.id(),
                    };
                    child = new_child;
                    break;
                }
                Err(error) => {
                    append_log(&spec.log_file, &format!("could not restart: {error}"));
                    tracing::warn!(workload = %spec.workload, container = %spec.container, %error, "process could not restart");
                }
            }
        }
    }
}

/// Stops the processes named by pid files under `log_dir` (left by an agent that
/// was killed): SIGTERM to their groups, SIGKILL to what is left after `grace`.
async fn stop_leftovers(log_dir: &Path, grace: Duration) {
    let mut leftovers = Vec::new();
    let Ok(workloads) = std::fs::read_dir(log_dir) else {
        return;
    };
    for workload in workloads.flatten() {
        let Ok(files) = std::fs::read_dir(workload.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().is_none_or(|e| e != "pid") {
                continue;
            }
            let recorded = std::fs::read_to_string(&path).ok().and_then(|text| {
                let mut words = text.split_whitespace();
                let pid: u32 = words.next()?.parse().ok()?;
                let start: u64 = words.next()?.parse().ok()?;
                Some((pid, start))
            });
            if let Some((pid, start)) = recorded
                && process_start_time(pid) == Some(start)
            {
                tracing::info!(pid, file = %path.display(), "stopping a process left by an earlier agent");
                signal_group(pid, rustix::process::Signal::TERM);
                leftovers.push((pid, start));
            }
            let _ = std::fs::remove_file(&path);
        }
    }
    // The grace period is a timer: the agent reads no clock here.
    let _ = tokio::time::timeout(grace, async {
        while !leftovers.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            leftovers.retain(|(pid, start)| process_start_time(*pid) == Some(*start));
        }
    })
    .await;
    for (pid, _) in leftovers {
        signal_group(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_read_and_a_missing_process_has_none() {
        assert!(process_start_time(std::process::id()).is_some());
        assert_eq!(process_start_time(u32::MAX), None);
    }
}
