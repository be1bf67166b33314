//! The Edge API routes and their handlers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotta_core::model::{
    API_VERSION, EdgeDeviceSignedRequest, EdgeDeviceStatus, MEMBER_OF_LABEL, Time,
};
use flotta_core::pki::{
    CsrPolicy, DeviceIdentity, IdentityError, IssueError, PeerIdentity, Purpose, RevocationList,
};
use flotta_core::reconcile::device_status_from_heartbeat;
use flotta_core::wire::{self, Message, MessageType};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::configs::{CachedConfig, Lookup};
use super::device_cache::CachedStatus;
use super::message::{self, BadMessage};
use super::notifier::current_config;
use super::{
    BASE_PATH, CERTIFICATE_SERIALS_ANNOTATION, EdgeState, MAX_BODY_BYTES, MAX_WAIT,
    PeerCertificates,
};
use crate::store::{LastSeen, ResourceKind, StoreError, StoredObject};

/// Most certificate serials remembered per device for revocation.
const MAX_REMEMBERED_SERIALS: usize = 32;

/// The Edge API router over `state`. Serve it with [`serve`](super::serve) so that
/// requests carry the client's certificate chain; without it every request is
/// treated as carrying no certificate.
pub fn router(state: EdgeState) -> Router {
    Router::new()
        .route(
            &format!("{BASE_PATH}/data/{{device_id}}/out"),
            post(post_data),
        )
        .route(&format!("{BASE_PATH}/data/{{device_id}}/in"), get(get_data))
        .route(
            &format!("{BASE_PATH}/control/{{device_id}}/in"),
            get(get_control),
        )
        .route(
            &format!("{BASE_PATH}/control/{{device_id}}/out"),
            post(post_control),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An error answer: a status code and a JSON body with a message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn unauthorized(error: &IdentityError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, error.to_string())
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn store(operation: &str, error: &StoreError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storage failed during {operation}: {error}"),
        )
    }
}

impl ApiError {
    /// The heartbeat's time could not be committed: 503 when trying again may work,
    /// so the device resends the heartbeat, 500 otherwise.
    fn last_seen(namespace: &str, device_id: &str, error: &StoreError) -> Self {
        let (status, advice) = if error.is_retryable() {
            (StatusCode::SERVICE_UNAVAILABLE, "retry the heartbeat")
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "heartbeat not recorded")
        };
        Self::new(
            status,
            format!(
                "last-seen time of device {namespace}/{device_id} was not stored ({advice}): {}",
                crate::api::error_chain(error)
            ),
        )
    }
}

impl From<BadMessage> for ApiError {
    fn from(error: BadMessage) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.status.as_u16(), "message": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The client certificate chain of the request's connection.
struct Peer(PeerCertificates);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<PeerCertificates>()
                .cloned()
                .unwrap_or_default(),
        ))
    }
}

impl EdgeState {
    fn identify(
        &self,
        peer: &PeerCertificates,
        purpose: Purpose,
        revocations: Option<&RevocationList>,
    ) -> Result<PeerIdentity, IdentityError> {
        let now = OffsetDateTime::now_utc();
        match revocations {
            Some(list) => peer.identify(&self.inner.verifier, list, now, purpose),
            None => {
                let list = self.revocation_snapshot();
                peer.identify(&self.inner.verifier, &list, now, purpose)
            }
        }
    }

    /// The device a request with a device certificate valid now (not expired) comes
    /// from; the registration certificate and another device's certificate get 403.
    fn require_device(&self, peer: &PeerCertificates, device_id: &str) -> Result<String, ApiError> {
        let identity = self
            .identify(peer, Purpose::Request, None)
            .map_err(|e| ApiError::unauthorized(&e))?;
        device_namespace(identity, device_id)
    }
}

