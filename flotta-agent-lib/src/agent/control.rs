//! The control loop: read the server's commands, and carry out `disconnect` (the
//! device was deleted) by removing its workloads and the agent's state.

use std::collections::BTreeSet;

use flotta_core::wire::Message;

use super::Agent;
use super::heartbeat::jittered;
use super::status::{AgentEvent, lock};
use crate::error::AgentError;
use crate::state::{StateItem, load_config};

impl Agent {
    /// Reads control commands when the server says one waits (it marks its
    /// configuration answers), whenever a call was refused, and otherwise once per
    /// longest heartbeat silence (every heartbeat period when the configuration
    /// names none); returns after carrying out a `disconnect`.
    pub(super) async fn control_loop(&self) -> Result<(), AgentError> {
        loop {
            let silence = *lock(&self.shared.max_silence);
            let every = silence.unwrap_or_else(|| *lock(&self.shared.heartbeat_period));
            let period = jittered(every, super::random());
            tokio::select! {
                () = self.clock.sleep(period) => {}
                () = self.shared.control_check.notified() => {}
            }
            match self.client.control_in(&self.device_id).await {
                Ok(Some(command)) if is_disconnect(&command) => return self.disconnect().await,
                Ok(Some(command)) if is_renew_certificate(&command) => {
                    tracing::info!("the server asked for a certificate renewal");
                    self.shared.request_renewal();
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "control poll failed");
                    if error.status() == Some(401) {
                        self.shared.refused(Some(401));
                    }
                    // Do not spin on repeated refusals.
                    self.clock.sleep(self.timing.retry.initial).await;
                }
            }
        }
    }

    /// The device was deleted on the server: remove its workloads and the agent's
    /// state (key and certificate included).
    pub(super) async fn disconnect(&self) -> Result<(), AgentError> {
        let _applying = self.apply_lock.lock().await;
        tracing::warn!(
            device = %self.device_id,
            "the server disconnected this device; removing its workloads and state"
        );
        // The workloads the agent applied, and those of its configurations.
        let mut names: BTreeSet<String> = self.applied_names().into_iter().collect();
        let mut complete = true;
        for item in [StateItem::CurrentConfig, StateItem::DesiredConfig] {
            if let Ok(Some(config)) = load_config(self.state.as_ref(), item).await {
                names.extend(
                    config
                        .message
                        .workloads
                        .iter()
                        .flatten()
                        .filter_map(|w| w.name.clone()),
                );
            }
        }
        let mut removed = Vec::new();
        for name in names {
            match self.remove_workload(&name).await {
                Ok(()) => removed.push(name),
                Err(error) => {
                    tracing::error!(%error, "could not remove a workload");
                    complete = false;
                }
            }
        }
        let mut state_error = None;
        for item in StateItem::ALL {
            if let Err(error) = self.state.remove(item).await {
                complete = false;
                state_error.get_or_insert(error);
            }
        }
        // The buffered metrics of a deleted device have nowhere to go.
        if let Some(dir) = &self.metrics_dir
            && let Err(error) = tokio::fs::remove_dir_all(dir).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(%error, "could not remove the metrics buffer");
            complete = false;
        }
        self.shared.update(|s| {
            s.disconnected = true;
            s.config_version = None;
            s.certificate_expires = None;
            s.certificate_renew_at = None;
        });
        tracing::warn!(?removed, complete, "disconnected; the agent stops");
        self.shared.emit(AgentEvent::Disconnected {
            removed_workloads: removed,
            complete,
        });
        match state_error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

/// Whether a control message is the `disconnect` command.
/// Whether `message` is the `renew-certificate` command (a CA rotation).
fn is_renew_certificate(message: &Message) -> bool {
    message.directive.as_deref() == Some(flotta_core::wire::directive::RENEW_CERTIFICATE)
}

pub(super) fn is_disconnect(message: &Message) -> bool {
    message.directive.as_deref() == Some("disconnect")
        || message
            .content
            .as_ref()
            .and_then(|c| c.get("command"))
            .and_then(serde_json::Value::as_str)
            == Some("disconnect")
}
