//! Heartbeats: the effect is the device's status (written only when it changed)
//! and its last-seen time (always, committed before the answer). The status,
//! computed by core, includes the revision of each workload the device runs and the
//! device's conditions, judged against what the server serves it (read from the
//! in-memory configuration view, not the store).

use std::sync::Arc;

use flotta_core::enrolment::{DeviceRecord, Directive, Effect, Failure};
use flotta_core::events::{InvolvedObject, ServerEvent, new_render_problem};
use flotta_core::model::{EdgeDeviceStatus, Time};
use flotta_core::pki::PeerIdentity;
use flotta_core::reconcile::{ServedConfig, device_status_from_heartbeat};
use flotta_core::timestamp::rfc3339_seconds;
use flotta_core::wire::{self, Message};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::{ApiError, ApiResult, Authorised, get_object, posted_reply};
use crate::edge::EdgeState;
use crate::edge::device_cache::CachedStatus;
use crate::edge::message::{self, BadMessage};
use crate::store::{LastSeen, ResourceKind, StoreError, StoredObject};

/// The device status a heartbeat describes, on top of the current one, computed by
/// `flotta_core::reconcile`, without `lastSeen` (which lives in the last-seen table).
fn status_from_heartbeat(
    current: Option<&EdgeDeviceStatus>,
    heartbeat: &wire::Heartbeat,
    received_at: OffsetDateTime,
    served: Option<&ServedConfig>,
) -> Result<EdgeDeviceStatus, BadMessage> {
    if let Some(hardware) = &heartbeat.hardware {
        // Refuse what the status would silently drop.
        message::hardware(hardware.clone(), "content.hardware")?;
    }
    let received: Time = serde_json::from_value(Value::String(rfc3339_seconds(received_at)))
        .map_err(|e| BadMessage(format!("server time: {e}")))?;
    let mut status = device_status_from_heartbeat(current, heartbeat, &received, served);
    status.last_seen = None;
    Ok(status)
}

/// The stored status of a device, decoded, without `lastSeen`.
fn stored_status(device: &StoredObject) -> Option<Arc<EdgeDeviceStatus>> {
    let mut status = EdgeDeviceStatus::deserialize(device.body.get("status")?).ok()?;
    status.last_seen = None;
    Some(Arc::new(status))
}

/// Whether two judgements were made against the same served configuration.
fn same_judgement(
    a: Option<&Arc<crate::edge::configs::CachedConfig>>,
    b: Option<&Arc<crate::edge::configs::CachedConfig>>,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.served == b.served,
        (None, None) => true,
        _ => false,
    }
}

/// The device's current status and resource version: from the status cache when
/// the store vouches that the cached version is still the current one, else read.
async fn current_status(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
) -> Result<Option<CachedStatus>, ApiError> {
    let cache = &state.inner.device_statuses;
    let cached = cache.get(namespace, device_id);
    if let Some(cached) = &cached
        && state
            .store()
            .cached_resource_version(ResourceKind::EdgeDevice, namespace, device_id)
            == Some(cached.resource_version)
    {
        return Ok(Some(cached.clone()));
    }
    let Some(device) = get_object(state, ResourceKind::EdgeDevice, namespace, device_id).await?
    else {
        cache.remove(namespace, device_id);
        return Ok(None);
    };
    // A store that cannot vouch (PostgreSQL) still spares the decoding when the
    // version read is the cached one.
    if let Some(cached) = cached
        && cached.resource_version == device.resource_version
    {
        return Ok(Some(cached));
    }
    let current = CachedStatus {
        resource_version: device.resource_version,
        status: stored_status(&device),
        judged: None,
    };
    cache.put(namespace, device_id, current.clone());
    Ok(Some(current))
}

/// The unchanged heartbeat where the store cannot vouch for a cached version
/// (PostgreSQL, whose other replicas may write): judged against the cached status
/// without reading the row, then stamped with a check, in the same statement, that
/// the device still has the cached version. `None` sends the heartbeat down the
/// full path: nothing cached, a heartbeat that changes or carries something (status,
/// hardware, events, playbook reports), or a device that changed or went meanwhile.
async fn record_unchanged(
    state: &EdgeState,
    who: &Authorised,
    envelope: &Message,
    namespace: &str,
    device_id: &str,
    seen_at: OffsetDateTime,
) -> Result<Option<axum::response::Response>, ApiError> {
    let store = state.store();
    if !store.last_seen_tells_versions() {
        return Ok(None);
    }
    let cache = &state.inner.device_statuses;
    let Some(cached) = cache.get(namespace, device_id) else {
        return Ok(None);
    };
    let decision = who.answer(state, Directive::Heartbeat, DeviceRecord::Registered)?;
    if decision.effect != Effect::RecordHeartbeat {
        return Ok(None);
    }
    let heartbeat: wire::Heartbeat = message::content(envelope)?;
    let carries = heartbeat.hardware.is_some()
        || heartbeat.events.as_ref().is_some_and(|e| !e.is_empty())
        || heartbeat
            .playbook_executions
            .as_ref()
            .is_some_and(|p| !p.is_empty());
    if carries {
        return Ok(None);
    }
    let served = state.served_config(namespace, device_id);
    let new_status = status_from_heartbeat(
        cached.status.as_deref(),
        &heartbeat,
        seen_at,
        served.as_deref().map(|c| &c.served),
    )?;
    if cached.status.as_deref() != Some(&new_status) {
        return Ok(None);
    }
    let checked = state
        .inner
        .last_seen
        .record_checked(LastSeen {
            namespace: namespace.to_owned(),
            device: device_id.to_owned(),
            seen_at,
        })
        .await
        .map_err(|e| ApiError::last_seen(namespace, device_id, &e))?;
    if checked == Some(Some(cached.resource_version)) {
        if !same_judgement(cached.judged.as_ref(), served.as_ref()) {
            cache.put(
                namespace,
                device_id,
                CachedStatus {
                    judged: served,
                    ..cached
                },
            );
        }
        return Ok(Some(posted_reply(decision.status, envelope, Value::Null)));
    }
    // Changed by someone (this or another replica) or deleted: read it.
    cache.remove(namespace, device_id);
    Ok(None)
}