/// The namespace of a device identity for `device_id`, 403 for anything else.
fn device_namespace(identity: PeerIdentity, device_id: &str) -> Result<String, ApiError> {
    match identity {
        PeerIdentity::Register => Err(ApiError::forbidden(
            "the registration certificate may only be used for enrolment and registration",
        )),
        PeerIdentity::Device { id, namespace } if id == device_id => Ok(namespace),
        PeerIdentity::Device { id, .. } => Err(ApiError::forbidden(format!(
            "the certificate is for device {id:?}, not {device_id:?}"
        ))),
    }
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn post_data(
    State(state): State<EdgeState>,
    Path(device_id): Path<String>,
    Peer(peer): Peer,
    body: Bytes,
) -> ApiResult {
    // The most lenient check first (an expired device certificate may register), so
    // that a request without a usable certificate gets 401 before anything else.
    let identity = state
        .identify(&peer, Purpose::Registration, None)
        .map_err(|e| ApiError::unauthorized(&e))?;
    let envelope = message::parse_envelope(&body)?;
    let directive = envelope
        .directive
        .clone()
        .ok_or_else(|| BadMessage("directive: missing".into()))?;
    match directive.as_str() {
        wire::directive::REGISTRATION => {
            if let PeerIdentity::Device { id, .. } = &identity
                && *id != device_id
            {
                return Err(ApiError::forbidden(format!(
                    "the certificate is for device {id:?}, not {device_id:?}"
                )));
            }
            registration(&state, &device_id, identity, &envelope).await
        }
        wire::directive::ENROLMENT => {
            if let PeerIdentity::Device { .. } = identity {
                // Only registration forgives expiry.
                let identity = state
                    .identify(&peer, Purpose::Request, None)
                    .map_err(|e| ApiError::unauthorized(&e))?;
                device_namespace(identity, &device_id)?;
            }
            enrolment(&state, &device_id, &envelope).await
        }
        wire::directive::HEARTBEAT => {
            let namespace = state.require_device(&peer, &device_id)?;
            heartbeat(&state, &namespace, &device_id, &envelope).await
        }
        other => {
            state.require_device(&peer, &device_id)?;
            Err(BadMessage(format!(
                "directive: {other:?} is not one of enrolment, registration, heartbeat"
            ))
            .into())
        }
    }
}

fn device_identity(device_id: &str, namespace: &str) -> Result<DeviceIdentity, ApiError> {
    DeviceIdentity::new(device_id, namespace)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn get_object(
    state: &EdgeState,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
) -> Result<Option<StoredObject>, ApiError> {
    state
        .store()
        .get(kind, namespace, name)
        .await
        .map_err(|e| ApiError::store("get", &e))
}

fn signed_request(object: &StoredObject) -> Result<EdgeDeviceSignedRequest, ApiError> {
    serde_json::from_value(object.body.clone()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "stored EdgeDeviceSignedRequest {}/{} is invalid: {e}",
                object.namespace, object.name
            ),
        )
    })
}

fn is_approved(request: &EdgeDeviceSignedRequest) -> bool {
    request.spec.approved == Some(true)
}

fn rfc3339(now: OffsetDateTime) -> String {
    let whole = now.replace_nanosecond(0).unwrap_or(now);
    message::timestamp(whole)
}

/// The field of an enrolment's content, and of the signed request's spec, holding
/// the labels a device asks for (an extension to Flotta's enrolment info, as in
/// Flight Control's enrolment requests). An approver may edit them before
/// approving; the device is created with them.
const ENROLMENT_LABELS_FIELD: &str = "labels";

/// The labels an enrolment asks for, checked like any label: 400 naming the label
/// when one is malformed.
fn enrolment_labels(labels: Option<&Value>) -> Result<Option<Map<String, Value>>, ApiError> {
    let Some(labels) = labels else {
        return Ok(None);
    };
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let Value::Object(labels) = labels else {
        return Err(bad(
            "content.labels: must be an object of label keys to string values".to_owned(),
        ));
    };
    for (key, value) in labels {
        flotta_core::validation::label_key(key)
            .map_err(|e| bad(format!("content.labels: key {key:?}: {e}")))?;
        let Value::String(text) = value else {
            return Err(bad(format!("content.labels.{key}: must be a string")));
        };
        flotta_core::validation::label_value(text)
            .map_err(|e| bad(format!("content.labels.{key}: {e}")))?;
    }
    Ok((!labels.is_empty()).then(|| labels.clone()))
}

