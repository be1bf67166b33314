//! The error type shared by every storage backend.

use super::ResourceKind;

/// A boxed cause coming from a database driver.
pub type BackendCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a [`Store`](super::Store) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No object of this kind exists under this namespace and name.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// Kind of the object looked up.
        kind: ResourceKind,
        /// Namespace looked up.
        namespace: String,
        /// Name looked up.
        name: String,
    },
    /// An object of this kind already exists under this namespace and name.
    #[error("{kind} {namespace}/{name} already exists")]
    AlreadyExists {
        /// Kind of the object being created.
        kind: ResourceKind,
        /// Namespace of the object being created.
        namespace: String,
        /// Name of the object being created.
        name: String,
    },
    /// The caller's expected resource version is not the stored one (optimistic
    /// concurrency): the caller must read the object again and retry its change.
    #[error("{kind} {namespace}/{name}: resourceVersion {expected} expected, {actual} stored")]
    Conflict {
        /// Kind of the object being changed.
        kind: ResourceKind,
        /// Namespace of the object being changed.
        namespace: String,
        /// Name of the object being changed.
        name: String,
        /// The resource version the caller based its change on.
        expected: u64,
        /// The resource version currently stored.
        actual: u64,
    },
    /// The requested resource version is older than the retained change log
    /// (Kubernetes' 410 Gone): the caller must list again and watch from the list.
    #[error("resourceVersion {requested} is too old: changes up to {compacted} were compacted")]
    Gone {
        /// The resource version the caller asked to resume from.
        requested: u64,
        /// The highest compacted resource version; resuming is possible from here on.
        compacted: u64,
    },
    /// The object body handed to the store is not usable.
    #[error("invalid {kind} {namespace}/{name}: {reason}")]
    InvalidObject {
        /// Kind of the object.
        kind: ResourceKind,
        /// Namespace of the object.
        namespace: String,
        /// Name of the object.
        name: String,
        /// What is wrong with the body.
        reason: String,
    },
    /// A list continue token is malformed (it was not produced by this store).
    #[error("invalid continue token: {reason}")]
    InvalidContinueToken {
        /// Why the token was refused.
        reason: String,
    },
    /// A row read from the database does not hold what this store writes there.
    #[error("corrupt stored record {key}: {reason}")]
    CorruptRecord {
        /// Which record (table and key).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database or its driver failed.
    #[error("storage backend failed during {operation}")]
    Backend {
        /// The store operation that failed.
        operation: &'static str,
        /// Whether the same request may succeed when tried again (lock timeout,
        /// lost connection, serialization failure).
        retryable: bool,
        /// The driver's error.
        #[source]
        source: BackendCause,
    },
}

impl StoreError {
    /// Whether repeating the same request unchanged may succeed.
    ///
    /// [`StoreError::Conflict`] is not retryable as such: the caller has to read the
    /// object again and re-apply its change first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }

    pub(crate) fn backend(
        operation: &'static str,
        retryable: bool,
        source: impl Into<BackendCause>,
    ) -> Self {
        StoreError::Backend {
            operation,
            retryable,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_backend_errors_are_retryable() {
        let transient = StoreError::backend("get", true, "database is locked");
        let permanent = StoreError::backend("get", false, "disk I/O error");
        let conflict = StoreError::Conflict {
            kind: ResourceKind::EdgeDevice,
            namespace: "ns".into(),
            name: "d".into(),
            expected: 1,
            actual: 2,
        };
        assert!(transient.is_retryable());
        assert!(!permanent.is_retryable());
        assert!(!conflict.is_retryable());
        assert_eq!(
            conflict.to_string(),
            "EdgeDevice ns/d: resourceVersion 1 expected, 2 stored"
        );
    }
}
