//! The management client: one native class whose methods take the resource kind,
//! each in a blocking form (GIL released while it waits) and an `_async` form
//! returning an asyncio awaitable. `flotta.Client` and `flotta.AsyncClient` (pure
//! Python) give them their typed, per-resource shape.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotta_client::{
    ApiObject, ApplyOutcome, ClientResult, ListParams, ManagementClient, ResourceType,
    ServerSideApply, WatchEvent,
};
use flotta_core::model::{EdgeDeviceSet, EdgeWorkload};
use flotta_core::reconcile::RolloutSubject;
use futures::StreamExt;
use futures::stream::BoxStream;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::errors::client_error;
use crate::runtime::{block_on, runtime, spawn_awaitable};
use crate::value::{from_py, to_py};

type EventStream = BoxStream<'static, ClientResult<WatchEvent<Value>>>;

/// How often a blocking watch wakes up to let Python handle signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

fn resource_type(kind: &str) -> PyResult<ResourceType> {
    ResourceType::from_kind(kind).ok_or_else(|| {
        let kinds: Vec<&str> = ResourceType::ALL.iter().map(|k| k.as_str()).collect();
        PyValueError::new_err(format!(
            "unknown kind {kind:?}; expected one of {}",
            kinds.join(", ")
        ))
    })
}

fn list_params(label_selector: Option<String>, field_selector: Option<String>) -> ListParams {
    ListParams {
        label_selector,
        field_selector,
        ..ListParams::default()
    }
}

fn value_result(py: Python<'_>, result: ClientResult<Value>) -> PyResult<Py<PyAny>> {
    match result {
        Ok(value) => Ok(to_py(py, &value)?.unbind()),
        Err(error) => Err(client_error(py, error)),
    }
}

fn list_result(py: Python<'_>, result: ClientResult<Vec<Value>>) -> PyResult<Py<PyAny>> {
    match result {
        Ok(items) => {
            let items = items
                .iter()
                .map(|item| to_py(py, item))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyList::new(py, items)?.into_any().unbind())
        }
        Err(error) => Err(client_error(py, error)),
    }
}

/// Each outcome as `(index, kind, namespace, name, action, error)`; `action` is
/// `created`, `configured` or `unchanged`, or `None` with the exception in `error`.
fn outcomes_result(py: Python<'_>, outcomes: Vec<ApplyOutcome>) -> PyResult<Py<PyAny>> {
    let rows = PyList::empty(py);
    for outcome in outcomes {
        let (action, error) = match outcome.result {
            Ok(action) => (Some(action.as_str()), None),
            Err(error) => (None, Some(client_error(py, error).into_value(py))),
        };
        rows.append((
            outcome.index,
            outcome.kind,
            outcome.namespace,
            outcome.name,
            action,
            error,
        ))?;
    }
    Ok(rows.into_any().unbind())
}

async fn list_all(
    client: ManagementClient,
    resource: ResourceType,
    namespace: Option<String>,
    params: ListParams,
) -> ClientResult<Vec<Value>> {
    let mut params = params;
    let mut items = Vec::new();
    loop {
        let page = client
            .list_raw(resource, namespace.as_deref(), &params)
            .await?;
        items.extend(page.items);
        match page.continue_token {
            Some(token) if !token.is_empty() => params.continue_token = Some(token),
            _ => return Ok(items),
        }
    }
}

async fn apply_objects(
    client: ManagementClient,
    namespace: String,
    documents: Vec<Value>,
    server_side: Option<ServerSideApply>,
) -> Vec<ApplyOutcome> {
    let mut outcomes = Vec::with_capacity(documents.len());
    for (index, document) in documents.into_iter().enumerate() {
        outcomes.push(match &server_side {
            Some(options) => {
                client
                    .server_side_apply_document(index, &namespace, document, options)
                    .await
            }
            None => client.apply_document(index, &namespace, document).await,
        });
    }
    outcomes
}

async fn apply_text(
    client: ManagementClient,
    namespace: String,
    text: String,
    server_side: Option<ServerSideApply>,
) -> Vec<ApplyOutcome> {
    match &server_side {
        Some(options) => client.server_side_apply(&namespace, &text, options).await,
        None => client.apply(&namespace, &text).await,
    }
}

/// The server-side apply options of an apply call: none without a field manager.
fn server_side_options(field_manager: Option<String>, force: bool) -> Option<ServerSideApply> {
    field_manager.map(|manager| {
        let options = ServerSideApply::new(manager);
        if force { options.force() } else { options }
    })
}