async fn enrolment(state: &EdgeState, device_id: &str, envelope: &Message) -> ApiResult {
    let info: wire::EnrolmentInfo = message::content(envelope)?;
    let target_namespace = info
        .target_namespace
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    device_identity(device_id, &target_namespace)?;
    let labels = enrolment_labels(info.extra.get("labels"))?;
    let (hardware, model_name) = match info.features {
        Some(features) => (
            features
                .hardware
                .map(|h| message::hardware(h, "content.features.hardware"))
                .transpose()?,
            features.model_name,
        ),
        None => (None, None),
    };
    let already = || {
        Ok(json_response(
            StatusCode::ALREADY_REPORTED,
            &message::response(envelope, Value::Null),
        ))
    };
    let requests_namespace = state.options().signed_request_namespace.clone();
    // Both reads at once: each waits on the blocking pool.
    let (device, existing) = tokio::join!(
        get_object(
            state,
            ResourceKind::EdgeDevice,
            &target_namespace,
            device_id,
        ),
        get_object(
            state,
            ResourceKind::EdgeDeviceSignedRequest,
            &requests_namespace,
            device_id,
        ),
    );
    if device?.is_some() {
        return already();
    }
    let existing = existing?;
    let approved = match existing {
        Some(object) => is_approved(&signed_request(&object)?),
        None => {
            let approved = state.options().auto_approve;
            let now = rfc3339(OffsetDateTime::now_utc());
            let mut features_json = Map::new();
            if let Some(hardware) = &hardware {
                features_json.insert(
                    "hardware".into(),
                    serde_json::to_value(hardware).unwrap_or(Value::Null),
                );
            }
            if let Some(model_name) = &model_name {
                features_json.insert("modelName".into(), Value::String(model_name.clone()));
            }
            let condition = if approved { "approved" } else { "pending" };
            let mut spec = json!({
                "approved": approved,
                "features": features_json,
                "targetNamespace": target_namespace,
            });
            if let (Some(labels), Some(spec)) = (labels, spec.as_object_mut()) {
                spec.insert(ENROLMENT_LABELS_FIELD.into(), Value::Object(labels));
            }
            let body = json!({
                "apiVersion": API_VERSION,
                "kind": "EdgeDeviceSignedRequest",
                "metadata": {"name": device_id, "namespace": requests_namespace},
                "spec": spec,
                "status": {"conditions": [
                    {"type": condition, "status": "True", "lastTransitionTime": now}
                ]},
            });
            match state
                .store()
                .create(
                    ResourceKind::EdgeDeviceSignedRequest,
                    &requests_namespace,
                    device_id,
                    body,
                )
                .await
            {
                Ok(_) => approved,
                // A concurrent enrolment of the same device won the race.
                Err(StoreError::AlreadyExists { .. }) => {
                    match get_object(
                        state,
                        ResourceKind::EdgeDeviceSignedRequest,
                        &requests_namespace,
                        device_id,
                    )
                    .await?
                    {
                        Some(object) => is_approved(&signed_request(&object)?),
                        None => false,
                    }
                }
                Err(e) => return Err(ApiError::store("create", &e)),
            }
        }
    };
    if approved {
        return already();
    }
    Ok(json_response(
        StatusCode::OK,
        &message::response(envelope, Value::Null),
    ))
}

async fn registration(
    state: &EdgeState,
    device_id: &str,
    identity: PeerIdentity,
    envelope: &Message,
) -> ApiResult {
    let info: wire::RegistrationInfo = message::content(envelope)?;
    let csr = info.certificate_request;
    let hardware = info
        .hardware
        .map(|h| message::hardware(h, "content.hardware"))
        .transpose()?;
    let (namespace, target_set, known_device, requested_labels) = match identity {
        PeerIdentity::Device { namespace, .. } => {
            let Some(device) =
                get_object(state, ResourceKind::EdgeDevice, &namespace, device_id).await?
            else {
                return Err(ApiError::not_found(format!(
                    "device {namespace}/{device_id} does not exist"
                )));
            };
            (namespace, None, Some(device), None)
        }
        PeerIdentity::Register => {
            let requests_namespace = &state.options().signed_request_namespace;
            let object = get_object(
                state,
                ResourceKind::EdgeDeviceSignedRequest,
                requests_namespace,
                device_id,
            )
            .await?
            .ok_or_else(|| ApiError::not_found(format!("device {device_id} has not enrolled")))?;
            let request = signed_request(&object)?;
            if !is_approved(&request) {
                return Err(ApiError::not_found(format!(
                    "the enrolment of device {device_id} is not approved"
                )));
            }
            let labels = request
                .spec
                .extra
                .get(ENROLMENT_LABELS_FIELD)
                .and_then(Value::as_object)
                .cloned();
            (
                request.spec.target_namespace,
                request.spec.target_set,
                None,
                labels,
            )
        }
    };
    let device = device_identity(device_id, &namespace)?;
    let issued = match csr {
        Some(csr) => {
            let policy = CsrPolicy {
                device_lifetime: state.options().certificate_lifetime,
                ..CsrPolicy::default()
            };
            let issued = policy
                .issue(
                    state.ca().as_ref(),
                    csr.as_bytes(),
                    &device,
                    OffsetDateTime::now_utc(),
                )
                .map_err(|e| match e {
                    IssueError::Refused(refused) => ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("content.certificate_request: {refused}"),
                    ),
                    other => ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{other}: {}", source_text(&other)),
                    ),
                })?;
            Some(issued)
        }
        None => None,
    };
    let serial = issued.as_ref().map(|c| c.serial().to_string());
    save_registered_device(
        state,
        &namespace,
        device_id,
        Joining {
            target_set: target_set.as_deref(),
            labels: requested_labels,
        },
        serial.as_deref(),
        hardware.as_ref(),
        known_device,
    )
    .await?;
    let content = match &issued {
        Some(certificate) => json!({"certificate": certificate.pem()}),
        None => json!({}),
    };
    Ok(json_response(
        StatusCode::OK,
        &message::response(envelope, content),
    ))
}

