//! `flotta.Agent`: the Rust device agent on the module's runtime, with its
//! workloads run by a Python object (see `PythonRuntime` for the contract).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use flotta_agent_lib::os::{BootedOs, Deployment, OsError, OsHealth, OsUpdater};
use flotta_agent_lib::{
    Agent, AgentEvent, AgentHandle, AgentPhase, AgentTiming, HeartbeatResult, RuntimeError,
    WorkloadRuntime, WorkloadState,
};
use flotta_core::reconcile::{WorkloadInputs, WorkloadPhase};
use flotta_core::wire::{OsInformation, Workload};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot};

use crate::errors::{self, with_causes};
use crate::runtime::{block_on, runtime};
use crate::value::to_py;

/// Most recent agent events kept for `Agent.events()`.
const EVENT_LOG_LEN: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one assignment or push: the value is whole after a
    // panic elsewhere.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A `WorkloadRuntime` whose work a Python object does.
///
/// The object has `apply(workload: dict) -> None`, `remove(name: str) -> None` and
/// `list() -> list` (names, or dicts / objects with `name` and `phase`). Each call
/// runs on a blocking-pool thread that takes the GIL only for the call. Which
/// definition each workload was applied from is the agent's bookkeeping.
struct PythonRuntime {
    object: Arc<Py<PyAny>>,
}

fn python_failure(py: Python<'_>, error: &PyErr) -> String {
    let text = error
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let name = error
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    if text.is_empty() {
        name
    } else {
        format!("{name}: {text}")
    }
}

fn phase_of(text: &str) -> WorkloadPhase {
    WorkloadPhase::from_reported(text)
}

fn state_of(item: &Bound<'_, PyAny>) -> PyResult<(String, WorkloadPhase)> {
    if let Ok(name) = item.extract::<String>() {
        return Ok((name, WorkloadPhase::Running));
    }
    let (name, phase) = if let Ok(dict) = item.cast::<PyDict>() {
        (dict.get_item("name")?, dict.get_item("phase")?)
    } else {
        (item.getattr("name").ok(), item.getattr("phase").ok())
    };
    let name: String = name
        .ok_or_else(|| PyValueError::new_err("a listed workload has no name"))?
        .extract()?;
    let phase = match phase {
        Some(phase) if !phase.is_none() => phase_of(&phase.str()?.to_string()),
        _ => WorkloadPhase::Running,
    };
    Ok((name, phase))
}

/// The resolved inputs as Python values: env as a dict, file contents as bytes.
fn inputs_to_py<'py>(py: Python<'py>, inputs: &WorkloadInputs) -> PyResult<Bound<'py, PyDict>> {
    let containers = pyo3::types::PyList::empty(py);
    for container in &inputs.containers {
        let env = PyDict::new(py);
        for (key, value) in &container.env {
            env.set_item(key, value)?;
        }
        let item = PyDict::new(py);
        item.set_item("name", &container.name)?;
        item.set_item("env", env)?;
        containers.append(item)?;
    }
    let volumes = pyo3::types::PyList::empty(py);
    for volume in &inputs.volumes {
        let files = pyo3::types::PyList::empty(py);
        for file in &volume.files {
            let item = PyDict::new(py);
            item.set_item("path", &file.path)?;
            item.set_item("content", pyo3::types::PyBytes::new(py, &file.content))?;
            item.set_item("mode", file.mode)?;
            files.append(item)?;
        }
        let item = PyDict::new(py);
        item.set_item("name", &volume.name)?;
        item.set_item("secret", volume.secret)?;
        item.set_item("files", files)?;
        volumes.append(item)?;
    }
    let out = PyDict::new(py);
    out.set_item("containers", containers)?;
    out.set_item("volumes", volumes)?;
    out.set_item("auth_file", inputs.auth_file.as_deref())?;
    Ok(out)
}

/// Runs `work` on `object` on a blocking-pool thread that takes the GIL only for it.
async fn call_python<T: Send + 'static>(
    object: &Arc<Py<PyAny>>,
    work: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let object = object.clone();
    tokio::task::spawn_blocking(move || {
        Python::try_attach(|py| work(py, object.bind(py)))
            .unwrap_or_else(|| Err("the Python interpreter is shutting down".into()))
    })
    .await
    .unwrap_or_else(|e| Err(format!("the Python call did not finish: {e}")))
}

impl PythonRuntime {
    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        call_python(&self.object, work).await
    }
}