fn object_name(object: &Value) -> PyResult<String> {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| PyValueError::new_err("the object has no metadata.name"))
}

/// Connection to a flotta server's management API (see `flotta.Client`).
#[pyclass(module = "flotta._flotta", frozen)]
pub struct NativeClient {
    inner: ManagementClient,
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (server, token, ca_pem=None, timeout=None))]
    fn new(
        py: Python<'_>,
        server: String,
        token: String,
        ca_pem: Option<String>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let mut builder = ManagementClient::builder(server).token(token);
        if let Some(pem) = ca_pem {
            builder = builder.ca_pem(pem);
        }
        if let Some(seconds) = timeout {
            let timeout = Duration::try_from_secs_f64(seconds)
                .map_err(|_| PyValueError::new_err(format!("invalid timeout {seconds}")))?;
            builder = builder.timeout(timeout);
        }
        let inner = builder.build().map_err(|e| client_error(py, e))?;
        Ok(Self { inner })
    }

    /// A client from a `FlottaClientConfig` file (the server's `admin.yaml`).
    #[staticmethod]
    fn from_config(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let inner = ManagementClient::from_config_file(path).map_err(|e| client_error(py, e))?;
        Ok(Self { inner })
    }

    /// Base URL of the management API.
    #[getter]
    fn server(&self) -> String {
        self.inner.server().to_owned()
    }

    /// Reads one object.
    fn get(
        &self,
        py: Python<'_>,
        kind: &str,
        namespace: String,
        name: String,
    ) -> PyResult<Py<PyAny>> {
        let future = self.get_future(kind, namespace, name)?;
        value_result(py, block_on(py, future)?)
    }

    /// Awaitable form of `get`.
    fn get_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        namespace: String,
        name: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn_awaitable(py, self.get_future(kind, namespace, name)?, value_result)
    }

    /// Lists every matching object (all pages).
    #[pyo3(signature = (kind, namespace, label_selector, field_selector))]
    fn list(
        &self,
        py: Python<'_>,
        kind: &str,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let future = self.list_future(kind, namespace, label_selector, field_selector)?;
        list_result(py, block_on(py, future)?)
    }

    /// Awaitable form of `list`.
    #[pyo3(signature = (kind, namespace, label_selector, field_selector))]
    fn list_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn_awaitable(
            py,
            self.list_future(kind, namespace, label_selector, field_selector)?,
            list_result,
        )
    }

    /// Creates an object.
    fn create(
        &self,
        py: Python<'_>,
        kind: &str,
        namespace: String,
        object: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let future = self.create_future(kind, namespace, object)?;
        value_result(py, block_on(py, future)?)
    }

    /// Awaitable form of `create`.
    fn create_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        namespace: String,
        object: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn_awaitable(
            py,
            self.create_future(kind, namespace, object)?,
            value_result,
        )
    }

    /// Replaces an object (compare-and-swap on `metadata.resourceVersion` when set).
    fn replace(
        &self,
        py: Python<'_>,
        kind: &str,
        namespace: String,
        object: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let future = self.replace_future(kind, namespace, object)?;
        value_result(py, block_on(py, future)?)
    }

    /// Awaitable form of `replace`.
    fn replace_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        namespace: String,
        object: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn_awaitable(
            py,
            self.replace_future(kind, namespace, object)?,
            value_result,
        )
    }

    /// Applies a JSON merge patch.
    fn patch(
        &self,
        py: Python<'_>,
        kind: &str,
        namespace: String,
        name: String,
        merge_patch: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let future = self.patch_future(kind, namespace, name, merge_patch)?;
        value_result(py, block_on(py, future)?)
    }

    /// Awaitable form of `patch`.
    fn patch_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        namespace: String,
        name: String,
        merge_patch: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn_awaitable(
            py,
            self.patch_future(kind, namespace, name, merge_patch)?,
            value_result,
        )
    }

    /// Approves (`approve` true) or denies an enrolment request, as
    /// `ManagementClient::approve` and `deny` do; returns the request.
    fn decide_enrolment(
        &self,
        py: Python<'_>,
        namespace: String,
        name: String,
        approve: bool,
    ) -> PyResult<Py<PyAny>> {
        let future = self.decide_enrolment_future(namespace, name, approve);
        value_result(py, block_on(py, future)?)
    }

    /// Awaitable form of `decide_enrolment`.
    fn decide_enrolment_async<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        name: String,
        approve: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn_awaitable(
            py,
            self.decide_enrolment_future(namespace, name, approve),
            value_result,
        )
    }

    /// A rollout operation on workload (or, with `kind="EdgeDeviceSet"`, device
    /// set) `name`, as `ManagementClient`'s rollout methods: `status` (the record or
    /// `None`), `history` (revisions), `pause`, `resume`, `approve`, `undo` (the
    /// object).
    #[pyo3(signature = (namespace, name, action, kind = "EdgeWorkload"))]
    fn rollout(
        &self,
        py: Python<'_>,
        namespace: String,
        name: String,
        action: &str,
        kind: &str,
    ) -> PyResult<Py<PyAny>> {
        let future = self.rollout_future(namespace, name, action, kind)?;
        value_result(py, block_on(py, future)?)
    }

    /// Awaitable form of `rollout`.
    #[pyo3(signature = (namespace, name, action, kind = "EdgeWorkload"))]
    fn rollout_async<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        name: String,
        action: &str,
        kind: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn_awaitable(
            py,
            self.rollout_future(namespace, name, action, kind)?,
            value_result,
        )
    }

    /// Deletes an object and returns its last state.
    fn delete(
        &self,
        py: Python<'_>,
        kind: &str,
        namespace: String,
        name: String,
    ) -> PyResult<Py<PyAny>> {
        let future = self.delete_future(kind, namespace, name)?;
        value_result(py, block_on(py, future)?)
    }

    /// Awaitable form of `delete`.
    fn delete_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        namespace: String,
        name: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        spawn_awaitable(py, self.delete_future(kind, namespace, name)?, value_result)
    }

    /// Creates or updates every document of a YAML/JSON manifest text; with a
    /// `field_manager`, as a server-side apply for it (`force` takes over
    /// conflicting fields).
    #[pyo3(signature = (namespace, text, field_manager=None, force=false))]
    fn apply_text(
        &self,
        py: Python<'_>,
        namespace: String,
        text: String,
        field_manager: Option<String>,
        force: bool,
    ) -> PyResult<Py<PyAny>> {
        let options = server_side_options(field_manager, force);
        let outcomes = block_on(py, apply_text(self.inner.clone(), namespace, text, options))?;
        outcomes_result(py, outcomes)
    }

    /// Awaitable form of `apply_text`.
    #[pyo3(signature = (namespace, text, field_manager=None, force=false))]
    fn apply_text_async<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        text: String,
        field_manager: Option<String>,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = server_side_options(field_manager, force);
        spawn_awaitable(
            py,
            apply_text(self.inner.clone(), namespace, text, options),
            outcomes_result,
        )
    }

    /// Creates or updates every object of a list of dicts; with a `field_manager`,
    /// as a server-side apply.
    #[pyo3(signature = (namespace, objects, field_manager=None, force=false))]
    fn apply_objects(
        &self,
        py: Python<'_>,
        namespace: String,
        objects: Vec<Bound<'_, PyAny>>,
        field_manager: Option<String>,
        force: bool,
    ) -> PyResult<Py<PyAny>> {
        let documents = objects.iter().map(from_py).collect::<PyResult<Vec<_>>>()?;
        let options = server_side_options(field_manager, force);
        let outcomes = block_on(
            py,
            apply_objects(self.inner.clone(), namespace, documents, options),
        )?;
        outcomes_result(py, outcomes)
    }

    /// Awaitable form of `apply_objects`.
    #[pyo3(signature = (namespace, objects, field_manager=None, force=false))]
    fn apply_objects_async<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        objects: Vec<Bound<'py, PyAny>>,
        field_manager: Option<String>,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let documents = objects.iter().map(from_py).collect::<PyResult<Vec<_>>>()?;
        let options = server_side_options(field_manager, force);
        spawn_awaitable(
            py,
            apply_objects(self.inner.clone(), namespace, documents, options),
            outcomes_result,
        )
    }

    /// Watches objects. The watch connects at once, in the background.
    #[pyo3(signature = (kind, namespace, label_selector, field_selector))]
    fn watch(
        &self,
        kind: &str,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
    ) -> PyResult<NativeWatch> {
        let stream = self.event_stream(kind, namespace, label_selector, field_selector)?;
        NativeWatch::start(stream)
    }
}

