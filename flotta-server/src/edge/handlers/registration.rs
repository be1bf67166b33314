//! Registration and renewal: the effect is signing the device's CSR and creating
//! the device, or recording the new certificate's serial on it.

use flotta_core::enrolment::{DeviceRecord, Directive, Effect, Failure};
use flotta_core::events::{InvolvedObject, ServerEvent, registration_refusal_is_recorded};
use flotta_core::model::{API_VERSION, MEMBER_OF_LABEL};
use flotta_core::pki::{CsrPolicy, IssueError, PeerIdentity};
use flotta_core::timestamp::rfc3339_seconds;
use flotta_core::wire::{self, Message};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::enrolment::{ENROLMENT_LABELS_FIELD, device_identity, request_record, signed_request};
use super::{ApiError, ApiResult, Authorised, device_record, get_object, posted_reply};
use crate::edge::message;
use crate::edge::{
    CERTIFICATE_NOT_AFTER_ANNOTATION, CERTIFICATE_SERIALS_ANNOTATION, EdgeState,
    REGISTRATION_REFUSED_ANNOTATION,
};
use crate::store::{ResourceKind, StoreError, StoredObject};

/// Least time between two notes of refused registrations on one signed request.
const REFUSAL_NOTE_INTERVAL: time::Duration = time::Duration::minutes(1);

/// Most certificate serials remembered per device for revocation.
const MAX_REMEMBERED_SERIALS: usize = 32;

/// Carries out a registration as core decides.
pub(super) async fn register(state: &EdgeState, who: &Authorised, envelope: &Message) -> ApiResult {
    let device_id = who.device_id.as_str();
    let info: wire::RegistrationInfo = message::content(envelope)?;
    let hardware = info
        .hardware
        .map(|h| message::hardware(h, "content.hardware"))
        .transpose()?;
    // What the store knows: a device registers again with its own certificate; a
    // new device with the registration certificate and an approved request.
    let (record, namespace, target_set, known_device, requested_labels) = match &who.identity {
        PeerIdentity::Device { namespace, .. } => {
            let device = get_object(state, ResourceKind::EdgeDevice, namespace, device_id).await?;
            (
                device_record(device.as_ref()),
                namespace.clone(),
                None,
                device,
                None,
            )
        }
        _ => {
            let object = get_object(
                state,
                ResourceKind::EdgeDeviceSignedRequest,
                &state.options().signed_request_namespace,
                device_id,
            )
            .await?;
            let mut record = request_record(object.as_ref())?;
            match object {
                Some(object) => {
                    let request = signed_request(&object)?;
                    // A device that exists (registered, or being deleted) gets no
                    // certificate for the registration certificate, whatever its
                    // request says.
                    let device = get_object(
                        state,
                        ResourceKind::EdgeDevice,
                        &request.spec.target_namespace,
                        device_id,
                    )
                    .await?;
                    match device_record(device.as_ref()) {
                        DeviceRecord::Unknown => {}
                        existing => record = existing,
                    }
                    let labels = request
                        .spec
                        .extra
                        .get(ENROLMENT_LABELS_FIELD)
                        .and_then(Value::as_object)
                        .cloned();
                    (
                        record,
                        request.spec.target_namespace,
                        request.spec.target_set,
                        None,
                        labels,
                    )
                }
                None => (record, String::new(), None, None, None),
            }
        }
    };
    let decision = match who.answer(state, Directive::Registration, record) {
        Ok(decision) => decision,
        Err(refusal) => {
            if record == DeviceRecord::Registered {
                // Someone holding the fleet-wide key asked for a registered device's
                // identity: say so on the signed request, where operators look.
                note_refused_registration(state, device_id).await;
            }
            if registration_refusal_is_recorded(record) {
                record_refusal(state, who, &namespace, &refusal);
            }
            return Err(refusal);
        }
    };
    if decision.effect != Effect::SignCsr {
        return Ok(posted_reply(decision.status, envelope, Value::Null));
    }
    let device = device_identity(device_id, &namespace)?;
    let issued = match info.certificate_request {
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
                .await
                .map_err(|e| match e {
                    IssueError::Refused(refused) => ApiError::failed(
                        Failure::CsrRefused,
                        format!("content.certificate_request: {refused}"),
                    ),
                    other => ApiError::failed(
                        Failure::Internal,
                        format!("{other}: {}", source_text(&other)),
                    ),
                })?;
            Some(issued)
        }
        None => None,
    };
    let new_certificate = issued.as_ref().map(|c| NewCertificate {
        serial: c.serial().to_string(),
        not_after: rfc3339_seconds(c.not_after()),
    });
    // A renewal supersedes every certificate the device had.
    let superseded = match (&known_device, &new_certificate) {
        (Some(device), Some(_)) => crate::edge::certificate_serials(device),
        _ => Vec::new(),
    };
    let renewal = known_device.is_some();
    save_registered_device(
        state,
        &namespace,
        device_id,
        Joining {
            target_set: target_set.as_deref(),
            labels: requested_labels,
        },
        new_certificate.as_ref(),
        hardware.as_ref(),
        known_device,
    )
    .await?;
    if let Some(hardware) = &hardware {
        super::hardware_labels::relabel(state, &namespace, device_id, hardware).await?;
    }
    if !superseded.is_empty() {
        supersede(state, &namespace, device_id, &superseded).await?;
    }
    if new_certificate.is_some() {
        let device = InvolvedObject::new(ResourceKind::EdgeDevice, namespace.as_str(), device_id);
        state.events().spawn_server_event(if renewal {
            ServerEvent::CertificateRenewed { device }
        } else {
            ServerEvent::Registered { device }
        });
    }
    // The device sends the intermediates after its certificate, so that a server
    // trusting only the root can build the path.
    let certificate = issued.as_ref().map(|issued| {
        let mut pem = issued.pem();
        for intermediate in state.ca().intermediates_der() {
            pem.push_str(&flotta_core::pki::pem_certificate(&intermediate));
        }
        pem
    });
    let content = serde_json::to_value(wire::RegistrationResponse {
        ca_bundle: certificate.as_ref().and(state.options().ca_bundle.clone()),
        certificate,
        ..Default::default()
    })
    .unwrap_or_else(|_| json!({}));
    Ok(posted_reply(decision.status, envelope, content))
}

