//! `flotta.Selector`: Kubernetes label selectors.

use std::collections::BTreeMap;

use flotta_core::selector;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::errors;

/// A Kubernetes label selector, e.g. `tier in (edge,gateway),!deprecated`.
///
/// Raises `flotta.SelectorError` (a `ValueError`) with the byte `offset` of the
/// problem when the text is not a valid selector. `str()` gives the canonical form
/// (requirements sorted by key, values sorted); the empty selector matches every
/// set of labels.
#[pyclass(module = "flotta._flotta", frozen, eq, hash)]
#[derive(PartialEq, Eq, Hash)]
pub struct Selector {
    inner: selector::Selector,
    canonical: String,
}

#[pymethods]
impl Selector {
    #[new]
    fn new(py: Python<'_>, text: &str) -> PyResult<Self> {
        let inner: selector::Selector = text
            .parse()
            .map_err(|e: selector::SelectorError| errors::selector_error(py, &e))?;
        Ok(Self::from_inner(inner))
    }

    /// The selector that matches everything (same as `Selector("")`).
    #[classmethod]
    fn everything(_class: &Bound<'_, PyType>) -> Self {
        Self::from_inner(selector::Selector::everything())
    }

    /// Whether `labels` satisfy every requirement of the selector.
    fn matches(&self, labels: BTreeMap<String, String>) -> bool {
        self.inner.matches(&labels)
    }

    /// The label keys the selector's requirements name, sorted.
    #[getter]
    fn keys(&self) -> Vec<String> {
        self.inner
            .requirements()
            .iter()
            .map(|r| r.key().to_owned())
            .collect()
    }

    fn __str__(&self) -> String {
        self.canonical.clone()
    }

    fn __repr__(&self) -> String {
        format!("Selector({:?})", self.canonical)
    }

    fn __bool__(&self) -> bool {
        !self.inner.is_everything()
    }
}

impl Selector {
    fn from_inner(inner: selector::Selector) -> Self {
        let canonical = inner.to_string();
        Self { inner, canonical }
    }
}