impl NativeClient {
    fn get_future(
        &self,
        kind: &str,
        namespace: String,
        name: String,
    ) -> PyResult<impl Future<Output = ClientResult<Value>> + Send + 'static> {
        let (client, resource) = (self.inner.clone(), resource_type(kind)?);
        Ok(async move { client.get_raw(resource, &namespace, &name).await })
    }

    fn list_future(
        &self,
        kind: &str,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
    ) -> PyResult<impl Future<Output = ClientResult<Vec<Value>>> + Send + 'static> {
        let (client, resource) = (self.inner.clone(), resource_type(kind)?);
        Ok(list_all(
            client,
            resource,
            namespace,
            list_params(label_selector, field_selector),
        ))
    }

    fn create_future(
        &self,
        kind: &str,
        namespace: String,
        object: &Bound<'_, PyAny>,
    ) -> PyResult<impl Future<Output = ClientResult<Value>> + Send + 'static> {
        let (client, resource) = (self.inner.clone(), resource_type(kind)?);
        let object = from_py(object)?;
        Ok(async move { client.create_raw(resource, &namespace, &object).await })
    }

    fn replace_future(
        &self,
        kind: &str,
        namespace: String,
        object: &Bound<'_, PyAny>,
    ) -> PyResult<impl Future<Output = ClientResult<Value>> + Send + 'static> {
        let (client, resource) = (self.inner.clone(), resource_type(kind)?);
        let object = from_py(object)?;
        let name = object_name(&object)?;
        Ok(async move {
            client
                .replace_raw(resource, &namespace, &name, &object)
                .await
        })
    }

    fn patch_future(
        &self,
        kind: &str,
        namespace: String,
        name: String,
        merge_patch: &Bound<'_, PyAny>,
    ) -> PyResult<impl Future<Output = ClientResult<Value>> + Send + 'static> {
        let (client, resource) = (self.inner.clone(), resource_type(kind)?);
        let merge_patch = from_py(merge_patch)?;
        Ok(async move {
            client
                .patch_raw(resource, &namespace, &name, &merge_patch)
                .await
        })
    }

    fn rollout_future(
        &self,
        namespace: String,
        name: String,
        action: &str,
        kind: &str,
    ) -> PyResult<impl Future<Output = ClientResult<Value>> + Send + 'static> {
        let action = match action {
            "status" => RolloutAction::Status,
            "history" => RolloutAction::History,
            "pause" => RolloutAction::Pause,
            "resume" => RolloutAction::Resume,
            "approve" => RolloutAction::Approve,
            "undo" => RolloutAction::Undo,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "unknown rollout action {other:?}: status, history, pause, resume, approve or undo"
                )));
            }
        };
        let on_set = match kind {
            "EdgeWorkload" => false,
            "EdgeDeviceSet" => true,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "{other:?} has no rollouts: only EdgeWorkload and EdgeDeviceSet do"
                )));
            }
        };
        let client = self.inner.clone();
        Ok(async move {
            if on_set {
                rollout_action::<EdgeDeviceSet>(&client, &namespace, &name, action).await
            } else {
                rollout_action::<EdgeWorkload>(&client, &namespace, &name, action).await
            }
        })
    }

    fn decide_enrolment_future(
        &self,
        namespace: String,
        name: String,
        approve: bool,
    ) -> impl Future<Output = ClientResult<Value>> + Send + 'static {
        let client = self.inner.clone();
        async move {
            let request = if approve {
                client.approve(&namespace, &name).await?
            } else {
                client.deny(&namespace, &name).await?
            };
            serde_json::to_value(request).map_err(|source| flotta_client::ClientError::Encode {
                what: "EdgeDeviceSignedRequest".into(),
                source,
            })
        }
    }

    fn delete_future(
        &self,
        kind: &str,
        namespace: String,
        name: String,
    ) -> PyResult<impl Future<Output = ClientResult<Value>> + Send + 'static> {
        let (client, resource) = (self.inner.clone(), resource_type(kind)?);
        Ok(async move { client.delete_raw(resource, &namespace, &name).await })
    }

    fn event_stream(
        &self,
        kind: &str,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
    ) -> PyResult<EventStream> {
        let resource = resource_type(kind)?;
        let params = list_params(label_selector, field_selector);
        Ok(self
            .inner
            .watch_raw(resource, namespace.as_deref(), &params)
            .boxed())
    }
}

