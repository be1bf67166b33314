//! The management client: thin wrappers over `flotta_client::ManagementClient`.

use std::pin::Pin;
use std::sync::Arc;

use flotta_client::{ClientError, ListParams, ResourceType};
use flotta_core::manifest::AnyResource;
use flotta_core::model::{
    ConfigMap, EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeWorkload, Secret,
};
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::error::FlottaError;
use crate::manifest::{Resource, ResourceKind};

/// What `apply` did with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ApplyAction {
    /// The object did not exist and was created.
    Created,
    /// The object existed and was replaced.
    Configured,
    /// The object existed unchanged: nothing was sent.
    Unchanged,
    /// Sent as a server-side apply for a field manager.
    ServerSideApplied,
}

impl From<flotta_client::ApplyAction> for ApplyAction {
    fn from(action: flotta_client::ApplyAction) -> Self {
        match action {
            flotta_client::ApplyAction::Created => Self::Created,
            flotta_client::ApplyAction::Configured => Self::Configured,
            flotta_client::ApplyAction::Unchanged => Self::Unchanged,
            flotta_client::ApplyAction::ServerSideApplied => Self::ServerSideApplied,
        }
    }
}

/// The outcome of applying one document of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ApplyOutcome {
    /// Zero-based index of the document (empty documents count).
    pub index: u32,
    /// The document's `kind`, when it has one.
    pub kind: Option<String>,
    /// The namespace the object went to.
    pub namespace: Option<String>,
    /// The object's name, when it has one.
    pub name: Option<String>,
    /// What was done; `None` when the document failed.
    pub action: Option<ApplyAction>,
    /// Why the document failed.
    pub error: Option<String>,
}

impl From<flotta_client::ApplyOutcome> for ApplyOutcome {
    fn from(outcome: flotta_client::ApplyOutcome) -> Self {
        let (action, error) = match outcome.result {
            Ok(action) => (Some(action.into()), None),
            Err(e) => (None, Some(FlottaError::from(e).to_string())),
        };
        Self {
            index: u32::try_from(outcome.index).unwrap_or(u32::MAX),
            kind: outcome.kind,
            namespace: outcome.namespace,
            name: outcome.name,
            action,
            error,
        }
    }
}

/// The kind of change a watch saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum WatchEventType {
    /// Created, or existing when the watch started.
    Added,
    /// Changed.
    Modified,
    /// Removed; the object is its last state.
    Deleted,
    /// The watch had to list again: `objects` is the full current state.
    Restarted,
}

/// One change seen by a watch.
#[derive(Debug, Clone, uniffi::Record)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: WatchEventType,
    /// The object (one), or every current object for `Restarted`; empty when
    /// watching events, which come in `events`.
    pub objects: Vec<Arc<Resource>>,
    /// The events, when watching `ResourceKind.Event`.
    pub events: Vec<EventRecord>,
}

/// A Kubernetes `Event` the server recorded: something that happened to an
/// object (a device's failed apply, an enrolment approved).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EventRecord {
    /// The event's namespace (its object's).
    pub namespace: String,
    /// The event's name.
    pub name: String,
    /// Kind of the object it is about, e.g. `EdgeDevice`.
    pub involved_kind: String,
    /// Name of the object it is about.
    pub involved_name: String,
    /// Short reason, e.g. `ApplyFailed`.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// `Normal` or `Warning`.
    pub event_type: String,
    /// How many times it happened.
    pub count: u32,
    /// When it first happened (RFC 3339).
    pub first_timestamp: Option<String>,
    /// When it last happened (RFC 3339).
    pub last_timestamp: Option<String>,
    /// Who reported it: `flotta-server` or `flotta-agent`.
    pub source: Option<String>,
}