fn source_text(error: &dyn std::error::Error) -> String {
    error.source().map(ToString::to_string).unwrap_or_default()
}

/// What an approved enrolment request gives a device created at its registration.
struct Joining<'a> {
    /// The device set it joins.
    target_set: Option<&'a str>,
    /// The labels the request holds.
    labels: Option<Map<String, Value>>,
}

/// Creates the device or records a newly issued serial and new hardware on it.
///
/// `known` is the device as the caller just read it; without it the device is
/// expected not to exist yet (a first registration), so creating it is tried
/// before any read.
async fn save_registered_device(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
    joining: Joining<'_>,
    serial: Option<&str>,
    hardware: Option<&flotta_core::model::Hardware>,
    known: Option<StoredObject>,
) -> Result<(), ApiError> {
    let Joining {
        target_set,
        labels: requested_labels,
    } = joining;
    let store = state.store();
    let hardware = hardware.map(|h| serde_json::to_value(h).unwrap_or(Value::Null));
    let mut known = Some(known);
    for _attempt in 0..5 {
        let current = match known.take() {
            Some(current) => current,
            None => get_object(state, ResourceKind::EdgeDevice, namespace, device_id).await?,
        };
        let result = match current {
            None => {
                // The labels the approved request holds, checked again since an
                // approver may have edited them; the set membership label wins.
                let mut labels: Map<String, Value> = requested_labels
                    .iter()
                    .flatten()
                    .filter(|(key, value)| {
                        flotta_core::validation::label_key(key).is_ok()
                            && value
                                .as_str()
                                .is_some_and(|v| flotta_core::validation::label_value(v).is_ok())
                    })
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                if let Some(set) = target_set {
                    labels.insert(MEMBER_OF_LABEL.into(), Value::String(set.to_owned()));
                }
                let mut annotations = Map::new();
                if let Some(serial) = serial {
                    annotations.insert(
                        CERTIFICATE_SERIALS_ANNOTATION.into(),
                        Value::String(serial.to_owned()),
                    );
                }
                let mut status = Map::new();
                if let Some(hardware) = &hardware {
                    status.insert("hardware".into(), hardware.clone());
                }
                let body = json!({
                    "apiVersion": API_VERSION,
                    "kind": "EdgeDevice",
                    "metadata": {"name": device_id, "namespace": namespace,
                        "labels": labels, "annotations": annotations},
                    "spec": {"requestTime": rfc3339(OffsetDateTime::now_utc())},
                    "status": status,
                });
                store
                    .create(ResourceKind::EdgeDevice, namespace, device_id, body)
                    .await
                    .map(|_| ())
            }
            Some(current) => {
                update_registered_device(state, current, serial, hardware.as_ref()).await
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::store("save device", &e)),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("device {namespace}/{device_id} is being changed concurrently; retry"),
    ))
}