/// Refuses the device's previous certificates once the grace window after its
/// renewal has passed ([`crate::edge::EdgeOptions::superseded_grace`]), here at once
/// and in the store for restarts; other replicas learn it from the device's change.
async fn supersede(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
    serials: &[String],
) -> Result<(), ApiError> {
    let from = OffsetDateTime::now_utc() + state.options().superseded_grace;
    for serial in serials {
        state
            .store()
            .revoke_certificate(&crate::store::RevokedCertificate {
                serial: serial.clone(),
                namespace: namespace.to_owned(),
                device: device_id.to_owned(),
                revoked_at: from,
            })
            .await
            .map_err(|e| ApiError::store("revoke superseded certificates", &e))?;
    }
    state.revoke_in_memory_from(
        serials
            .iter()
            .filter_map(|s| crate::edge::serial_from_hex(s)),
        from,
    );
    Ok(())
}

/// Records on the device's signed request (annotation
/// [`REGISTRATION_REFUSED_ANNOTATION`]: when, and why) that the registration
/// certificate was refused for the registered device, and logs it. Best effort:
/// the refusal stands whether or not the note is written.
async fn note_refused_registration(state: &EdgeState, device_id: &str) {
    let now = OffsetDateTime::now_utc();
    tracing::warn!(
        device = device_id,
        "registration certificate refused for a registered device (possible impersonation)"
    );
    let store = state.store();
    let namespace = &state.options().signed_request_namespace;
    let Ok(Some(request)) = store
        .get(ResourceKind::EdgeDeviceSignedRequest, namespace, device_id)
        .await
    else {
        return;
    };
    // One note a minute at most: a flood of refused attempts must not become a
    // flood of writes.
    let noted_at = request
        .body
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REGISTRATION_REFUSED_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|note| note.split_once(": "))
        .and_then(|(at, _)| flotta_core::timestamp::parse_rfc3339(at));
    if noted_at.is_some_and(|at| now - at < REFUSAL_NOTE_INTERVAL) {
        return;
    }
    let mut body = request.body.clone();
    let note = format!(
        "{}: the registration certificate asked for a new certificate of the registered \
         device; refused (403 AlreadyRegistered)",
        rfc3339_seconds(now)
    );
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(REGISTRATION_REFUSED_ANNOTATION.into(), Value::String(note));
        }
    }
    if let Err(error) = store
        .update(
            ResourceKind::EdgeDeviceSignedRequest,
            namespace,
            device_id,
            Some(request.resource_version),
            body,
        )
        .await
    {
        tracing::warn!(device = device_id, %error, "could not note the refused registration");
    }
}