impl From<flotta_core::model::Event> for EventRecord {
    fn from(event: flotta_core::model::Event) -> Self {
        let involved = event.involved_object;
        Self {
            namespace: event.metadata.namespace.unwrap_or_default(),
            name: event.metadata.name.unwrap_or_default(),
            involved_kind: involved.kind.unwrap_or_default(),
            involved_name: involved.name.unwrap_or_default(),
            reason: event.reason.unwrap_or_default(),
            message: event.message.unwrap_or_default(),
            event_type: event.type_.unwrap_or_default(),
            count: event.count.and_then(|c| u32::try_from(c).ok()).unwrap_or(1),
            first_timestamp: event.first_timestamp.map(|t| t.0.to_string()),
            last_timestamp: event.last_timestamp.map(|t| t.0.to_string()),
            source: event.source.and_then(|s| s.component),
        }
    }
}

fn event_record(value: Value) -> Result<EventRecord, FlottaError> {
    serde_json::from_value::<flotta_core::model::Event>(value)
        .map(EventRecord::from)
        .map_err(|e| FlottaError::Api(format!("the server sent an unreadable event: {e}")))
}

fn resource(index: usize, value: Value) -> Result<Arc<Resource>, FlottaError> {
    AnyResource::from_value(index, value)
        .map(Resource::new)
        .map_err(|e| FlottaError::Api(format!("the server sent an unreadable object: {e}")))
}

impl TryFrom<flotta_client::WatchEvent<Value>> for WatchEvent {
    type Error = FlottaError;

    fn try_from(event: flotta_client::WatchEvent<Value>) -> Result<Self, FlottaError> {
        use flotta_client::WatchEvent as E;
        let (event_type, values) = match event {
            E::Added(v) => (WatchEventType::Added, vec![v]),
            E::Modified(v) => (WatchEventType::Modified, vec![v]),
            E::Deleted(v) => (WatchEventType::Deleted, vec![v]),
            E::Restarted(items) => (WatchEventType::Restarted, items),
        };
        let (events, values): (Vec<Value>, Vec<Value>) = values
            .into_iter()
            .partition(|v| v.get("kind").and_then(Value::as_str) == Some("Event"));
        let objects = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| resource(i, v))
            .collect::<Result<_, _>>()?;
        let events = events
            .into_iter()
            .map(event_record)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            event_type,
            objects,
            events,
        })
    }
}

type EventStream =
    Pin<Box<dyn Stream<Item = Result<flotta_client::WatchEvent<Value>, ClientError>> + Send>>;

/// A running watch. `next` suspends until the next event; it returns `null` once
/// the watch has ended (after `cancel`, or an error that retrying cannot fix).
/// Transient errors (server restart) are retried inside, with backoff.
#[derive(uniffi::Object)]
pub struct WatchStream {
    inner: tokio::sync::Mutex<Option<EventStream>>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl WatchStream {
    /// The next event, or `None` when the watch has ended. A fatal error (401, a bad
    /// selector) is thrown once, then the watch has ended.
    pub async fn next(&self) -> Result<Option<WatchEvent>, FlottaError> {
        let mut guard = self.inner.lock().await;
        loop {
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            match stream.next().await {
                None => {
                    *guard = None;
                    return Ok(None);
                }
                Some(Ok(event)) => return WatchEvent::try_from(event).map(Some),
                // The stream retries these itself; the caller only sees fatal ones.
                Some(Err(e)) if e.is_retryable() => continue,
                Some(Err(e)) => {
                    *guard = None;
                    return Err(e.into());
                }
            }
        }
    }

    /// Ends the watch and closes its connection; `next` then returns `None`.
    /// (Named `cancel` because Kotlin objects already have `close`, which frees
    /// the native object.)
    pub async fn cancel(&self) {
        self.inner.lock().await.take();
    }
}

fn list_params(label_selector: Option<String>, field_selector: Option<String>) -> ListParams {
    let mut params = ListParams::default();
    if let Some(selector) = label_selector {
        params = params.labels(selector);
    }
    if let Some(selector) = field_selector {
        params = params.fields(selector);
    }
    params
}

fn resource_type(kind: ResourceKind) -> ResourceType {
    kind.into()
}

/// A client of the management API (HTTPS, bearer token).
#[derive(Debug, uniffi::Object)]
pub struct ManagementClient {
    inner: flotta_client::ManagementClient,
}

#[uniffi::export(async_runtime = "tokio")]
impl ManagementClient {
    /// A client for `server` (`https://host:port`) with a bearer token, trusting the
    /// CA in `ca_pem` (or the system roots when `None`).
    #[uniffi::constructor]
    pub fn new(
        server: String,
        token: String,
        ca_pem: Option<String>,
    ) -> Result<Arc<Self>, FlottaError> {
        let mut builder = flotta_client::ManagementClient::builder(server).token(token);
        if let Some(pem) = ca_pem {
            builder = builder.ca_pem(pem);
        }
        Ok(Arc::new(Self {
            inner: builder.build()?,
        }))
    }