async fn update_registered_device(
    state: &EdgeState,
    current: StoredObject,
    serial: Option<&str>,
    hardware: Option<&Value>,
) -> Result<(), StoreError> {
    let store = state.store();
    let mut version = current.resource_version;
    if let Some(serial) = serial {
        let mut body = current.body.clone();
        if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = metadata
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if annotations.is_null() {
                *annotations = Value::Object(Map::new());
            }
            if let Some(annotations) = annotations.as_object_mut() {
                let mut serials: Vec<String> = annotations
                    .get(CERTIFICATE_SERIALS_ANNOTATION)
                    .and_then(Value::as_str)
                    .map(|s| {
                        s.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                serials.push(serial.to_owned());
                let skip = serials.len().saturating_sub(MAX_REMEMBERED_SERIALS);
                let joined = serials.get(skip..).unwrap_or_default().join(",");
                annotations.insert(CERTIFICATE_SERIALS_ANNOTATION.into(), Value::String(joined));
            }
        }
        let updated = store
            .update(
                ResourceKind::EdgeDevice,
                &current.namespace,
                &current.name,
                Some(version),
                body,
            )
            .await?;
        version = updated.resource_version;
    }
    if let Some(hardware) = hardware {
        let mut status = current
            .body
            .get("status")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if status.get("hardware") != Some(hardware) {
            status.insert("hardware".into(), hardware.clone());
            store
                .update_status(
                    ResourceKind::EdgeDevice,
                    &current.namespace,
                    &current.name,
                    Some(version),
                    Value::Object(status),
                )
                .await?;
        }
    }
    Ok(())
}

/// The device status a heartbeat describes, on top of the current one, computed by
/// `flotta_core::reconcile`, without `lastSeen` (which lives in the last-seen table).
fn status_from_heartbeat(
    current: Option<&EdgeDeviceStatus>,
    heartbeat: &wire::Heartbeat,
    received_at: OffsetDateTime,
) -> Result<EdgeDeviceStatus, BadMessage> {
    if let Some(hardware) = &heartbeat.hardware {
        // Refuse what the status would silently drop.
        message::hardware(hardware.clone(), "content.hardware")?;
    }
    let received: Time = serde_json::from_value(Value::String(rfc3339(received_at)))
        .map_err(|e| BadMessage(format!("server time: {e}")))?;
    let mut status = device_status_from_heartbeat(current, heartbeat, &received);
    status.last_seen = None;
    Ok(status)
}

/// The stored status of a device, decoded, without `lastSeen`.
fn stored_status(device: &StoredObject) -> Option<Arc<EdgeDeviceStatus>> {
    let mut status = EdgeDeviceStatus::deserialize(device.body.get("status")?).ok()?;
    status.last_seen = None;
    Some(Arc::new(status))
}

fn no_such_device(namespace: &str, device_id: &str) -> ApiError {
    ApiError::not_found(format!("device {namespace}/{device_id} does not exist"))
}

/// The device's current status and resource version: from the status cache when
/// the store vouches that the cached version is still the current one, else read.
async fn current_status(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
) -> Result<CachedStatus, ApiError> {
    let cache = &state.inner.device_statuses;
    let cached = cache.get(namespace, device_id);
    if let Some(cached) = &cached
        && state
            .store()
            .cached_resource_version(ResourceKind::EdgeDevice, namespace, device_id)
            == Some(cached.resource_version)
    {
        return Ok(cached.clone());
    }
    let Some(device) = get_object(state, ResourceKind::EdgeDevice, namespace, device_id).await?
    else {
        cache.remove(namespace, device_id);
        return Err(no_such_device(namespace, device_id));
    };
    // A store that cannot vouch (PostgreSQL) still spares the decoding when the
    // version read is the cached one.
    if let Some(cached) = cached
        && cached.resource_version == device.resource_version
    {
        return Ok(cached);
    }
    let current = CachedStatus {
        resource_version: device.resource_version,
        status: stored_status(&device),
    };
    cache.put(namespace, device_id, current.clone());
    Ok(current)
}

async fn heartbeat(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
    envelope: &Message,
) -> ApiResult {
    let seen_at = OffsetDateTime::now_utc();
    let heartbeat: wire::Heartbeat = message::content(envelope)?;
    let current = current_status(state, namespace, device_id).await?;
    let new_status = status_from_heartbeat(current.status.as_deref(), &heartbeat, seen_at)?;
    if current.status.as_deref() != Some(&new_status) {
        let status = serde_json::to_value(&new_status).unwrap_or(Value::Null);
        let store = state.store();
        let stored = match store
            .update_status(
                ResourceKind::EdgeDevice,
                namespace,
                device_id,
                Some(current.resource_version),
                status.clone(),
            )
            .await
        {
            Ok(stored) => stored,
            // Someone else changed the device meanwhile: apply ours on top of theirs.
            Err(StoreError::Conflict { .. }) => store
                .update_status(ResourceKind::EdgeDevice, namespace, device_id, None, status)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound { .. } => no_such_device(namespace, device_id),
                    other => ApiError::store("update_status", &other),
                })?,
            Err(StoreError::NotFound { .. }) => {
                state.inner.device_statuses.remove(namespace, device_id);
                return Err(no_such_device(namespace, device_id));
            }
            Err(e) => return Err(ApiError::store("update_status", &e)),
        };
        state.inner.device_statuses.put(
            namespace,
            device_id,
            CachedStatus {
                resource_version: stored.resource_version,
                status: Some(Arc::new(new_status)),
            },
        );
    }
    // The reply promises the heartbeat is stored, so its time is committed first.
    state
        .inner
        .last_seen
        .record(LastSeen {
            namespace: namespace.to_owned(),
            device: device_id.to_owned(),
            seen_at,
        })
        .await
        .map_err(|e| ApiError::last_seen(namespace, device_id, &e))?;
    Ok(json_response(
        StatusCode::OK,
        &message::response(envelope, Value::Null),
    ))
}

