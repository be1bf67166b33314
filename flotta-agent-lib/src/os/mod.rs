//! Operating-system updates: the [`OsUpdater`] trait, [`NoOsUpdater`], and the
//! command backends [`RpmOstreeUpdater`] and [`BootcUpdater`].

mod bootc;
mod rpm_ostree;

pub use bootc::BootcUpdater;
pub use rpm_ostree::RpmOstreeUpdater;

use std::path::Path;
use std::sync::Arc;

use crate::command::{CommandOutput, CommandRunner};

use async_trait::async_trait;
use flotta_core::wire::OsInformation;

/// Why an OS update step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OsError {
    /// This updater cannot change the operating system.
    #[error("this device cannot update its operating system ({operation})")]
    Unsupported {
        /// The step that was asked for.
        operation: &'static str,
    },
    /// The step failed.
    #[error("OS {operation} failed: {reason}")]
    Failed {
        /// The step.
        operation: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Health of the running operating system after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OsHealth {
    /// The system works; the update can be kept.
    Healthy,
    /// The system does not work; roll back.
    Unhealthy,
}

/// Updates the device's operating system (rpm-ostree, bootc, A/B partitions, ...).
///
/// Contract: [`stage`](Self::stage) prepares the target without affecting the
/// running system; [`activate`](Self::activate) switches to the staged target (it
/// may reboot the device, so the agent persists its state first);
/// [`health`](Self::health) judges the system after activation, and
/// [`rollback`](Self::rollback) returns to the previous deployment.
#[async_trait]
pub trait OsUpdater: Send + Sync {
    /// The commit or image the device runs, if the updater knows it.
    async fn current_commit(&self) -> Result<Option<String>, OsError>;
    /// Prepares `target` for activation.
    async fn stage(&self, target: &OsInformation) -> Result<(), OsError>;
    /// Switches to the staged target.
    async fn activate(&self) -> Result<(), OsError>;
    /// Returns to the deployment before the last activation.
    async fn rollback(&self) -> Result<(), OsError>;
    /// Whether the running system is healthy.
    async fn health(&self) -> Result<OsHealth, OsError>;
}

/// An updater for devices whose OS the agent does not manage: it reports no commit,
/// a healthy system, and refuses every change with [`OsError::Unsupported`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOsUpdater;

#[async_trait]
impl OsUpdater for NoOsUpdater {
    async fn current_commit(&self) -> Result<Option<String>, OsError> {
        Ok(None)
    }

    async fn stage(&self, _target: &OsInformation) -> Result<(), OsError> {
        Err(OsError::Unsupported { operation: "stage" })
    }

    async fn activate(&self) -> Result<(), OsError> {
        Err(OsError::Unsupported {
            operation: "activate",
        })
    }

    async fn rollback(&self) -> Result<(), OsError> {
        Err(OsError::Unsupported {
            operation: "rollback",
        })
    }

    async fn health(&self) -> Result<OsHealth, OsError> {
        Ok(OsHealth::Healthy)
    }
}

/// Runs `program args`, failing `operation` with the command's exit status and
/// stderr when it does not succeed.
async fn run(
    commands: &Arc<dyn CommandRunner>,
    operation: &'static str,
    program: &Path,
    args: &[&str],
) -> Result<CommandOutput, OsError> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = commands
        .run(program, &args)
        .await
        .map_err(|e| OsError::Failed {
            operation,
            reason: format!("cannot run {}: {e}", program.display()),
        })?;
    if output.success {
        Ok(output)
    } else {
        Err(OsError::Failed {
            operation,
            reason: format!(
                "{} {}: {}",
                program.display(),
                args.join(" "),
                output.failure()
            ),
        })
    }
}

/// Health from `systemctl is-system-running`: `degraded`, `maintenance` and
/// `stopping` are unhealthy; anything else (`running`, `starting`, ...) is healthy.
/// The command exits non-zero for every state but `running`, so its output is read
/// whatever the status.
async fn systemd_health(commands: &Arc<dyn CommandRunner>) -> Result<OsHealth, OsError> {
    let args = ["is-system-running".to_owned()];
    let output = commands
        .run(Path::new("systemctl"), &args)
        .await
        .map_err(|e| OsError::Failed {
            operation: "health",
            reason: format!("cannot run systemctl: {e}"),
        })?;
    let state = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match state.as_str() {
        "degraded" | "maintenance" | "stopping" => Ok(OsHealth::Unhealthy),
        "" => Err(OsError::Failed {
            operation: "health",
            reason: format!("systemctl is-system-running: {}", output.failure()),
        }),
        _ => Ok(OsHealth::Healthy),
    }
}

/// `systemctl reboot`: the step that makes a staged deployment the running one.
async fn reboot(commands: &Arc<dyn CommandRunner>, operation: &'static str) -> Result<(), OsError> {
    run(commands, operation, Path::new("systemctl"), &["reboot"])
        .await
        .map(|_| ())
}
