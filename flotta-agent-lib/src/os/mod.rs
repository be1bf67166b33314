//! Operating-system updates: the [`OsUpdater`] trait, [`NoOsUpdater`], the command
//! backends [`RpmOstreeUpdater`] and [`BootcUpdater`], the greenboot-compatible
//! [`HealthChecks`], and the persisted [`OsUpdateRecord`] the agent drives across
//! the reboot.
//!
//! The agent owns the sequence: it calls [`OsUpdater::stage`], persists that it is
//! about to reboot, calls [`OsUpdater::activate`], and after the boot compares
//! [`OsUpdater::booted`] with the persisted target, runs the health checks within
//! `rollbackAfterSeconds`, and commits or calls [`OsUpdater::rollback`] and
//! [`OsUpdater::reboot`]. A backend only performs single steps.
//!
//! A custom backend (A/B partitions switched through the boot loader, for example):
//!
//! ```
//! use std::sync::Mutex;
//! use async_trait::async_trait;
//! use flotta_agent_lib::os::{BootedOs, Deployment, OsError, OsHealth, OsUpdater};
//! use flotta_core::wire::OsInformation;
//!
//! /// Two root partitions; the boot loader boots `next` once it is set.
//! #[derive(Debug, Default)]
//! struct AbPartitions {
//!     /// (slot, version) booted, and the slot written for the next boot.
//!     slots: Mutex<([Option<String>; 2], usize, Option<usize>)>,
//! }
//!
//! #[async_trait]
//! impl OsUpdater for AbPartitions {
//!     async fn booted(&self) -> Result<BootedOs, OsError> {
//!         let (versions, running, next) = self.slots.lock().map_err(|_| OsError::Failed {
//!             operation: "booted", reason: "lock poisoned".into() })?.clone();
//!         let deployment = |slot: usize| versions[slot].clone().map(Deployment::commit);
//!         Ok(BootedOs {
//!             booted: deployment(running),
//!             staged: next.and_then(deployment),
//!             rollback: deployment(1 - running),
//!         })
//!     }
//!     async fn stage(&self, target: &OsInformation) -> Result<(), OsError> {
//!         // Write the image to the other partition here (dd, a delta, ...).
//!         let mut slots = self.slots.lock().map_err(|_| OsError::Failed {
//!             operation: "stage", reason: "lock poisoned".into() })?;
//!         let other = 1 - slots.1;
//!         slots.0[other] = target.commit_id.clone();
//!         slots.2 = Some(other);
//!         Ok(())
//!     }
//!     async fn activate(&self) -> Result<(), OsError> {
//!         // Set the boot loader's "boot once" variable (fw_setenv), then reboot.
//!         self.reboot().await
//!     }
//!     async fn rollback(&self) -> Result<(), OsError> {
//!         // Point the boot loader at the partition booted before the update.
//!         Ok(())
//!     }
//!     async fn reboot(&self) -> Result<(), OsError> {
//!         Err(OsError::Unsupported { operation: "reboot (in this example)" })
//!     }
//!     async fn health(&self) -> Result<OsHealth, OsError> {
//!         Ok(OsHealth::Healthy)
//!     }
//! }
//! ```

mod bootc;
mod health;
mod rpm_ostree;
mod update;

pub use bootc::BootcUpdater;
pub use health::{CheckFailure, HealthChecks};
pub use rpm_ostree::{DEFAULT_REMOTES_DIR, HOSTED_REMOTE, RpmOstreeUpdater};
pub use update::{
    DEFAULT_WINDOW, MAX_BOOTS, OsUpdatePhase, OsUpdateRecord, ResumeStep, resume_step, target_name,
};

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

/// One deployment (an OSTree commit, a bootable image, a partition's content).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deployment {
    /// What the heartbeat reports as the device's commit: the OSTree checksum, or
    /// the image reference (with `@DIGEST` when known).
    pub id: String,
    /// The image reference the deployment was made from, when it was one.
    pub image: Option<String>,
}