    /// A client from a `FlottaClientConfig` file such as the server's `admin.yaml`.
    #[uniffi::constructor]
    pub fn from_config_file(path: String) -> Result<Arc<Self>, FlottaError> {
        Ok(Arc::new(Self {
            inner: flotta_client::ManagementClient::from_config_file(path)?,
        }))
    }

    /// The server URL.
    pub fn server(&self) -> String {
        self.inner.server().to_owned()
    }

    /// Every object of `kind` in `namespace` (`None`: all namespaces) matching the
    /// selectors, following pagination.
    pub async fn list(
        &self,
        kind: ResourceKind,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
    ) -> Result<Vec<Arc<Resource>>, FlottaError> {
        let params = list_params(label_selector, field_selector);
        let ns = namespace.as_deref();
        let client = &self.inner;
        let wrap = |items: Vec<AnyResource>| items.into_iter().map(Resource::new).collect();
        Ok(match kind {
            ResourceKind::EdgeDevice => wrap(boxed(
                client.list_all::<EdgeDevice>(ns, &params).await?,
                AnyResource::EdgeDevice,
            )),
            ResourceKind::EdgeDeviceSet => wrap(boxed(
                client.list_all::<EdgeDeviceSet>(ns, &params).await?,
                AnyResource::EdgeDeviceSet,
            )),
            ResourceKind::EdgeWorkload => wrap(boxed(
                client.list_all::<EdgeWorkload>(ns, &params).await?,
                AnyResource::EdgeWorkload,
            )),
            ResourceKind::EdgeDeviceSignedRequest => wrap(boxed(
                client
                    .list_all::<EdgeDeviceSignedRequest>(ns, &params)
                    .await?,
                AnyResource::EdgeDeviceSignedRequest,
            )),
            ResourceKind::EdgeConfig => wrap(boxed(
                client
                    .list_all::<flotta_core::model::EdgeConfig>(ns, &params)
                    .await?,
                AnyResource::EdgeConfig,
            )),
            ResourceKind::PlaybookExecution => wrap(boxed(
                client
                    .list_all::<flotta_core::model::PlaybookExecution>(ns, &params)
                    .await?,
                AnyResource::PlaybookExecution,
            )),
            ResourceKind::Repository => wrap(boxed(
                client
                    .list_all::<flotta_core::model::Repository>(ns, &params)
                    .await?,
                AnyResource::Repository,
            )),
            ResourceKind::ResourceSync => wrap(boxed(
                client
                    .list_all::<flotta_core::model::ResourceSync>(ns, &params)
                    .await?,
                AnyResource::ResourceSync,
            )),
            ResourceKind::Secret => wrap(boxed(
                client.list_all::<Secret>(ns, &params).await?,
                AnyResource::Secret,
            )),
            ResourceKind::ConfigMap => wrap(boxed(
                client.list_all::<ConfigMap>(ns, &params).await?,
                AnyResource::ConfigMap,
            )),
            ResourceKind::Role => wrap(boxed(
                client
                    .list_all::<flotta_core::model::Role>(ns, &params)
                    .await?,
                AnyResource::Role,
            )),
            ResourceKind::RoleBinding => wrap(boxed(
                client
                    .list_all::<flotta_core::model::RoleBinding>(ns, &params)
                    .await?,
                AnyResource::RoleBinding,
            )),
            ResourceKind::ClusterRole => wrap(boxed(
                client
                    .list_all::<flotta_core::model::ClusterRole>(ns, &params)
                    .await?,
                AnyResource::ClusterRole,
            )),
            ResourceKind::ClusterRoleBinding => wrap(boxed(
                client
                    .list_all::<flotta_core::model::ClusterRoleBinding>(ns, &params)
                    .await?,
                AnyResource::ClusterRoleBinding,
            )),
            ResourceKind::Event => {
                return Err(FlottaError::InvalidConfig(
                    "events are not resources of a manifest: list them with listEvents".into(),
                ));
            }
        })
    }

