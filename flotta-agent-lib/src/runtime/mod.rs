//! Where workloads run: the [`WorkloadRuntime`] trait, the in-memory
//! [`MemoryRuntime`], host processes ([`ProcessRuntime`]) and podman
//! ([`PodmanRuntime`]).

pub mod podman;
pub mod process;

pub use podman::{PodmanOptions, PodmanRuntime};
pub use process::{ProcessOptions, ProcessRuntime};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use flotta_core::reconcile::{WorkloadInputs, WorkloadPhase};
use flotta_core::wire::Workload;

/// Why a runtime could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The workload has no name, so it cannot be tracked.
    #[error("the workload has no name")]
    UnnamedWorkload,
    /// The runtime refused or failed to start the workload.
    #[error("workload {name} could not be applied: {reason}")]
    ApplyFailed {
        /// Workload name.
        name: String,
        /// What went wrong.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The runtime failed to remove the workload.
    #[error("workload {name} could not be removed: {reason}")]
    RemoveFailed {
        /// Workload name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The runtime cannot be used at all (its directory cannot be created, its
    /// container engine is missing).
    #[error("the runtime is unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An image of the workload could not be downloaded before the apply.
    #[error("workload {name}: image {image} could not be prefetched: {reason}")]
    PrefetchFailed {
        /// Workload name.
        name: String,
        /// The image.
        image: String,
        /// What went wrong (the registry's answer, the engine's error).
        reason: String,
    },
    /// The runtime could not list its workloads.
    #[error("the runtime could not list its workloads: {reason}")]
    ListFailed {
        /// What went wrong.
        reason: String,
    },
}

/// A workload or container name that cannot be a file name of its own (the
/// runtimes keep files named after them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a name of 1 to 253 letters, digits, '-', '.' and '_'")]
pub(crate) struct InvalidName(pub(crate) String);

/// Refuses names that cannot be one path component of their own.
pub(crate) fn check_file_name(name: &str) -> Result<(), InvalidName> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if valid {
        Ok(())
    } else {
        Err(InvalidName(name.to_owned()))
    }
}

/// How the lines of a runtime's log files ([`WorkloadRuntime::log_files`]) are
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// Each line is a line of the workload's output, as it wrote it.
    #[default]
    Plain,
    /// The CRI log format of Kubernetes' kubelet and podman's `k8s-file` driver:
    /// `TIMESTAMP STREAM TAG MESSAGE`, `STREAM` `stdout` or `stderr`, `TAG` `F` for
    /// a whole line or `P` for a part of a longer one
    /// ([`crate::logs::cri_message`] takes the message out).
    Cri,
}

/// One workload as a runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadState {
    /// Workload name.
    pub name: String,
    /// Its phase.
    pub phase: WorkloadPhase,
}

/// Runs the workloads of a device.
///
/// Contract:
/// - [`apply`](Self::apply) makes the runtime run exactly this definition under the
///   workload's name, replacing any earlier definition of that name; it returns once
///   the workload is started (or deploying), and errors when it cannot be started, in
///   which case the runtime must not keep a half-started copy of the new definition.
/// - [`remove`](Self::remove) stops and deletes the workload; removing a workload the
///   runtime does not have succeeds (removal is idempotent).
/// - [`list`](Self::list) reports every workload the runtime has, with its phase,
///   sorted by name.
///
/// Which definition each workload was applied from is the agent's bookkeeping, not
/// the runtime's: the agent applies a workload only when its definition changed.
///
/// Implementations must be safe to call from several tasks at once.
#[async_trait]
pub trait WorkloadRuntime: Send + Sync {
    /// Starts `workload`, or replaces the running workload of the same name.
    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError>;
    /// Starts `workload` with its resolved inputs (environment from config maps and
    /// secrets, volume files, registry auth file): what the agent calls. The
    /// default ignores `inputs` and calls [`apply`](Self::apply), for runtimes that
    /// resolve nothing themselves.
    async fn apply_with(
        &self,
        workload: &Workload,
        inputs: &WorkloadInputs,
    ) -> Result<(), RuntimeError> {
        let _ = inputs;
        self.apply(workload).await
    }
    /// Downloads what `workload` needs (its images, with its registry
    /// credentials) without starting or changing anything: the agent prefetches
    /// every workload of a version before it applies any, so a network failure
    /// leaves the running version untouched. The default has nothing to fetch.
    async fn prefetch(
        &self,
        workload: &Workload,
        inputs: &WorkloadInputs,
    ) -> Result<(), RuntimeError> {
        let _ = (workload, inputs);
        Ok(())
    }
    /// Stops and removes the workload `name`.
    async fn remove(&self, name: &str) -> Result<(), RuntimeError>;
    /// Whether [`log_files`](Self::log_files) gives the logs of the workloads
    /// this runtime runs. The agent refuses a version asking to forward the logs
    /// of a workload when it does not. The default: no.
    fn collects_logs(&self) -> bool {
        false
    }
    /// Whether [`export_dir`](Self::export_dir) gives the directory of the
    /// workloads' exported data (`/export` in the workload). The agent refuses a
    /// version with `data.egress` paths when it does not. The default: no.
    fn exports_data(&self) -> bool {
        false
    }
    /// The host directory workload `name` exports data to, whose files the data
    /// upload sends; `None` while the runtime does not run it.
    fn export_dir(&self, name: &str) -> Option<std::path::PathBuf> {
        let _ = name;
        None
    }
    /// The log file of each container of workload `name`, as `(container, path)`:
    /// one line per line of output, appended to as the workload runs. Empty for a
    /// workload the runtime does not run.
    fn log_files(&self, name: &str) -> Vec<(String, std::path::PathBuf)> {
        let _ = name;
        Vec::new()
    }
    /// How the lines of [`log_files`](Self::log_files) are written. The default:
    /// [`LogFormat::Plain`].
    fn log_format(&self) -> LogFormat {
        LogFormat::Plain
    }
    /// Every workload the runtime has, sorted by name.
    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError>;
}

