//! `flotta.pki`: the device side of enrolment (the key never leaves the device).

use flotta_core::pki::{DeviceIdentity, DeviceKey, PkiError};
use pyo3::prelude::*;

use crate::errors;

fn pki_error(py: Python<'_>, error: &PkiError) -> PyErr {
    errors::raise(py, "PkiError", (errors::with_causes(error),), None)
}

/// A new ECDSA P-256 device key, as PKCS#8 PEM.
#[pyfunction]
pub fn generate_device_key(py: Python<'_>) -> PyResult<String> {
    let key = py
        .detach(DeviceKey::generate)
        .map_err(|e| pki_error(py, &e))?;
    Ok(key.to_pem())
}

/// A PEM certificate signing request for `device_id` (CN), signed by `key` (PEM).
#[pyfunction]
pub fn make_csr(py: Python<'_>, key: &str, device_id: &str) -> PyResult<String> {
    DeviceIdentity::new(device_id, "default").map_err(|e| pki_error(py, &e))?;
    let key = DeviceKey::from_pem(key).map_err(|e| pki_error(py, &e))?;
    let csr = key.csr(device_id).map_err(|e| pki_error(py, &e))?;
    Ok(csr.pem())
}