/// Whether an `If-None-Match` header names `version` (quoted or not, weak or not, or
/// `*`).
fn if_none_match(headers: &HeaderMap, version: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag.trim_matches('"') == version
        })
}

fn etag(version: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

fn not_modified(version: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Some(tag) = etag(version) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// A `200` carrying `config` in a `data` message with directive `device`: the
/// envelope is fresh (message id, time), the content is the cached serialization.
fn config_response(config: &CachedConfig) -> Response {
    let envelope = message::reply(MessageType::Data, wire::directive::DEVICE, Value::Null);
    let Ok(mut body) = serde_json::to_vec(&envelope) else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the reply envelope could not be encoded",
        )
        .into_response();
    };
    // The envelope has no content: splice the cached one in before its closing brace.
    if body.pop() != Some(b'}') {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the reply envelope is not a JSON object",
        )
        .into_response();
    }
    if body.len() > 1 {
        body.push(b',');
    }
    body.extend_from_slice(b"\"content\":");
    body.extend_from_slice(&config.content);
    body.push(b'}');
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(tag) = etag(&config.version) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// The device's configuration: from the in-memory view, or from the store when the
/// view does not know the device.
async fn device_config(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
) -> Result<Arc<CachedConfig>, ApiError> {
    let configs = &state.inner.configs;
    match configs.config(namespace, device_id) {
        Lookup::Config(config) => Ok(config),
        Lookup::NotLive | Lookup::Unknown => {
            configs.note_store_read();
            let (_, rendered) = current_config(state.store().as_ref(), namespace, device_id)
                .await
                .map_err(|e| ApiError::store("render", &e))?
                .ok_or_else(|| {
                    ApiError::not_found(format!("device {namespace}/{device_id} does not exist"))
                })?;
            Ok(Arc::new(CachedConfig::from_rendered(&rendered)))
        }
    }
}

async fn get_data(
    State(state): State<EdgeState>,
    Path(device_id): Path<String>,
    Peer(peer): Peer,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let namespace = state.require_device(&peer, &device_id)?;
    let wait = match query.get("wait") {
        None => Duration::ZERO,
        Some(text) => {
            let seconds: u64 = text.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("wait: {text:?} is not a whole number of seconds"),
                )
            })?;
            Duration::from_secs(seconds).min(MAX_WAIT)
        }
    };
    // Subscribe before reading, so that a change landing between the read and the
    // wait still wakes us.
    let mut changes =
        (!wait.is_zero()).then(|| state.inner.notifier.subscribe(&namespace, &device_id));
    let config = device_config(&state, &namespace, &device_id).await?;
    if !if_none_match(&headers, &config.version) {
        return Ok(config_response(&config));
    }
    let Some(changes) = changes.as_mut() else {
        return Ok(not_modified(&config.version));
    };
    let mut version = config.version.clone();
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = state.shutdown_signal();
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if !changed {
                    return Ok(not_modified(&version));
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ok(not_modified(&version)),
            () = super::stopped(&mut shutdown) => return Ok(not_modified(&version)),
        }
        let config = device_config(&state, &namespace, &device_id).await?;
        if !if_none_match(&headers, &config.version) {
            return Ok(config_response(&config));
        }
        version.clone_from(&config.version);
    }
}