impl Deployment {
    /// A deployment known by its commit only.
    pub fn commit(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            image: None,
        }
    }

    /// Whether this deployment is `target`: its commit, or its image (an image
    /// pulled by tag reports `TAG@DIGEST`, which is the tag's target too).
    pub fn runs(&self, target: &OsInformation) -> bool {
        let image_matches = |reference: &str| {
            target.image.as_deref().is_some_and(|wanted| {
                reference == wanted
                    || reference
                        .strip_prefix(wanted)
                        .is_some_and(|rest| rest.starts_with('@'))
            })
        };
        target.commit_id.as_deref() == Some(self.id.as_str())
            || image_matches(&self.id)
            || self.image.as_deref().is_some_and(image_matches)
    }
}

/// The deployments a backend knows: the one running, the one staged for the next
/// boot, and the one a rollback returns to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootedOs {
    /// The running deployment.
    pub booted: Option<Deployment>,
    /// A deployment staged for the next boot.
    pub staged: Option<Deployment>,
    /// The deployment a rollback returns to.
    pub rollback: Option<Deployment>,
}

/// Updates the device's operating system (rpm-ostree, bootc, A/B partitions, ...),
/// one step at a time; the agent owns the sequence and persists it across the
/// reboot (see the [module documentation](self) for an example backend).
///
/// Contract:
/// - [`booted`](Self::booted) reports the running, staged and rollback deployments
///   without changing anything;
/// - [`stage`](Self::stage) downloads and prepares the target for the next boot
///   without affecting the running system (and without making an unrelated reboot
///   boot into it, where the backend can lock it);
/// - [`activate`](Self::activate) makes the staged target the next boot and
///   reboots; it may never return (the process ends), or return once the reboot is
///   requested; a backend that switches without rebooting returns with
///   [`booted`](Self::booted) already reporting the target;
/// - [`rollback`](Self::rollback) makes the deployment booted before the update the
///   next boot and drops a staged one, without rebooting;
/// - [`reboot`](Self::reboot) reboots the device;
/// - [`health`](Self::health) is the backend's own judgement of the running system
///   (the agent adds greenboot checks and the user's checks).
#[async_trait]
pub trait OsUpdater: Send + Sync {
    /// The running, staged and rollback deployments.
    async fn booted(&self) -> Result<BootedOs, OsError>;
    /// The commit or image the device runs, if the updater knows it.
    async fn current_commit(&self) -> Result<Option<String>, OsError> {
        Ok(self.booted().await?.booted.map(|d| d.id))
    }
    /// Prepares `target` for the next boot.
    async fn stage(&self, target: &OsInformation) -> Result<(), OsError>;
    /// Boots into the staged target.
    async fn activate(&self) -> Result<(), OsError>;
    /// Makes the deployment before the update the next boot; no reboot.
    async fn rollback(&self) -> Result<(), OsError>;
    /// Reboots the device.
    async fn reboot(&self) -> Result<(), OsError>;
    /// Whether the running system is healthy, as the backend sees it.
    async fn health(&self) -> Result<OsHealth, OsError>;
    /// Whether [`stage`](Self::stage) pulls an OSTree commit from the target's
    /// `hosted_objects_url` (Flotta's `hostedObjectsURL`). A target naming one is
    /// refused by agents whose backend does not.
    fn pulls_hosted_objects(&self) -> bool {
        false
    }
}

/// An updater for devices whose OS the agent does not manage: it reports no commit,
/// a healthy system, and refuses every change with [`OsError::Unsupported`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOsUpdater;

#[async_trait]
impl OsUpdater for NoOsUpdater {
    async fn booted(&self) -> Result<BootedOs, OsError> {
        Ok(BootedOs::default())
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

    async fn reboot(&self) -> Result<(), OsError> {
        Err(OsError::Unsupported {
            operation: "reboot",
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