    /// The events in `namespace` (`None`: all namespaces) matching the field
    /// selector (e.g. `reason=ApplyFailed,type=Warning`), least recently seen
    /// first.
    pub async fn list_events(
        &self,
        namespace: Option<String>,
        field_selector: Option<String>,
    ) -> Result<Vec<EventRecord>, FlottaError> {
        let params = list_params(None, field_selector);
        let mut events = self
            .inner
            .list_all::<flotta_core::model::Event>(namespace.as_deref(), &params)
            .await?;
        events.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
        Ok(events.into_iter().map(EventRecord::from).collect())
    }

    /// The events about object `kind` `namespace/name`, least recently seen first.
    pub async fn events_for(
        &self,
        namespace: String,
        kind: ResourceKind,
        name: String,
    ) -> Result<Vec<EventRecord>, FlottaError> {
        let events = self
            .inner
            .events_for(&namespace, resource_type(kind), &name)
            .await?;
        Ok(events.into_iter().map(EventRecord::from).collect())
    }

    /// One object.
    pub async fn get(
        &self,
        kind: ResourceKind,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let value = self
            .inner
            .get_raw(resource_type(kind), &namespace, &name)
            .await?;
        resource(0, value)
    }

    /// Creates or updates every object of a YAML manifest; objects without a
    /// namespace go to `namespace`. One outcome per document.
    pub async fn apply(&self, namespace: String, manifest: String) -> Vec<ApplyOutcome> {
        self.inner
            .apply(&namespace, &manifest)
            .await
            .into_iter()
            .map(ApplyOutcome::from)
            .collect()
    }

    /// Sends every object of a YAML manifest as a server-side apply for
    /// `field_manager`: the server records it as the owner of each field the
    /// objects set and refuses (an outcome with an error naming the fields) to
    /// change fields another manager owns, unless `force`. Objects without a
    /// namespace go to `namespace`. One outcome per document.
    pub async fn server_side_apply(
        &self,
        namespace: String,
        manifest: String,
        field_manager: String,
        force: bool,
    ) -> Vec<ApplyOutcome> {
        let mut options = flotta_client::ServerSideApply::new(field_manager);
        if force {
            options = options.force();
        }
        self.inner
            .server_side_apply(&namespace, &manifest, &options)
            .await
            .into_iter()
            .map(ApplyOutcome::from)
            .collect()
    }

    /// Approves a device's enrolment request (`spec.approved = true` and an
    /// `approved` condition).
    pub async fn approve(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let request = self.inner.approve(&namespace, &name).await?;
        Ok(Resource::new(AnyResource::EdgeDeviceSignedRequest(
            Box::new(request),
        )))
    }

    /// Denies a device's enrolment request (`spec.approved = false` and a
    /// `declined` condition): the device is refused until approved.
    pub async fn deny(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let request = self.inner.deny(&namespace, &name).await?;
        Ok(Resource::new(AnyResource::EdgeDeviceSignedRequest(
            Box::new(request),
        )))
    }