/// The next event worth reporting: transient failures (the stream reconnects by
/// itself) are skipped; `None` when the stream ended.
async fn next_event(stream: &mut EventStream) -> Option<ClientResult<WatchEvent<Value>>> {
    loop {
        match stream.next().await? {
            Err(error) if error.is_retryable() => continue,
            other => return Some(other),
        }
    }
}

/// `(type, object)`; for `RESTARTED` the object is the list of every current object.
fn event_to_py(py: Python<'_>, event: ClientResult<WatchEvent<Value>>) -> PyResult<Py<PyAny>> {
    let event = event.map_err(|e| client_error(py, e))?;
    let name = event.type_name();
    let object = match &event {
        WatchEvent::Added(v) | WatchEvent::Modified(v) | WatchEvent::Deleted(v) => to_py(py, v)?,
        WatchEvent::Restarted(items) => to_py(py, &Value::Array(items.clone()))?,
    };
    Ok((name, object).into_pyobject(py)?.into_any().unbind())
}

/// Buffered events per watch before the connection is left unread (backpressure).
const WATCH_BUFFER: usize = 256;

type EventReceiver = mpsc::Receiver<ClientResult<WatchEvent<Value>>>;

/// A watch (see `flotta.Watch` and `flotta.AsyncWatch`): a task on the module's
/// runtime reads the stream from the moment the watch is made and hands events over
/// through a channel, so neither form misses changes made before its first read.
#[pyclass(module = "flotta._flotta", frozen)]
pub struct NativeWatch {
    events: Arc<tokio::sync::Mutex<EventReceiver>>,
    reader: AbortHandle,
}

