//! The one error type of the client.

use std::path::PathBuf;

/// What went wrong talking to a flotta server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error status (a Kubernetes `Status` object on the
    /// management API, Flotta's status codes on the Edge API).
    #[error("{method} {path}: {status} {reason}: {message}")]
    Api {
        /// HTTP method of the request.
        method: String,
        /// Path of the request.
        path: String,
        /// HTTP status code.
        status: u16,
        /// Machine-readable reason, e.g. `NotFound`, `Conflict`, `Invalid`.
        reason: String,
        /// Human-readable message from the server.
        message: String,
    },
    /// The TLS set-up failed: a certificate or key could not be used.
    #[error("TLS set-up failed: {what}")]
    Tls {
        /// What could not be used, e.g. `CA certificate PEM`.
        what: String,
        /// Why, when a library said so.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The server could not be reached (connection refused, DNS, TLS handshake).
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL asked for.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The request took longer than the configured timeout.
    #[error("request to {url} timed out")]
    Timeout {
        /// The URL asked for.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection failed while the request or response was under way.
    #[error("request to {url} failed")]
    Transport {
        /// The URL asked for.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server's answer did not have the expected shape.
    #[error("cannot decode the answer to {what}: {message}")]
    Decode {
        /// What was being decoded, e.g. `GET /apis/.../edgedevices`.
        what: String,
        /// The decoder's message (it names the field path where it can).
        message: String,
    },
    /// A request body or query could not be encoded.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The client configuration is unusable (bad URL, missing field).
    #[error("invalid client configuration: {message}")]
    InvalidConfig {
        /// What is wrong, naming the field.
        message: String,
    },
    /// A configuration file could not be read.
    #[error("cannot read {path}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file could not be parsed.
    #[error("cannot parse {path}: {message}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the line).
        message: String,
    },
    /// A name or namespace cannot be used in a URL path (empty, or holding `/`, `?`,
    /// `#` or `%`).
    #[error("invalid {what} {value:?}")]
    InvalidName {
        /// `name` or `namespace`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// A manifest could not be applied before any request: bad YAML, an unknown kind
    /// or a missing name.
    #[error("document {index}: {message}")]
    Manifest {
        /// Zero-based index of the document in its stream.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

impl ClientError {
    /// The HTTP status the server answered with, for [`ClientError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Kubernetes reason (`NotFound`, `Conflict`, ...), for [`ClientError::Api`].
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Api { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Whether the object was not found (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the write lost an optimistic-concurrency race or the object exists
    /// (409).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// Whether trying the same request again later may succeed: connection failures,
    /// timeouts, 429 and the 5xx codes a restarting or overloaded server answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Sorts a reqwest error into the variant that says what failed.
    pub(crate) fn from_reqwest(url: &str, source: reqwest::Error) -> Self {
        let url = url.to_owned();
        if source.is_timeout() {
            ClientError::Timeout { url, source }
        } else if source.is_connect() {
            ClientError::Connect { url, source }
        } else {
            ClientError::Transport { url, source }
        }
    }

    pub(crate) fn tls(what: impl Into<String>) -> Self {
        ClientError::Tls {
            what: what.into(),
            source: None,
        }
    }

    pub(crate) fn invalid_config(message: impl Into<String>) -> Self {
        ClientError::InvalidConfig {
            message: message.into(),
        }
    }
}

/// Result of a client call.
pub type ClientResult<T> = Result<T, ClientError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            method: "GET".into(),
            path: "/x".into(),
            status,
            reason: "R".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn only_transient_statuses_are_retryable() {
        for status in [429, 500, 502, 503, 504] {
            assert!(api(status).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 410, 422, 501] {
            assert!(!api(status).is_retryable(), "{status}");
        }
        assert!(!ClientError::invalid_config("x").is_retryable());
        assert_eq!(api(404).status(), Some(404));
        assert!(api(404).is_not_found());
        assert!(api(409).is_conflict());
        assert_eq!(ClientError::tls("x").status(), None);
    }
}
