//! Enrolment: a device asks to join the fleet; the effect is an
//! `EdgeDeviceSignedRequest`, approved at once under automatic approval.

use std::collections::BTreeMap;

use flotta_core::enrolment::{DeviceRecord, Directive, Effect, EnrolmentDecision, Failure};
use flotta_core::events::{InvolvedObject, ServerEvent};
use flotta_core::model::{API_VERSION, EdgeDeviceSignedRequest};
use flotta_core::pki::{DeviceIdentity, PeerIdentity};
use flotta_core::timestamp::rfc3339_seconds;
use flotta_core::wire::{self, Message};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{ApiError, ApiResult, Authorised, device_record, get_object, posted_reply};
use crate::edge::EdgeState;
use crate::edge::message;
use crate::store::{ResourceKind, StoreError, StoredObject};

/// The field of an enrolment's content, and of the signed request's spec, holding
/// the labels a device asks for (an extension to Flotta's enrolment info, as in
/// Flight Control's enrolment requests). An approver may edit them before
/// approving; the device is created with them.
pub(super) const ENROLMENT_LABELS_FIELD: &str = "labels";

/// A device identity for `device_id` in `namespace`, 400 when either is invalid.
pub(super) fn device_identity(
    device_id: &str,
    namespace: &str,
) -> Result<DeviceIdentity, ApiError> {
    DeviceIdentity::new(device_id, namespace)
        .map_err(|e| ApiError::failed(Failure::BadContent, e.to_string()))
}

/// The stored signed request, decoded.
pub(super) fn signed_request(object: &StoredObject) -> Result<EdgeDeviceSignedRequest, ApiError> {
    serde_json::from_value(object.body.clone()).map_err(|e| {
        ApiError::failed(
            Failure::Internal,
            format!(
                "stored EdgeDeviceSignedRequest {}/{} is invalid: {e}",
                object.namespace, object.name
            ),
        )
    })
}

/// What a signed request (or its absence) says about the device: approved when
/// `spec.approved` is true, denied when an operator declined it (a `declined`
/// condition with status `True`, as Flotta writes it), pending otherwise.
pub(super) fn request_record(request: Option<&StoredObject>) -> Result<DeviceRecord, ApiError> {
    let Some(object) = request else {
        return Ok(DeviceRecord::Unknown);
    };
    let request = signed_request(object)?;
    Ok(match flotta_core::enrolment::decision_of(&request) {
        Some(EnrolmentDecision::Approve) => DeviceRecord::Approved,
        Some(EnrolmentDecision::Deny) => DeviceRecord::Denied,
        None => DeviceRecord::Pending,
    })
}

/// What a stored signed request says about its device (approved, denied or
/// pending), as [`request_record`] reads it; `None` for a request that does not
/// decode. The management API compares it before and after a write to record
/// enrolment decisions as events.
pub(crate) fn enrolment_decision(request: &StoredObject) -> Option<DeviceRecord> {
    request_record(Some(request)).ok()
}

/// The labels an enrolment asks for, checked like any label: 400 naming the label
/// when one is malformed.
fn enrolment_labels(
    labels: Option<&BTreeMap<String, String>>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    let Some(labels) = labels else {
        return Ok(None);
    };
    let bad = |message: String| ApiError::failed(Failure::BadContent, message);
    for (key, value) in labels {
        flotta_core::validation::label_key(key)
            .map_err(|e| bad(format!("content.labels: key {key:?}: {e}")))?;
        flotta_core::validation::label_value(value)
            .map_err(|e| bad(format!("content.labels.{key}: {e}")))?;
    }
    Ok((!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect()
    }))
}

/// The record of an enrolling device: its `EdgeDevice`'s (registered, or deleted
/// while it is being deleted) when it exists; else approved once its signed
/// request is approved, pending while the request waits.
async fn enrolment_record(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
) -> Result<DeviceRecord, ApiError> {
    let requests_namespace = &state.options().signed_request_namespace;
    // Both reads at once: each waits on the blocking pool.
    let (device, request) = tokio::join!(
        get_object(state, ResourceKind::EdgeDevice, namespace, device_id),
        get_object(
            state,
            ResourceKind::EdgeDeviceSignedRequest,
            requests_namespace,
            device_id,
        ),
    );
    match device_record(device?.as_ref()) {
        DeviceRecord::Unknown => request_record(request?.as_ref()),
        record => Ok(record),
    }
}

/// Carries out an enrolment as core decides.
pub(super) async fn enrol(state: &EdgeState, who: &Authorised, envelope: &Message) -> ApiResult {
    let device_id = who.device_id.as_str();
    let info: wire::EnrolmentInfo = message::content(envelope)?;
    // A device certificate names its namespace; the registration certificate
    // enrols into the one the device asks for.
    let target_namespace = match &who.identity {
        PeerIdentity::Device { namespace, .. } => namespace.clone(),
        _ => info
            .target_namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_owned()),
    };
    device_identity(device_id, &target_namespace)?;
    let labels = enrolment_labels(info.labels.as_ref())?;
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
    let record = enrolment_record(state, &target_namespace, device_id).await?;
    let mut decision = who.answer(state, Directive::Enrolment, record)?;
    if let Effect::CreateSignedRequest { approved } = decision.effect {
        let mut features = Map::new();
        if let Some(hardware) = &hardware {
            features.insert(
                "hardware".into(),
                serde_json::to_value(hardware).unwrap_or(Value::Null),
            );
        }
        if let Some(model_name) = &model_name {
            features.insert("modelName".into(), Value::String(model_name.clone()));
        }
        let created = create_signed_request(
            state,
            device_id,
            &target_namespace,
            approved,
            features,
            labels,
        )
        .await;
        match created {
            Ok(()) => record_enrolment(state, device_id, &target_namespace, approved),
            // A concurrent enrolment of the same device won the race: answer as
            // for the request it created.
            Err(StoreError::AlreadyExists { .. }) => {
                let record = enrolment_record(state, &target_namespace, device_id).await?;
                decision = who.answer(state, Directive::Enrolment, record)?;
            }
            Err(e) => return Err(ApiError::store("create", &e)),
        }
    }
    Ok(posted_reply(decision.status, envelope, Value::Null))
}

/// The events of a new enrolment request: requested, and approved when automatic
/// approval approved it at once.
fn record_enrolment(state: &EdgeState, device_id: &str, target_namespace: &str, approved: bool) {
    let request = InvolvedObject::new(
        ResourceKind::EdgeDeviceSignedRequest,
        state.options().signed_request_namespace.as_str(),
        device_id,
    );
    state
        .events()
        .spawn_server_event(ServerEvent::EnrolmentRequested {
            request: request.clone(),
            target_namespace,
        });
    if approved {
        state
            .events()
            .spawn_server_event(ServerEvent::EnrolmentApproved {
                request,
                by: "automatic approval",
            });
    }
}

async fn create_signed_request(
    state: &EdgeState,
    device_id: &str,
    target_namespace: &str,
    approved: bool,
    features: Map<String, Value>,
    labels: Option<Map<String, Value>>,
) -> Result<(), StoreError> {
    let requests_namespace = &state.options().signed_request_namespace;
    let now = rfc3339_seconds(OffsetDateTime::now_utc());
    let condition = if approved { "approved" } else { "pending" };
    let mut spec = json!({
        "approved": approved,
        "features": features,
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
    state
        .store()
        .create(
            ResourceKind::EdgeDeviceSignedRequest,
            requests_namespace,
            device_id,
            body,
        )
        .await
        .map(|_| ())
}
