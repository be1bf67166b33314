//! The one error type crossing the FFI: a small flat enum whose variant is the kind
//! of failure and whose message says what failed.

use flotta_agent_lib::AgentError;
use flotta_client::ClientError;
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
}

/// The error and its causes, `: `-joined, so the Kotlin message is complete.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
        match &error {
            ClientError::Api { status: 404, .. } => Self::NotFound(message),
            ClientError::Api { status: 409, .. } => Self::Conflict(message),
            ClientError::Api {
                status: 401 | 403, ..
            } => Self::Unauthorized(message),
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => Self::Unreachable(message),
            ClientError::Manifest { .. } => Self::InvalidManifest(message),
            ClientError::Tls { .. }
            | ClientError::InvalidConfig { .. }
            | ClientError::ReadConfig { .. }
            | ClientError::ParseConfig { .. }
            | ClientError::InvalidName { .. }
            | ClientError::Encode { .. } => Self::InvalidConfig(message),
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