/// An `OsUpdater` whose steps a Python object takes (a custom OS backend: A/B
/// partitions, an image swap, a simulation). The agent owns the sequence and
/// persists it across the reboot; the object only carries out each step.
///
/// The object has `booted() -> dict` (`booted`, `staged`, `rollback`: each `None`,
/// a commit id `str`, or a dict with `id` and optional `image`), `stage(target:
/// dict)` (the Edge API's `os` message: `commit_id`, `image`,
/// `hosted_objects_url`, ...), `activate()`, `rollback()`, `reboot()` and
/// `health() -> bool`. Raising fails the step with the exception's text.
struct PythonOsUpdater {
    object: Arc<Py<PyAny>>,
}

/// The methods a Python OS updater must have.
const OS_UPDATER_METHODS: [&str; 6] = [
    "booted", "stage", "activate", "rollback", "reboot", "health",
];

fn deployment_of(value: &Bound<'_, PyAny>) -> PyResult<Option<Deployment>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(id) = value.extract::<String>() {
        return Ok(Some(Deployment::commit(id)));
    }
    let id: String = value.get_item("id")?.extract()?;
    let image = match value.get_item("image") {
        Ok(image) if !image.is_none() => Some(image.extract::<String>()?),
        _ => None,
    };
    Ok(Some(Deployment { id, image }))
}

impl PythonOsUpdater {
    /// Calls `method(*args)` and maps a raised exception to a failed `operation`.
    async fn step(&self, operation: &'static str) -> Result<(), OsError> {
        call_python(&self.object, move |py, object| {
            object
                .call_method0(operation)
                .map(drop)
                .map_err(|e| python_failure(py, &e))
        })
        .await
        .map_err(|reason| OsError::Failed { operation, reason })
    }
}

#[async_trait]
impl OsUpdater for PythonOsUpdater {
    async fn booted(&self) -> Result<BootedOs, OsError> {
        call_python(&self.object, |py, object| {
            let read = || -> PyResult<BootedOs> {
                let value = object.call_method0("booted")?;
                let field = |key: &str| -> PyResult<Option<Deployment>> {
                    match value.get_item(key) {
                        Ok(item) => deployment_of(&item),
                        Err(_) => Ok(None),
                    }
                };
                Ok(BootedOs {
                    booted: field("booted")?,
                    staged: field("staged")?,
                    rollback: field("rollback")?,
                })
            };
            read().map_err(|e| python_failure(py, &e))
        })
        .await
        .map_err(|reason| OsError::Failed {
            operation: "status",
            reason,
        })
    }

    async fn stage(&self, target: &OsInformation) -> Result<(), OsError> {
        let value = serde_json::to_value(target).map_err(|e| OsError::Failed {
            operation: "stage",
            reason: format!("cannot encode the target: {e}"),
        })?;
        call_python(&self.object, move |py, object| {
            let target = to_py(py, &value).map_err(|e| python_failure(py, &e))?;
            object
                .call_method1("stage", (target,))
                .map(drop)
                .map_err(|e| python_failure(py, &e))
        })
        .await
        .map_err(|reason| OsError::Failed {
            operation: "stage",
            reason,
        })
    }

    async fn activate(&self) -> Result<(), OsError> {
        self.step("activate").await
    }

    async fn rollback(&self) -> Result<(), OsError> {
        self.step("rollback").await
    }

    async fn reboot(&self) -> Result<(), OsError> {
        self.step("reboot").await
    }

    async fn health(&self) -> Result<OsHealth, OsError> {
        let healthy = call_python(&self.object, |py, object| {
            object
                .call_method0("health")
                .and_then(|v| v.is_truthy())
                .map_err(|e| python_failure(py, &e))
        })
        .await
        .map_err(|reason| OsError::Failed {
            operation: "health",
            reason,
        })?;
        Ok(if healthy {
            OsHealth::Healthy
        } else {
            OsHealth::Unhealthy
        })
    }
}

#[async_trait]
impl WorkloadRuntime for PythonRuntime {
    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError> {
        self.apply_with(workload, &WorkloadInputs::default()).await
    }

