//! The one error type crossing the FFI: a small flat enum whose variant is the kind
//! of failure and whose message says what failed.

use flotta_agent_lib::AgentError;
use flotta_client::{ClientError, ErrorKind};
use flotta_core::error_chain::error_chain as chain;
use flotta_core::manifest::ManifestError;
use flotta_core::selector::SelectorError;

/// Why a call failed. In Kotlin each variant is a subclass of `FlottaException`
/// carrying the message.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum FlottaError {
    /// A label or field selector could not be parsed.
    #[error("{0}")]
    InvalidSelector(String),
    /// A manifest could not be read (YAML, kind, field types).
    #[error("{0}")]
    InvalidManifest(String),
    /// A setting, certificate, token or name given to the library is unusable.
    #[error("{0}")]
    InvalidConfig(String),
    /// The server could not be reached, or the connection failed; retrying may help.
    #[error("{0}")]
    Unreachable(String),
    /// The server refused the credentials (401) or the action (403).
    #[error("{0}")]
    Unauthorized(String),
    /// The object does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The write lost an optimistic-concurrency race, or the object exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The server answered with another error, or with something undecodable.
    #[error("{0}")]
    Api(String),
    /// The agent stopped on an error (unusable persisted state, storage failure).
    #[error("{0}")]
    Agent(String),
    /// A rollout control does not apply now: no rollout in progress to approve,
    /// no previous revision to undo to.
    #[error("{0}")]
    Rollout(String),
}

impl From<SelectorError> for FlottaError {
    fn from(error: SelectorError) -> Self {
        Self::InvalidSelector(error.to_string())
    }
}

impl From<ManifestError> for FlottaError {
    fn from(error: ManifestError) -> Self {
        Self::InvalidManifest(chain(&error))
    }
}

impl From<ClientError> for FlottaError {
    fn from(error: ClientError) -> Self {
        let message = chain(&error);
        match error.kind() {
            ErrorKind::NotFound => Self::NotFound(message),
            ErrorKind::Conflict | ErrorKind::AlreadyExists => Self::Conflict(message),
            ErrorKind::Unauthorized | ErrorKind::Forbidden => Self::Unauthorized(message),
            ErrorKind::Unreachable | ErrorKind::Timeout => Self::Unreachable(message),
            ErrorKind::Manifest => Self::InvalidManifest(message),
            ErrorKind::Config | ErrorKind::Encode => Self::InvalidConfig(message),
            ErrorKind::Rollout => Self::Rollout(message),
            _ => Self::Api(message),
        }
    }
}

impl From<AgentError> for FlottaError {
    fn from(error: AgentError) -> Self {
        let message = chain(&error);
        match error {
            AgentError::InvalidSetting { .. } | AgentError::Client { .. } => {
                Self::InvalidConfig(message)
            }
            _ => Self::Agent(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_statuses_become_kinds() {
        let api = |status: u16| ClientError::Api {
            method: "GET".into(),
            path: "/x".into(),
            status,
            reason: "R".into(),
            message: "m".into(),
        };
        assert!(matches!(
            FlottaError::from(api(404)),
            FlottaError::NotFound(_)
        ));
        assert!(matches!(
            FlottaError::from(api(409)),
            FlottaError::Conflict(_)
        ));
        assert!(matches!(
            FlottaError::from(api(403)),
            FlottaError::Unauthorized(_)
        ));
        match FlottaError::from(api(500)) {
            FlottaError::Api(message) => assert_eq!(message, "GET /x: 500 R: m"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn selector_errors_keep_the_offset() {
        let error = "a in (".parse::<flotta_core::selector::Selector>().err();
        let Some(error) = error else {
            panic!("the selector parsed")
        };
        match FlottaError::from(error) {
            FlottaError::InvalidSelector(message) => assert!(message.contains("byte"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
