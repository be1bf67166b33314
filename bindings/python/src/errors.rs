//! Rust errors to the exception classes of `flotta.errors` (pure Python, so they
//! carry documented attributes and can be subclassed and pickled like any other).

use flotta_client::{ClientError, ErrorKind};
use flotta_core::selector::SelectorError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Instantiates `flotta.errors.<class>(*args, **kwargs)` as a `PyErr`.
pub fn raise<'py>(
    py: Python<'py>,
    class: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyErr {
    let made = py
        .import("flotta.errors")
        .and_then(|module| module.getattr(class))
        .and_then(|class| class.call(args, kwargs));
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(error) => error,
    }
}

/// A `flotta.errors` exception for a client error, its class chosen by
/// [`ClientError::kind`].
pub fn client_error(py: Python<'_>, error: ClientError) -> PyErr {
    let message = with_causes(&error);
    let class = match error.kind() {
        ErrorKind::AlreadyExists => "AlreadyExists",
        ErrorKind::BadRequest => "BadRequest",
        ErrorKind::Unauthorized => "Unauthorized",
        ErrorKind::Forbidden => "Forbidden",
        ErrorKind::NotFound => "NotFound",
        ErrorKind::Conflict => "Conflict",
        ErrorKind::Gone => "Gone",
        ErrorKind::Invalid => "Invalid",
        ErrorKind::Server => "ServerError",
        ErrorKind::OtherStatus => "ApiError",
        ErrorKind::Timeout => "RequestTimeout",
        ErrorKind::Unreachable => "TransportError",
        ErrorKind::Config => "ConfigError",
        ErrorKind::Manifest => "ManifestError",
        ErrorKind::Rollout => "RolloutError",
        _ => "FlottaError",
    };
    match error {
        ClientError::Api {
            method,
            path,
            status,
            reason,
            message: server_message,
        } => {
            let kwargs = PyDict::new(py);
            let set = || -> PyResult<()> {
                kwargs.set_item("status", status)?;
                kwargs.set_item("reason", reason)?;
                kwargs.set_item("method", method)?;
                kwargs.set_item("path", path)?;
                kwargs.set_item("server_message", server_message)?;
                Ok(())
            };
            if let Err(e) = set() {
                return e;
            }
            raise(py, class, (message,), Some(&kwargs))
        }
        ClientError::Manifest {
            index,
            message: what,
        } => manifest_error(py, &message, index, vec![(String::new(), what)]),
        _ => raise(py, class, (message,), None),
    }
}

/// The error's message followed by its causes, `: `-separated, so a connection
/// failure says why (refused, certificate unknown, ...).
pub use flotta_core::error_chain::error_chain as with_causes;

/// `flotta.errors.SelectorError` with the byte offset of the problem.
pub fn selector_error(py: Python<'_>, error: &SelectorError) -> PyErr {
    let kwargs = PyDict::new(py);
    if let Err(e) = kwargs
        .set_item("offset", error.offset)
        .and_then(|()| kwargs.set_item("field", error.field.clone()))
    {
        return e;
    }
    raise(py, "SelectorError", (error.to_string(),), Some(&kwargs))
}

/// `(path, message)` tuples as a Python list.
fn error_list<'py>(py: Python<'py>, errors: Vec<(String, String)>) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, errors)
}

/// `flotta.errors.ManifestError` for a document that could not be read.
pub fn manifest_error(
    py: Python<'_>,
    message: &str,
    document: usize,
    errors: Vec<(String, String)>,
) -> PyErr {
    let kwargs = PyDict::new(py);
    if let Err(e) = kwargs.set_item("document", document) {
        return e;
    }
    match error_list(py, errors) {
        Ok(list) => raise(py, "ManifestError", (message, list), Some(&kwargs)),
        Err(e) => e,
    }
}

/// A Rust-side failure that is not the caller's fault.
pub fn internal(message: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(message.into())
}