    /// Calls the Python runtime's `apply_with(workload, inputs)` when it has one
    /// (`inputs`: `containers` [{name, env: {NAME: value}}], `volumes` [{name,
    /// secret, files: [{path, content (bytes), mode}]}], `auth_file`), else
    /// `apply(workload)`.
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
        let value = serde_json::to_value(workload).map_err(|e| RuntimeError::ApplyFailed {
            name: name.clone(),
            reason: format!("cannot encode the workload: {e}"),
            source: None,
        })?;
        let inputs = inputs.clone();
        let result = self
            .call(move |py, object| {
                let dict = to_py(py, &value).map_err(|e| python_failure(py, &e))?;
                let with_inputs = object
                    .hasattr("apply_with")
                    .map_err(|e| python_failure(py, &e))?;
                if with_inputs {
                    let inputs = inputs_to_py(py, &inputs).map_err(|e| python_failure(py, &e))?;
                    object.call_method1("apply_with", (dict, inputs))
                } else {
                    object.call_method1("apply", (dict,))
                }
                .map(drop)
                .map_err(|e| python_failure(py, &e))
            })
            .await;
        result.map_err(|reason| RuntimeError::ApplyFailed {
            name,
            reason,
            source: None,
        })
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let owned = name.to_owned();
        self.call(move |py, object| {
            object
                .call_method1("remove", (owned,))
                .map(drop)
                .map_err(|e| python_failure(py, &e))
        })
        .await
        .map_err(|reason| RuntimeError::RemoveFailed {
            name: name.to_owned(),
            reason,
        })
    }

    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError> {
        let listed = self
            .call(|py, object| {
                let items = object
                    .call_method0("list")
                    .map_err(|e| python_failure(py, &e))?;
                let iter = items.try_iter().map_err(|e| python_failure(py, &e))?;
                let mut states = Vec::new();
                for item in iter {
                    let item = item.map_err(|e| python_failure(py, &e))?;
                    states.push(state_of(&item).map_err(|e| python_failure(py, &e))?);
                }
                Ok(states)
            })
            .await
            .map_err(|reason| RuntimeError::ListFailed { reason })?;
        let mut states: Vec<WorkloadState> = listed
            .into_iter()
            .map(|(name, phase)| WorkloadState { name, phase })
            .collect();
        states.sort_by(|a, b| a.name.cmp(&b.name));
        states.dedup_by(|a, b| a.name == b.name);
        Ok(states)
    }
}

/// Core's phase name in the kebab case of Python's API: `AwaitingApproval` →
/// `awaiting-approval`.
fn phase_name(phase: &AgentPhase) -> String {
    let mut name = String::new();
    for (i, c) in phase.as_str().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

fn event_json(event: &AgentEvent) -> Value {
    match event {
        AgentEvent::PhaseChanged(phase) => {
            json!({"type": "phase-changed", "phase": phase_name(phase)})
        }
        AgentEvent::Registered => json!({"type": "registered"}),
        AgentEvent::Resumed => json!({"type": "resumed"}),
        AgentEvent::ConfigApplied { version } => {
            json!({"type": "config-applied", "version": version})
        }
        AgentEvent::ApplyFailed { version, reason } => {
            json!({"type": "apply-failed", "version": version, "reason": reason})
        }
        AgentEvent::RolledBack {
            failed_version,
            to_version,
            complete,
        } => json!({
            "type": "rolled-back",
            "failed_version": failed_version,
            "to_version": to_version,
            "complete": complete,
        }),
        AgentEvent::HeartbeatDelivered => json!({"type": "heartbeat-delivered"}),
        AgentEvent::HeartbeatFailed { reason } => {
            json!({"type": "heartbeat-failed", "reason": reason})
        }
        _ => json!({"type": "other"}),
    }
}

fn status_json(handle: &AgentHandle) -> Value {
    let status = handle.status();
    let heartbeat = match &status.last_heartbeat {
        Some(HeartbeatResult::Delivered { at }) => {
            json!({"delivered": true, "at": at.unix_timestamp()})
        }
        Some(HeartbeatResult::Failed {
            at,
            reason,
            consecutive_failures,
        }) => json!({
            "delivered": false,
            "at": at.unix_timestamp(),
            "reason": reason,
            "consecutive_failures": consecutive_failures,
        }),
        _ => Value::Null,
    };
    let os_update = status.os_update.as_ref().map(|os| {
        json!({
            "phase": os.phase.as_str(),
            "target": os.target,
            "message": os.message,
        })
    });
    json!({
        "phase": status.phase.as_ref().map(phase_name),
        "config_version": status.config_version,
        "failed_version": status.failed_version,
        "last_heartbeat": heartbeat,
        "os_update": os_update,
    })
}

struct Running {
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// The agent behind `flotta.Agent`.
#[pyclass(module = "flotta._flotta", frozen)]
pub struct NativeAgent {
    agent: Arc<Agent>,
    handle: AgentHandle,
    events: Arc<Mutex<VecDeque<Value>>>,
    running: Mutex<Option<Running>>,
}

fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("invalid {what} {value}")))
}

