//! The agent's errors.

use crate::state::StateError;

/// Why the agent could not be built or could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A required builder setting is missing or invalid.
    #[error("invalid agent setting {field}: {reason}")]
    InvalidSetting {
        /// The builder setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Building the Edge API client or a TLS identity failed.
    #[error("could not set up the Edge API client ({what})")]
    Client {
        /// What was being set up.
        what: &'static str,
        /// The cause.
        #[source]
        source: flotta_client::ClientError,
    },
    /// Persisted state could not be read or written.
    #[error("agent state")]
    State(#[from] StateError),
    /// The device key could not be generated, read or used for a CSR.
    #[error("device key: {what}")]
    Key {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: flotta_core::pki::PkiError,
    },
    /// The persisted device certificate is unreadable.
    #[error("the persisted device certificate is unreadable")]
    Certificate(#[source] flotta_core::pki::CertificateError),
}

impl AgentError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AgentError::State(StateError::Io { .. }))
    }
}

/// Why a configuration, or one step of it, could not be carried out. Internal: its
/// text becomes the reason of [`AgentEvent::ApplyFailed`](crate::AgentEvent) and
/// of the events sent to the server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The runtime failed (apply, remove or list).
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// Staging or activating the OS failed.
    #[error(transparent)]
    Os(#[from] crate::os::OsError),
    /// The OS was unhealthy after activation and was rolled back (or not).
    #[error(
        "the OS is unhealthy after activating {target}; OS rollback {}",
        if *rolled_back { "done" } else { "failed" }
    )]
    OsUnhealthy {
        /// The commit or image activated.
        target: String,
        /// Whether the OS rollback succeeded.
        rolled_back: bool,
    },
    /// A file of the overlay could not be written or removed.
    #[error("file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A workload's environment or volume files could not be resolved.
    #[error("workload {workload}: {reason}")]
    Inputs {
        /// The workload.
        workload: String,
        /// What is missing or wrong (never a value).
        reason: String,
    },
    /// An action this agent does not know how to carry out.
    #[error("this agent cannot carry out {action}")]
    Unsupported {
        /// The action.
        action: String,
    },
}

/// Why a run-loop step is tried again after a backoff. Internal.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RetryLater {
    /// The request did not get the answer it needed.
    #[error("request failed")]
    Request(#[source] flotta_client::ClientError),
    /// The version waits for its download or update window (already reported).
    #[error("outside the update window")]
    Window {
        /// How long to wait before looking again.
        wait: std::time::Duration,
        /// The version.
        version: String,
        /// Its configuration, applied when the window opens.
        message: Box<flotta_core::wire::DeviceConfigurationMessage>,
    },
    /// What the version needs could not be downloaded (already reported); the
    /// running version is untouched.
    #[error("prefetch failed: {reason}")]
    Prefetch {
        /// Why.
        reason: String,
    },
    /// State could not be persisted (already reported as an event).
    #[error("could not persist {item}")]
    State {
        /// The item.
        item: crate::state::StateItem,
        /// The cause.
        #[source]
        source: StateError,
    },
}