    /// The rollout record of workload `name` (its `status.rollout`) as JSON, or
    /// `None` before the server recorded one.
    pub async fn rollout_status(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Option<String>, FlottaError> {
        let record = self.inner.rollout_status(&namespace, &name).await?;
        Ok(record.and_then(|r| serde_json::to_string(&r).ok()))
    }

    /// Pauses the workload's rollout: nothing more is given or released.
    pub async fn pause_rollout(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let workload = self.inner.pause_rollout(&namespace, &name).await?;
        Ok(Resource::new(AnyResource::EdgeWorkload(Box::new(workload))))
    }

    /// Resumes a rollout paused with `pauseRollout`.
    pub async fn resume_rollout(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let workload = self.inner.resume_rollout(&namespace, &name).await?;
        Ok(Resource::new(AnyResource::EdgeWorkload(Box::new(workload))))
    }

    /// Approves the next batch of a rollout (policy `manualApproval: true`).
    pub async fn approve_rollout(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let workload = self.inner.approve_rollout(&namespace, &name).await?;
        Ok(Resource::new(AnyResource::EdgeWorkload(Box::new(workload))))
    }

    /// Rolls the workload back to its previous revision, itself a rollout.
    pub async fn undo_rollout(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let workload = self.inner.undo_rollout(&namespace, &name).await?;
        Ok(Resource::new(AnyResource::EdgeWorkload(Box::new(workload))))
    }

    /// The rollout record of device set `name` (its `status.rollout`) as JSON, or
    /// `None` before the server recorded one.
    pub async fn device_set_rollout_status(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Option<String>, FlottaError> {
        let record = self
            .inner
            .rollout_status_of::<EdgeDeviceSet>(&namespace, &name)
            .await?;
        Ok(record.and_then(|r| serde_json::to_string(&r).ok()))
    }

    /// Pauses the device set's rollout: no further member is given its new revision.
    pub async fn pause_device_set_rollout(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let set = self
            .inner
            .pause_rollout_of::<EdgeDeviceSet>(&namespace, &name)
            .await?;
        Ok(Resource::new(AnyResource::EdgeDeviceSet(Box::new(set))))
    }

    /// Resumes a device-set rollout paused with `pauseDeviceSetRollout`.
    pub async fn resume_device_set_rollout(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let set = self
            .inner
            .resume_rollout_of::<EdgeDeviceSet>(&namespace, &name)
            .await?;
        Ok(Resource::new(AnyResource::EdgeDeviceSet(Box::new(set))))
    }

    /// Approves the next batch of a device set's rollout (`manualApproval: true`).
    pub async fn approve_device_set_rollout(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let set = self
            .inner
            .approve_rollout_of::<EdgeDeviceSet>(&namespace, &name)
            .await?;
        Ok(Resource::new(AnyResource::EdgeDeviceSet(Box::new(set))))
    }

    /// Rolls the device set back to its previous revision, itself a rollout.
    pub async fn undo_device_set_rollout(
        &self,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let set = self
            .inner
            .undo_rollout_of::<EdgeDeviceSet>(&namespace, &name)
            .await?;
        Ok(Resource::new(AnyResource::EdgeDeviceSet(Box::new(set))))
    }

    /// Deletes an object; returns its last state.
    pub async fn delete(
        &self,
        kind: ResourceKind,
        namespace: String,
        name: String,
    ) -> Result<Arc<Resource>, FlottaError> {
        let value = self
            .inner
            .delete_raw(resource_type(kind), &namespace, &name)
            .await?;
        resource(0, value)
    }

    /// Watches objects of `kind` in `namespace` (`None`: all namespaces): first an
    /// `Added` event per current object, then every change.
    pub fn watch(
        &self,
        kind: ResourceKind,
        namespace: Option<String>,
        label_selector: Option<String>,
        field_selector: Option<String>,
    ) -> Result<Arc<WatchStream>, FlottaError> {
        let params = list_params(label_selector, field_selector);
        let stream = self
            .inner
            .watch_raw(resource_type(kind), namespace.as_deref(), &params);
        Ok(Arc::new(WatchStream {
            inner: tokio::sync::Mutex::new(Some(Box::pin(stream))),
        }))
    }
}

fn boxed<T>(items: Vec<T>, wrap: fn(Box<T>) -> AnyResource) -> Vec<AnyResource> {
    items.into_iter().map(|item| wrap(Box::new(item))).collect()
}