/// Records a refused registration as a `RegistrationRefused` Warning event, with
/// the refusal's reason and message: on the signed request when the registration
/// certificate asked, on the device (in `namespace`) when its own certificate did.
fn record_refusal(state: &EdgeState, who: &Authorised, namespace: &str, refusal: &ApiError) {
    let object = match &who.identity {
        PeerIdentity::Device { namespace, .. } => InvolvedObject::new(
            ResourceKind::EdgeDevice,
            namespace.as_str(),
            who.device_id.as_str(),
        ),
        _ => InvolvedObject::new(
            ResourceKind::EdgeDeviceSignedRequest,
            state.options().signed_request_namespace.as_str(),
            who.device_id.as_str(),
        ),
    };
    tracing::warn!(
        device = who.device_id.as_str(),
        namespace,
        reason = refusal.reason,
        "registration refused"
    );
    state
        .events()
        .spawn_server_event(ServerEvent::RegistrationRefused {
            object,
            code: refusal.reason,
            why: &refusal.message,
        });
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

/// What the device's annotations record of a certificate just issued to it.
struct NewCertificate {
    /// Serial, lowercase hex.
    serial: String,
    /// End of validity, RFC 3339.
    not_after: String,
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
    certificate: Option<&NewCertificate>,
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
                if let Some(certificate) = certificate {
                    annotations.insert(
                        CERTIFICATE_SERIALS_ANNOTATION.into(),
                        Value::String(certificate.serial.clone()),
                    );
                    annotations.insert(
                        CERTIFICATE_NOT_AFTER_ANNOTATION.into(),
                        Value::String(certificate.not_after.clone()),
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
                    "spec": {"requestTime": rfc3339_seconds(OffsetDateTime::now_utc())},
                    "status": status,
                });
                store
                    .create(ResourceKind::EdgeDevice, namespace, device_id, body)
                    .await
                    .map(|_| ())
            }
            Some(current) => {
                update_registered_device(state, current, certificate, hardware.as_ref()).await
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::store("save device", &e)),
        }
    }
    Err(ApiError::failed(
        Failure::Busy,
        format!("device {namespace}/{device_id} is being changed concurrently; retry"),
    ))
}

async fn update_registered_device(
    state: &EdgeState,
    current: StoredObject,
    certificate: Option<&NewCertificate>,
    hardware: Option<&Value>,
) -> Result<(), StoreError> {
    let store = state.store();
    let mut version = current.resource_version;
    if let Some(certificate) = certificate {
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
                serials.push(certificate.serial.clone());
                let skip = serials.len().saturating_sub(MAX_REMEMBERED_SERIALS);
                let joined = serials.get(skip..).unwrap_or_default().join(",");
                annotations.insert(CERTIFICATE_SERIALS_ANNOTATION.into(), Value::String(joined));
                annotations.insert(
                    CERTIFICATE_NOT_AFTER_ANNOTATION.into(),
                    Value::String(certificate.not_after.clone()),
                );
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
