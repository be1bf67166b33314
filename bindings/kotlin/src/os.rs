//! `OsUpdater` implemented in Kotlin: a uniffi foreign trait, bridged to
//! `flotta_agent_lib::os::OsUpdater`. The agent owns the update's sequence and
//! persists it across the reboot; the Kotlin backend carries out each step.

use std::sync::Arc;

use async_trait::async_trait;
use flotta_agent_lib::os::{self, OsError, OsHealth};
use flotta_core::wire::OsInformation;

/// One deployment: an OSTree commit, a bootable image, a partition's content.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OsDeployment {
    /// What the heartbeat reports as the device's commit.
    pub id: String,
    /// The image reference it was made from, when it was one.
    #[uniffi(default = None)]
    pub image: Option<String>,
}

/// The deployments a backend knows.
#[derive(Debug, Clone, PartialEq, Eq, Default, uniffi::Record)]
pub struct OsDeployments {
    /// The running deployment.
    #[uniffi(default = None)]
    pub booted: Option<OsDeployment>,
    /// A deployment staged for the next boot.
    #[uniffi(default = None)]
    pub staged: Option<OsDeployment>,
    /// The deployment a rollback returns to.
    #[uniffi(default = None)]
    pub rollback: Option<OsDeployment>,
}

/// The operating system the device is asked to run.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OsTarget {
    /// OSTree commit, when the target is one.
    pub commit_id: Option<String>,
    /// Bootable container image, when the target is one.
    pub image: Option<String>,
    /// Where the commit's objects are hosted (Flotta's `hostedObjectsURL`).
    pub hosted_objects_url: Option<String>,
}

/// Why a step failed. Kotlin implementations throw `OsUpdaterException.Failed(reason)`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum OsUpdaterError {
    /// The step failed; `reason` says why.
    #[error("{reason}")]
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for OsUpdaterError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed {
            reason: format!(
                "the OS updater threw an unexpected exception: {}",
                error.reason
            ),
        }
    }
}

/// Updates the device's operating system one step at a time, implemented by the
/// embedding application (A/B partitions, an image swap, ...).
///
/// Contract (as `flotta_agent_lib::os::OsUpdater`): `booted` reports without
/// changing anything; `stage` prepares the target for the next boot without
/// touching the running system; `activate` makes it the next boot and reboots (it
/// may return once the reboot is requested; the agent is started again after the
/// boot); `rollback` makes the deployment booted before the update the next boot,
/// without rebooting; `reboot` reboots; `health` is the backend's judgement of the
/// running system.
#[uniffi::export(with_foreign)]
#[async_trait]
pub trait OsUpdater: Send + Sync {
    /// The running, staged and rollback deployments.
    async fn booted(&self) -> Result<OsDeployments, OsUpdaterError>;
    /// Prepares `target` for the next boot.
    async fn stage(&self, target: OsTarget) -> Result<(), OsUpdaterError>;
    /// Boots into the staged target.
    async fn activate(&self) -> Result<(), OsUpdaterError>;
    /// Makes the deployment before the update the next boot; no reboot.
    async fn rollback(&self) -> Result<(), OsUpdaterError>;
    /// Reboots the device.
    async fn reboot(&self) -> Result<(), OsUpdaterError>;
    /// Whether the running system is healthy.
    async fn health(&self) -> Result<bool, OsUpdaterError>;
}

/// A foreign OS updater seen as the agent library's.
pub(crate) struct ForeignOsUpdater {
    inner: Arc<dyn OsUpdater>,
}

impl ForeignOsUpdater {
    pub(crate) fn new(inner: Arc<dyn OsUpdater>) -> Self {
        Self { inner }
    }
}

fn deployment(d: Option<OsDeployment>) -> Option<os::Deployment> {
    d.map(|d| os::Deployment {
        id: d.id,
        image: d.image,
    })
}

fn failed(operation: &'static str) -> impl FnOnce(OsUpdaterError) -> OsError {
    move |e| OsError::Failed {
        operation,
        reason: e.to_string(),
    }
}

#[async_trait]
impl os::OsUpdater for ForeignOsUpdater {
    async fn booted(&self) -> Result<os::BootedOs, OsError> {
        let d = self.inner.booted().await.map_err(failed("status"))?;
        Ok(os::BootedOs {
            booted: deployment(d.booted),
            staged: deployment(d.staged),
            rollback: deployment(d.rollback),
        })
    }

    async fn stage(&self, target: &OsInformation) -> Result<(), OsError> {
        let target = OsTarget {
            commit_id: target.commit_id.clone(),
            image: target.image.clone(),
            hosted_objects_url: target.hosted_objects_url.clone(),
        };
        self.inner.stage(target).await.map_err(failed("stage"))
    }

    async fn activate(&self) -> Result<(), OsError> {
        self.inner.activate().await.map_err(failed("activate"))
    }

    async fn rollback(&self) -> Result<(), OsError> {
        self.inner.rollback().await.map_err(failed("rollback"))
    }

    async fn reboot(&self) -> Result<(), OsError> {
        self.inner.reboot().await.map_err(failed("reboot"))
    }

    async fn health(&self) -> Result<OsHealth, OsError> {
        let healthy = self.inner.health().await.map_err(failed("health"))?;
        Ok(if healthy {
            OsHealth::Healthy
        } else {
            OsHealth::Unhealthy
        })
    }
}