#[pymethods]
impl NativeAgent {
    #[new]
    #[pyo3(signature = (*, server, ca_pem, registration_cert_pem, registration_key_pem, device_id, state_dir, runtime, namespace, labels, heartbeat_period=None, config_wait=None, os_updater=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        server: String,
        ca_pem: String,
        registration_cert_pem: String,
        registration_key_pem: String,
        device_id: String,
        state_dir: std::path::PathBuf,
        runtime: Py<PyAny>,
        namespace: String,
        labels: BTreeMap<String, String>,
        heartbeat_period: Option<f64>,
        config_wait: Option<f64>,
        os_updater: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        for method in ["apply", "remove", "list"] {
            if !runtime.bind(py).hasattr(method)? {
                return Err(PyValueError::new_err(format!(
                    "the workload runtime has no {method}() method"
                )));
            }
        }
        let mut timing = AgentTiming::default();
        if let Some(period) = heartbeat_period {
            timing = timing.with_heartbeat_period(seconds("heartbeat_period", period)?);
        }
        if let Some(wait) = config_wait {
            timing = timing.with_config_wait(seconds("config_wait", wait)?);
        }
        let mut builder = Agent::builder()
            .server(server)
            .ca_pem(ca_pem)
            .registration_identity(registration_cert_pem, registration_key_pem)
            .device_id(device_id)
            .namespace(namespace)
            .state_dir(state_dir)
            .timing(timing)
            .runtime(Arc::new(PythonRuntime {
                object: Arc::new(runtime),
            }));
        if let Some(updater) = os_updater {
            for method in OS_UPDATER_METHODS {
                if !updater.bind(py).hasattr(method)? {
                    return Err(PyValueError::new_err(format!(
                        "the OS updater has no {method}() method"
                    )));
                }
            }
            builder = builder.os_updater(Arc::new(PythonOsUpdater {
                object: Arc::new(updater),
            }));
        }
        for (key, value) in labels {
            builder = builder.label(key, value);
        }
        let agent = builder
            .build()
            .map_err(|e| errors::raise(py, "AgentError", (with_causes(&e),), None))?;
        let handle = agent.handle();
        Ok(Self {
            agent: Arc::new(agent),
            handle,
            events: Arc::new(Mutex::new(VecDeque::new())),
            running: Mutex::new(None),
        })
    }

    /// The device id.
    #[getter]
    fn device_id(&self) -> String {
        self.agent.device_id().to_owned()
    }

    /// Starts the agent on the module's runtime threads; returns at once.
    fn start(&self) -> PyResult<()> {
        let mut running = lock(&self.running);
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Err(PyRuntimeError::new_err("the agent is already running"));
        }
        let runtime = runtime()?;
        let mut receiver = self.handle.subscribe();
        let log = self.events.clone();
        runtime.spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => {
                        let mut log = lock(&log);
                        if log.len() == EVENT_LOG_LEN {
                            log.pop_front();
                        }
                        log.push_back(event_json(&event));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let (shutdown, stop) = oneshot::channel::<()>();
        let agent = self.agent.clone();
        let task = runtime.spawn(async move {
            agent
                .run(async {
                    // A dropped sender (the Python object went away) also stops it.
                    let _ = stop.await;
                })
                .await
                .map_err(|e| with_causes(&e))
        });
        *running = Some(Running { shutdown, task });
        Ok(())
    }

    /// Stops the agent and waits for it (at most `timeout` seconds); raises
    /// `flotta.AgentError` if it had stopped on an error.
    #[pyo3(signature = (timeout=10.0))]
    fn stop(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let Some(Running { shutdown, task }) = lock(&self.running).take() else {
            return Ok(());
        };
        let _ = shutdown.send(());
        let limit = seconds("timeout", timeout)?;
        let outcome = block_on(py, async move { tokio::time::timeout(limit, task).await })?;
        match outcome {
            Err(_) => Err(errors::raise(
                py,
                "AgentError",
                (format!("the agent did not stop within {timeout} s"),),
                None,
            )),
            Ok(Err(join)) => Err(errors::raise(
                py,
                "AgentError",
                (format!("the agent task failed: {join}"),),
                None,
            )),
            Ok(Ok(Err(message))) => Err(errors::raise(py, "AgentError", (message,), None)),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }

    /// Whether the agent task is running.
    #[getter]
    fn running(&self) -> bool {
        lock(&self.running)
            .as_ref()
            .is_some_and(|r| !r.task.is_finished())
    }

    /// A snapshot of the agent's state as a dict.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &status_json(&self.handle))
    }

    /// The most recent events (oldest first), as dicts with a `type` key.
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events: Vec<Value> = lock(&self.events).iter().cloned().collect();
        to_py(py, &Value::Array(events))
    }
}