impl NativeWatch {
    fn start(mut stream: EventStream) -> PyResult<Self> {
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let reader = runtime()?.spawn(async move {
            while let Some(item) = next_event(&mut stream).await {
                if sender.send(item).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            events: Arc::new(tokio::sync::Mutex::new(receiver)),
            reader: reader.abort_handle(),
        })
    }
}

impl Drop for NativeWatch {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[pymethods]
impl NativeWatch {
    /// The next `(type, object)` event; `None` when `timeout` seconds passed
    /// without one; raises `StopIteration` when the watch ended.
    #[pyo3(signature = (timeout=None))]
    fn next_event(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        let deadline = match timeout {
            Some(seconds) => Some(
                tokio::time::Instant::now()
                    + Duration::try_from_secs_f64(seconds)
                        .map_err(|_| PyValueError::new_err(format!("invalid timeout {seconds}")))?,
            ),
            None => None,
        };
        loop {
            let slice_end = tokio::time::Instant::now() + SIGNAL_CHECK;
            let wake = deadline.map_or(slice_end, |d| d.min(slice_end));
            let events = self.events.clone();
            // Outer None: this slice timed out; inner None: the watch ended.
            let polled = block_on(py, async move {
                let mut events = events.lock().await;
                tokio::time::timeout_at(wake, events.recv()).await.ok()
            })?;
            match polled {
                Some(Some(event)) => return event_to_py(py, event).map(Some),
                Some(None) => return Err(PyStopIteration::new_err(())),
                None => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Awaitable of the next `(type, object)` event; raises `StopAsyncIteration`
    /// when the watch ended.
    fn next_event_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = self.events.clone();
        let future = async move { events.lock().await.recv().await };
        spawn_awaitable(py, future, |py, item| match item {
            Some(event) => event_to_py(py, event),
            None => Err(PyStopAsyncIteration::new_err(())),
        })
    }

    /// Ends the watch and closes its connection.
    fn close(&self) {
        self.reader.abort();
    }
}

/// A rollout control the Python `rollout` call names.
#[derive(Clone, Copy)]
enum RolloutAction {
    Status,
    History,
    Pause,
    Resume,
    Approve,
    Undo,
}

/// Runs `action` on the rollout of the workload or device set `T`, as JSON.
async fn rollout_action<T: ApiObject + RolloutSubject>(
    client: &ManagementClient,
    namespace: &str,
    name: &str,
    action: RolloutAction,
) -> ClientResult<Value> {
    let encode = |source| flotta_client::ClientError::Encode {
        what: "rollout".into(),
        source,
    };
    match action {
        RolloutAction::Status => {
            serde_json::to_value(client.rollout_status_of::<T>(namespace, name).await?)
        }
        RolloutAction::History => {
            serde_json::to_value(client.rollout_history_of::<T>(namespace, name).await?)
        }
        RolloutAction::Pause => {
            serde_json::to_value(client.pause_rollout_of::<T>(namespace, name).await?)
        }
        RolloutAction::Resume => {
            serde_json::to_value(client.resume_rollout_of::<T>(namespace, name).await?)
        }
        RolloutAction::Approve => {
            serde_json::to_value(client.approve_rollout_of::<T>(namespace, name).await?)
        }
        RolloutAction::Undo => {
            serde_json::to_value(client.undo_rollout_of::<T>(namespace, name).await?)
        }
    }
    .map_err(encode)
}