/// Carries out a heartbeat as core decides: the record is the device's cached
/// status, so an unchanged heartbeat reads nothing from the store.
pub(super) async fn record(state: &EdgeState, who: &Authorised, envelope: &Message) -> ApiResult {
    let seen_at = OffsetDateTime::now_utc();
    let device_id = who.device_id.as_str();
    let PeerIdentity::Device { namespace, .. } = &who.identity else {
        return Err(ApiError::failed(
            Failure::Internal,
            "a heartbeat was authorised without a device certificate",
        ));
    };
    if let Some(reply) =
        record_unchanged(state, who, envelope, namespace, device_id, seen_at).await?
    {
        return Ok(reply);
    }
    let current = current_status(state, namespace, device_id).await?;
    let record = if current.is_some() {
        DeviceRecord::Registered
    } else {
        DeviceRecord::Unknown
    };
    let decision = who.answer(state, Directive::Heartbeat, record)?;
    let Some(current) = current.filter(|_| decision.effect == Effect::RecordHeartbeat) else {
        return Ok(posted_reply(decision.status, envelope, Value::Null));
    };
    let heartbeat: wire::Heartbeat = message::content(envelope)?;
    let playbook_reports = heartbeat.playbook_executions.as_deref().unwrap_or_default();
    for (index, report) in playbook_reports.iter().enumerate() {
        flotta_core::ansible::check_report(
            report,
            &format!("content.playbook-executions[{index}]"),
        )
        .map_err(BadMessage)?;
    }
    let served = state.served_config(namespace, device_id);
    let new_status = status_from_heartbeat(
        current.status.as_deref(),
        &heartbeat,
        seen_at,
        served.as_deref().map(|c| &c.served),
    )?;
    // New hardware changes the device's `device.*` labels.
    let relabel_with = new_status.hardware.clone().filter(|hardware| {
        heartbeat.hardware.is_some()
            && current.status.as_deref().and_then(|s| s.hardware.as_ref()) != Some(hardware)
    });
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
                    StoreError::NotFound { .. } => ApiError::no_such_device(namespace, device_id),
                    other => ApiError::store("update_status", &other),
                })?,
            Err(StoreError::NotFound { .. }) => {
                state.inner.device_statuses.remove(namespace, device_id);
                return Err(ApiError::no_such_device(namespace, device_id));
            }
            Err(e) => return Err(ApiError::store("update_status", &e)),
        };
        if let Some(problem) = new_render_problem(current.status.as_deref(), &new_status) {
            state
                .events()
                .spawn_server_event(ServerEvent::RenderFailed {
                    device: InvolvedObject::new(ResourceKind::EdgeDevice, namespace, device_id),
                    message: problem,
                });
        }
        state.inner.device_statuses.put(
            namespace,
            device_id,
            CachedStatus {
                resource_version: stored.resource_version,
                status: Some(Arc::new(new_status)),
                judged: served.clone(),
            },
        );
    } else if !same_judgement(current.judged.as_ref(), served.as_ref()) {
        // Unchanged against what is served now: judged against it, too.
        state.inner.device_statuses.put(
            namespace,
            device_id,
            CachedStatus {
                judged: served.clone(),
                ..current.clone()
            },
        );
    }
    if let Some(hardware) = &relabel_with {
        super::hardware_labels::relabel(state, namespace, device_id, hardware).await?;
    }
    // Only a heartbeat that reports playbook executions writes theirs.
    if !playbook_reports.is_empty() {
        let now: Time = serde_json::from_value(Value::String(rfc3339_seconds(seen_at)))
            .map_err(|e| BadMessage(format!("server time: {e}")))?;
        crate::playbooks::record_reports(
            state.store().as_ref(),
            namespace,
            device_id,
            playbook_reports,
            &now,
        )
        .await
        .map_err(|e| ApiError::store("record playbook executions", &e))?;
    }
    // Only a heartbeat that carries events writes any: the quiet one costs nothing more.
    if let Some(events) = heartbeat.events.as_deref().filter(|e| !e.is_empty()) {
        state
            .events()
            .record_device_events(namespace, device_id, events)
            .await
            .map_err(|e| ApiError::store("record_event", &e))?;
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
    Ok(posted_reply(decision.status, envelope, Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let status =
            status_from_heartbeat(Some(&current), &heartbeat, OffsetDateTime::now_utc(), None)
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
