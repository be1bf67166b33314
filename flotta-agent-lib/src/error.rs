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