fn disconnect() -> Response {
    json_response(
        StatusCode::OK,
        &message::reply(
            MessageType::Command,
            "disconnect",
            json!({"command": "disconnect", "arguments": {}}),
        ),
    )
}

async fn get_control(
    State(state): State<EdgeState>,
    Path(device_id): Path<String>,
    Peer(peer): Peer,
) -> ApiResult {
    let identity = match state.identify(&peer, Purpose::Request, None) {
        Ok(identity) => identity,
        // A revoked certificate belongs to a deleted device: tell it to go away.
        Err(IdentityError::Revoked { .. }) => {
            let identity = state
                .identify(&peer, Purpose::Request, Some(&RevocationList::new()))
                .map_err(|e| ApiError::unauthorized(&e))?;
            device_namespace(identity, &device_id)?;
            return Ok(disconnect());
        }
        Err(e) => return Err(ApiError::unauthorized(&e)),
    };
    let namespace = device_namespace(identity, &device_id)?;
    match get_object(&state, ResourceKind::EdgeDevice, &namespace, &device_id).await? {
        None => Ok(disconnect()),
        Some(device) if device.deletion_timestamp.is_some() => Ok(disconnect()),
        Some(_) => Ok(json_response(
            StatusCode::OK,
            &message::reply(MessageType::Command, "", Value::Null),
        )),
    }
}

async fn post_control(
    State(state): State<EdgeState>,
    Path(device_id): Path<String>,
    Peer(peer): Peer,
    body: Bytes,
) -> ApiResult {
    let namespace = state.require_device(&peer, &device_id)?;
    let envelope = message::parse_envelope(&body)?;
    if get_object(&state, ResourceKind::EdgeDevice, &namespace, &device_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "device {namespace}/{device_id} does not exist"
        )));
    }
    Ok(json_response(
        StatusCode::OK,
        &message::response(&envelope, Value::Null),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let mut headers = HeaderMap::new();
        assert!(!if_none_match(&headers, "abc"));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(if_none_match(&headers, "abc"));
        assert!(!if_none_match(&headers, "ab"));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("abc"));
        assert!(if_none_match(&headers, "abc"));
    }

    #[test]
    fn unstored_last_seen_asks_for_a_retry_only_when_it_may_work() {
        let transient = StoreError::backend("record_last_seen", true, "database is locked");
        let answer = ApiError::last_seen("ns", "dev", &transient);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.message.contains("ns/dev"), "{}", answer.message);
        assert!(answer.message.contains("retry"), "{}", answer.message);
        let permanent = StoreError::backend("record_last_seen", false, "recorder stopped");
        let answer = ApiError::last_seen("ns", "dev", &permanent);
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            answer.message.contains("recorder stopped"),
            "{}",
            answer.message
        );
    }

    #[test]
    fn heartbeat_status_keeps_what_it_does_not_report() {
        let current = json!({"hardware": {"hostname": "h", "disks": [], "gpus": [], "interfaces": []},
            "phase": "up"});
        let heartbeat: wire::Heartbeat = serde_json::from_value(json!({"status": "degraded",
            "workloads": [{"name": "w", "status": "Running",
            "last_data_upload": "2024-01-01T00:00:00Z"}],
            "upgrade": {"current_commit_ID": "c1", "last_upgrade_status": "succeeded"}}))
        .expect("heartbeat");
        let current: EdgeDeviceStatus = serde_json::from_value(current).expect("status");
        let status = status_from_heartbeat(Some(&current), &heartbeat, OffsetDateTime::now_utc())
            .expect("valid");
        assert_eq!(status.phase.as_deref(), Some("degraded"));
        assert_eq!(
            status.hardware.and_then(|h| h.hostname).as_deref(),
            Some("h")
        );
        let workloads = status.workloads.expect("workloads");
        assert_eq!(workloads[0].phase.as_deref(), Some("Running"));
        assert_eq!(
            status
                .upgrade_information
                .expect("upgrade")
                .current_commit_id,
            "c1"
        );
        assert!(status.last_seen.is_none(), "lastSeen stays out of the row");
    }
}
