//! The device-status sweep: time passes for devices that say nothing.
//!
//! A heartbeat writes its device's status and conditions when they change (see
//! `handlers/heartbeat.rs`); a silent device writes nothing, and a change of what the
//! server renders for a device (a workload update, a set template that no longer
//! renders) reaches its status only at its next heartbeat. So every
//! [`EdgeOptions::status_sweep_period`](super::EdgeOptions::status_sweep_period)
//! the sweep recomputes, with [`flotta_core::reconcile::device_status_at`], the status
//! of every device ever heard from (the last-seen table's devices) against its
//! last-seen time and what the server serves it now, and writes those that changed:
//! a device silent for three heartbeat periods turns `Online=False` (phase
//! `unknown`, workloads `Unknown`), which list, watch and field selectors see. A
//! write is conditional on the resource version read; one that loses a race is
//! simply recomputed at the next sweep. A status that newly says the device's
//! configuration does not render (`SpecValid=False`) is recorded as a
//! `RenderFailed` Warning event, as a heartbeat's write does.

use std::collections::HashMap;
use std::time::Duration;

use flotta_core::events::{InvolvedObject, ServerEvent, new_render_problem};
use flotta_core::model::{EdgeDeviceStatus, Time};
use flotta_core::reconcile::device_status_at;
use flotta_core::timestamp::rfc3339_seconds;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::EdgeState;
use crate::store::{ListOptions, ResourceKind, StoreError};

/// Default of [`EdgeOptions::status_sweep_period`](super::EdgeOptions::status_sweep_period).
pub const DEFAULT_STATUS_SWEEP_PERIOD: Duration = Duration::from_secs(10);

fn time_of(at: OffsetDateTime) -> Option<Time> {
    serde_json::from_value(Value::String(rfc3339_seconds(at))).ok()
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct SweepOutcome {
    /// Devices looked at.
    pub(super) devices: usize,
    /// Statuses written.
    pub(super) written: usize,
}

/// Recomputes and writes, where it changed, the status of every device heard from.
pub(super) async fn sweep(state: &EdgeState) -> Result<SweepOutcome, StoreError> {
    let store = state.store();
    let seen: HashMap<(String, String), OffsetDateTime> = store
        .last_seen_all(None)
        .await?
        .into_iter()
        .map(|row| ((row.namespace, row.device), row.seen_at))
        .collect();
    let mut outcome = SweepOutcome::default();
    if seen.is_empty() {
        return Ok(outcome);
    }
    let Some(now) = time_of(OffsetDateTime::now_utc()) else {
        return Ok(outcome);
    };
    let devices = store
        .list(ResourceKind::EdgeDevice, None, &ListOptions::default())
        .await?
        .items;
    for device in devices {
        let key = (device.namespace.clone(), device.name.clone());
        // Devices never heard from have nothing to age.
        let Some(last_seen) = seen.get(&key).copied().and_then(time_of) else {
            continue;
        };
        outcome.devices += 1;
        let mut status = device
            .body
            .get("status")
            .and_then(|s| EdgeDeviceStatus::deserialize(s).ok())
            .unwrap_or_default();
        status.last_seen = None;
        let served = state.served_config(&device.namespace, &device.name);
        let mut aged = device_status_at(
            &status,
            Some(&last_seen),
            served.as_deref().map(|c| &c.served),
            &now,
        );
        // lastSeen lives in its own table, never in the row.
        aged.last_seen = None;
        if aged == status {
            continue;
        }
        let body = serde_json::to_value(&aged).unwrap_or(Value::Null);
        match store
            .update_status(
                ResourceKind::EdgeDevice,
                &device.namespace,
                &device.name,
                Some(device.resource_version),
                body,
            )
            .await
        {
            Ok(_) => {
                outcome.written += 1;
                if let Some(problem) = new_render_problem(Some(&status), &aged) {
                    state
                        .events()
                        .spawn_server_event(ServerEvent::RenderFailed {
                            device: InvolvedObject::new(
                                ResourceKind::EdgeDevice,
                                device.namespace.as_str(),
                                device.name.as_str(),
                            ),
                            message: problem,
                        });
                }
            }
            // A heartbeat or an edit won the race: the next sweep looks again.
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(outcome)
}

/// Runs [`sweep`] every `period` until the state shuts down.
pub(super) fn spawn(state: EdgeState, period: Duration) -> tokio::task::JoinHandle<()> {
    let mut shutdown = state.shutdown_signal();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = super::stopped(&mut shutdown) => return,
            }
            match sweep(&state).await {
                Ok(outcome) if outcome.written > 0 => {
                    tracing::debug!(
                        devices = outcome.devices,
                        written = outcome.written,
                        "device statuses aged"
                    );
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %crate::api::error_chain(&error), "device status sweep failed");
                }
            }
        }
    })
}
