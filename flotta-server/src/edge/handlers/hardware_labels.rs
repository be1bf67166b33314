//! Keeps a device's `device.*` labels in step with the hardware it reports, as
//! [`flotta_core::reconcile::relabel_from_hardware`] decides: written only when a
//! label changes, so a heartbeat repeating the same hardware costs nothing here.

use std::collections::BTreeMap;

use flotta_core::enrolment::Failure;
use flotta_core::model::Hardware;
use flotta_core::reconcile::relabel_from_hardware;
use serde_json::Value;

use super::{ApiError, get_object};
use crate::edge::EdgeState;
use crate::store::{ResourceKind, StoreError};

/// Attempts when the device changes between the read and the write.
const ATTEMPTS: usize = 5;

/// Sets the hardware labels of device `namespace/device_id` from `hardware`.
pub(super) async fn relabel(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
    hardware: &Hardware,
) -> Result<(), ApiError> {
    for _attempt in 0..ATTEMPTS {
        let Some(current) =
            get_object(state, ResourceKind::EdgeDevice, namespace, device_id).await?
        else {
            return Ok(());
        };
        let labels: BTreeMap<String, String> = current
            .body
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let Some(updated) = relabel_from_hardware(&labels, hardware) else {
            return Ok(());
        };
        let mut body = current.body.clone();
        if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert(
                "labels".into(),
                serde_json::to_value(&updated).unwrap_or(Value::Null),
            );
        }
        match state
            .store()
            .update(
                ResourceKind::EdgeDevice,
                namespace,
                device_id,
                Some(current.resource_version),
                body,
            )
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(ApiError::store("label device from hardware", &error)),
        }
    }
    Err(ApiError::failed(
        Failure::Busy,
        format!("device {namespace}/{device_id} is being changed concurrently; retry"),
    ))
}