#[derive(Debug, Default)]
struct MemoryInner {
    workloads: BTreeMap<String, Workload>,
    refused: BTreeSet<String>,
    apply_attempts: BTreeMap<String, u32>,
}

/// A runtime that keeps workloads in memory and reports them running: for tests,
/// simulations and firmware that starts its own processes from the agent's events.
///
/// [`refuse`](Self::refuse) makes applying a given workload fail, to exercise
/// rollback.
#[derive(Debug, Default)]
pub struct MemoryRuntime {
    inner: Mutex<MemoryInner>,
}

impl MemoryRuntime {
    /// An empty runtime.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // The map is whole after any panic in a holder: each update is one insert.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, applying a workload named `name` fails with
    /// [`RuntimeError::ApplyFailed`].
    pub fn refuse(&self, name: impl Into<String>) {
        self.inner().refused.insert(name.into());
    }

    /// The definition the runtime runs under `name`, if any.
    pub fn workload(&self, name: &str) -> Option<Workload> {
        self.inner().workloads.get(name).cloned()
    }

    /// Names of the workloads the runtime runs, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner().workloads.keys().cloned().collect()
    }

    /// How many times applying `name` was attempted (successful or not).
    pub fn apply_attempts(&self, name: &str) -> u32 {
        self.inner().apply_attempts.get(name).copied().unwrap_or(0)
    }
}

#[async_trait]
impl WorkloadRuntime for MemoryRuntime {
    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError> {
        let name = workload
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(RuntimeError::UnnamedWorkload)?;
        let mut inner = self.inner();
        *inner.apply_attempts.entry(name.clone()).or_default() += 1;
        if inner.refused.contains(&name) {
            return Err(RuntimeError::ApplyFailed {
                name,
                reason: "refused by the in-memory runtime".into(),
                source: None,
            });
        }
        inner.workloads.insert(name, workload.clone());
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.inner().workloads.remove(name);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError> {
        Ok(self
            .inner()
            .workloads
            .keys()
            .map(|name| WorkloadState {
                name: name.clone(),
                phase: WorkloadPhase::Running,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(name: &str, image: &str) -> Workload {
        Workload {
            name: Some(name.into()),
            specification: Some(format!("containers:\n- image: {image}\n")),
            ..Default::default()
        }
    }

    #[test]
    fn names_that_escape_the_directory_are_refused() {
        assert_eq!(check_file_name("web-1.v2_a"), Ok(()));
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert_eq!(check_file_name(bad), Err(InvalidName(bad.to_owned())));
        }
        assert!(check_file_name(&"a".repeat(254)).is_err());
    }

    #[tokio::test]
    async fn apply_replaces_and_remove_is_idempotent() {
        let runtime = MemoryRuntime::new();
        runtime.apply(&workload("a", "one")).await.expect("apply");
        runtime.apply(&workload("a", "two")).await.expect("replace");
        let listed = runtime.list().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(runtime.workload("a"), Some(workload("a", "two")));
        runtime.remove("a").await.expect("remove");
        runtime.remove("a").await.expect("remove again");
        assert!(runtime.list().await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn refused_and_unnamed_workloads_fail_without_being_kept() {
        let runtime = MemoryRuntime::new();
        runtime.refuse("bad");
        assert!(matches!(
            runtime.apply(&workload("bad", "x")).await,
            Err(RuntimeError::ApplyFailed { .. })
        ));
        assert!(matches!(
            runtime.apply(&Workload::default()).await,
            Err(RuntimeError::UnnamedWorkload)
        ));
        assert!(runtime.names().is_empty());
        assert_eq!(runtime.apply_attempts("bad"), 1);
    }
}
