#![doc = include_str!("../README.md")]
//!
//! This crate is the `flotta._flotta` native module; the `flotta` package around it
//! (`python/flotta/`) gives it its Python shape. Every function here is a thin
//! wrapper: convert the arguments, call flotta-core / flotta-client /
//! flotta-agent-lib, convert the result or the error. No Rust panic crosses into
//! Python: errors become `flotta.errors` exceptions.

mod agent;
mod client;
mod errors;
mod manifest;
mod pki;
mod runtime;
mod selector;
mod value;

use pyo3::prelude::*;

/// The native half of the `flotta` package.
#[pymodule]
fn _flotta(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<selector::Selector>()?;
    module.add_class::<client::NativeClient>()?;
    module.add_class::<client::NativeWatch>()?;
    module.add_class::<agent::NativeAgent>()?;
    module.add_function(wrap_pyfunction!(manifest::parse_manifests, module)?)?;
    module.add_function(wrap_pyfunction!(manifest::parse_resource, module)?)?;
    module.add_function(wrap_pyfunction!(manifest::validation_errors, module)?)?;
    module.add_function(wrap_pyfunction!(manifest::dump_yaml, module)?)?;
    module.add_function(wrap_pyfunction!(manifest::dump_json, module)?)?;
    module.add_function(wrap_pyfunction!(manifest::kinds, module)?)?;
    module.add_function(wrap_pyfunction!(pki::generate_device_key, module)?)?;
    module.add_function(wrap_pyfunction!(pki::make_csr, module)?)?;
    Ok(())
}
