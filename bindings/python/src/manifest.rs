//! Manifests and validation: the functions behind `flotta.load_manifests`,
//! `flotta.Resource.from_dict` and `.validate()` (the resource classes themselves
//! are pure Python over dicts).

use flotta_core::manifest::{self, AnyResource, ManifestError};
use flotta_core::validation::Validate;
use pyo3::prelude::*;
use pyo3::types::PyList;
use serde_json::Value;

use crate::errors;
use crate::value::{from_py, to_py};

fn manifest_error(py: Python<'_>, error: &ManifestError) -> PyErr {
    let message = error.to_string();
    let document = error.document_index().unwrap_or(0);
    let prefix = format!("document {document}: ");
    let detail = message.strip_prefix(&prefix).unwrap_or(&message);
    let path = error.field_path().unwrap_or_default().to_owned();
    let detail = detail
        .strip_prefix(&format!("{path}: "))
        .unwrap_or(detail)
        .to_owned();
    errors::manifest_error(py, &message, document, vec![(path, detail)])
}

fn resource_to_py<'py>(py: Python<'py>, resource: &AnyResource) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(resource)
        .map_err(|e| errors::internal(format!("cannot encode {}: {e}", resource.kind())))?;
    to_py(py, &value)
}

fn parse_one(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<AnyResource> {
    AnyResource::from_value(0, from_py(data)?).map_err(|e| manifest_error(py, &e))
}

/// Reads every resource of a YAML (multi-document) or JSON manifest, as dicts in
/// the model's normalised form.
#[pyfunction]
pub fn parse_manifests<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
    let resources = manifest::parse_manifests(text).map_err(|e| manifest_error(py, &e))?;
    let items = resources
        .iter()
        .map(|r| resource_to_py(py, r))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// Checks a resource dict's shape (kind, field types) and returns it normalised.
#[pyfunction]
pub fn parse_resource<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let resource = parse_one(py, data)?;
    resource_to_py(py, &resource)
}

/// Every validation problem of a resource dict, as `(path, message)` pairs.
#[pyfunction]
pub fn validation_errors(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
) -> PyResult<Vec<(String, String)>> {
    let resource = parse_one(py, data)?;
    Ok(resource
        .validate()
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect())
}

/// Writes resource dicts as a multi-document YAML manifest.
#[pyfunction]
pub fn dump_yaml(py: Python<'_>, items: Vec<Bound<'_, PyAny>>) -> PyResult<String> {
    let resources = items
        .iter()
        .map(|item| parse_one(py, item))
        .collect::<PyResult<Vec<_>>>()?;
    manifest::to_yaml(&resources).map_err(|e| errors::internal(format!("cannot write YAML: {e}")))
}

/// A dict converted to JSON text (used for `Resource.to_json()`).
#[pyfunction]
#[pyo3(signature = (data, indent=None))]
pub fn dump_json(data: &Bound<'_, PyAny>, indent: Option<usize>) -> PyResult<String> {
    let value: Value = from_py(data)?;
    let text = match indent {
        Some(_) => serde_json::to_string_pretty(&value),
        None => serde_json::to_string(&value),
    };
    text.map_err(|e| errors::internal(format!("cannot write JSON: {e}")))
}

/// Core's kind table, one dict per kind: `kind`, `plural`, `crd_plural`,
/// `singular`, `short_names`, `aliases`, `namespaced`, `api_version`. The Python
/// resource classes read their names from it.
#[pyfunction]
pub fn kinds(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let rows = flotta_core::kind::KINDS.iter().map(|info| {
        serde_json::json!({
            "kind": info.name,
            "plural": info.plural,
            "crd_plural": info.crd_plural,
            "singular": info.singular,
            "short_names": info.short_names,
            "aliases": info.aliases,
            "namespaced": info.namespaced,
            "api_version": info.api_version(),
        })
    });
    let items = rows
        .map(|row| to_py(py, &row))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}
