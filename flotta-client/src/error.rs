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
    /// A rollout operation has nothing to act on: no previous revision to undo to, no
    /// rollout in progress to approve.
    #[error("rollout of {workload}: {message}")]
    Rollout {
        /// The workload.
        workload: String,
        /// What is missing.
        message: String,
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

/// What kind of failure a [`ClientError`] is, for callers (the Python and Kotlin
/// bindings, the command line) that map errors to their own classes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400: the server refused the request as malformed.
    BadRequest,
    /// 401: the credentials were refused.
    Unauthorized,
    /// 403: the caller may not do this.
    Forbidden,
    /// 404: the object does not exist.
    NotFound,
    /// 409 with reason `AlreadyExists`: a create found the object there.
    AlreadyExists,
    /// 409 otherwise: the write lost an optimistic-concurrency race.
    Conflict,
    /// 410: the resource version asked for is no longer known.
    Gone,
    /// 422: the object failed validation.
    Invalid,
    /// A rollout operation had nothing to act on.
    Rollout,
    /// 5xx: the server failed.
    Server,
    /// Another error status.
    OtherStatus,
    /// The request took longer than its timeout.
    Timeout,
    /// The server could not be reached, or the connection failed under way.
    Unreachable,
    /// A setting, certificate, configuration file or name given to the client is
    /// unusable.
    Config,
    /// A manifest could not be applied before any request.
    Manifest,
    /// The server's answer could not be decoded.
    Decode,
    /// A request body could not be encoded.
    Encode,
}

impl ErrorKind {
    /// The kind of an error status with its Kubernetes reason.
    pub fn of_status(status: u16, reason: &str) -> Self {
        match (status, reason) {
            (409, "AlreadyExists") => ErrorKind::AlreadyExists,
            (400, _) => ErrorKind::BadRequest,
            (401, _) => ErrorKind::Unauthorized,
            (403, _) => ErrorKind::Forbidden,
            (404, _) => ErrorKind::NotFound,
            (409, _) => ErrorKind::Conflict,
            (410, _) => ErrorKind::Gone,
            (422, _) => ErrorKind::Invalid,
            (500..=599, _) => ErrorKind::Server,
            _ => ErrorKind::OtherStatus,
        }
    }
}

impl ClientError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Api { status, reason, .. } => ErrorKind::of_status(*status, reason),
            ClientError::Timeout { .. } => ErrorKind::Timeout,
            ClientError::Connect { .. } | ClientError::Transport { .. } => ErrorKind::Unreachable,
            ClientError::Tls { .. }
            | ClientError::InvalidConfig { .. }
            | ClientError::ReadConfig { .. }
            | ClientError::ParseConfig { .. }
            | ClientError::InvalidName { .. } => ErrorKind::Config,
            ClientError::Manifest { .. } => ErrorKind::Manifest,
            ClientError::Rollout { .. } => ErrorKind::Rollout,
            ClientError::Decode { .. } => ErrorKind::Decode,
            ClientError::Encode { .. } => ErrorKind::Encode,
        }
    }

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

    #[test]
    fn statuses_and_variants_sort_into_kinds() {
        let cases = [
            (400, ErrorKind::BadRequest),
            (401, ErrorKind::Unauthorized),
            (403, ErrorKind::Forbidden),
            (404, ErrorKind::NotFound),
            (409, ErrorKind::Conflict),
            (410, ErrorKind::Gone),
            (422, ErrorKind::Invalid),
            (500, ErrorKind::Server),
            (503, ErrorKind::Server),
            (429, ErrorKind::OtherStatus),
        ];
        for (status, kind) in cases {
            assert_eq!(api(status).kind(), kind, "{status}");
        }
        let exists = ClientError::Api {
            method: "POST".into(),
            path: "/x".into(),
            status: 409,
            reason: "AlreadyExists".into(),
            message: "m".into(),
        };
        assert_eq!(exists.kind(), ErrorKind::AlreadyExists);
        assert_eq!(ClientError::tls("x").kind(), ErrorKind::Config);
        assert_eq!(ClientError::invalid_config("x").kind(), ErrorKind::Config);
        let manifest = ClientError::Manifest {
            index: 0,
            message: "m".into(),
        };
        assert_eq!(manifest.kind(), ErrorKind::Manifest);
        let decode = ClientError::Decode {
            what: "w".into(),
            message: "m".into(),
        };
        assert_eq!(decode.kind(), ErrorKind::Decode);
    }
}
