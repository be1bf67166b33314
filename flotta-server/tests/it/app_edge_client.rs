//! Device-side clients of the Edge listener of a whole server (in-process or the
//! binary), which keeps its PKI in `DATA_DIR/pki`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotta_core::pki::DeviceKey;
use flotta_server::edge::BASE_PATH;
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::api_harness::expect_json;
use crate::edge_support::{ClientIdentity, NAMESPACE, enrolment_message, registration_message};

/// An Edge API client trusting `ca_pem` and presenting `identity`.
pub fn device_client(ca_pem: &str, identity: &ClientIdentity) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.expect("CA PEM")).expect("CA root");
    }
    let chain = CertificateDer::pem_slice_iter(identity.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("client certificate");
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).expect("client key");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The URL of an Edge API path on the server whose Edge base URL is `edge_server`.
pub fn edge_url(edge_server: &str, path: &str) -> String {
    format!("{edge_server}{BASE_PATH}{path}")
}

/// Enrols `id` in [`NAMESPACE`] and registers it through the Edge listener at
/// `edge_server` (auto-approving), with the fleet registration certificate in
/// `data_dir/pki`; returns the issued device identity.
pub async fn enrol_and_register(
    edge_server: &str,
    ca_pem: &str,
    data_dir: &Path,
    id: &str,
) -> ClientIdentity {
    let registration = ClientIdentity {
        certificate_pem: std::fs::read_to_string(data_dir.join("pki/register.crt"))
            .expect("register.crt"),
        key_pem: std::fs::read_to_string(data_dir.join("pki/register.key")).expect("register.key"),
    };
    let client = device_client(ca_pem, &registration);
    let url = edge_url(edge_server, &format!("/data/{id}/out"));
    let enrolled = client
        .post(&url)
        .json(&enrolment_message(NAMESPACE))
        .send()
        .await
        .expect("enrolment");
    assert!(
        enrolled.status() == StatusCode::OK || enrolled.status() == StatusCode::ALREADY_REPORTED,
        "enrolment: {}",
        enrolled.status()
    );
    let key = DeviceKey::generate().expect("device key");
    let csr = key.csr(id).expect("csr").pem();
    let registered = client
        .post(&url)
        .json(&registration_message(Some(&csr)))
        .send()
        .await
        .expect("registration");
    let body = expect_json(registered, StatusCode::OK).await;
    ClientIdentity {
        certificate_pem: body["content"]["certificate"]
            .as_str()
            .expect("certificate in the response")
            .to_owned(),
        key_pem: key.to_pem(),
    }
}
