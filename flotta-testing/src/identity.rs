//! Client identities minted at test time, and reqwest clients presenting them.

use std::sync::Arc;
use std::time::Duration;

use flotta_core::pki::{
    BuiltinCa, CertificateAuthority, CertificateProfile, CsrPolicy, DeviceIdentity, DeviceKey,
    IssuedCertificate, PeerCertificate,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::NAMESPACE;
use crate::messages::{enrolment_message, registration_message};

/// A client certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The certificate (chain), PEM.
    pub certificate_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl ClientIdentity {
    /// The identity made of `certificate` and `key`.
    pub fn from_issued(certificate: &IssuedCertificate, key: &DeviceKey) -> Self {
        Self {
            certificate_pem: certificate.pem(),
            key_pem: key.to_pem(),
        }
    }

    /// The certificate's common name and organisational unit.
    pub fn subject(&self) -> (Option<String>, Option<String>) {
        let cert = PeerCertificate::parse(self.certificate_pem.as_bytes()).expect("certificate");
        (cert.common_name, cert.organizational_unit)
    }
}

/// The fleet registration identity a server keeps in `data_dir/pki`.
pub fn registration_identity_in(data_dir: &std::path::Path) -> ClientIdentity {
    use flotta_server::app::pki_files;
    let pki = |name: &str| {
        std::fs::read_to_string(data_dir.join("pki").join(name)).expect("PKI file readable")
    };
    ClientIdentity {
        certificate_pem: pki(pki_files::REGISTER_CERT),
        key_pem: pki(pki_files::REGISTER_KEY),
    }
}

/// Issues a device certificate for `id` in `namespace` through the CSR policy, valid
/// from `now` for `lifetime`.
pub fn issue_device(
    ca: &(impl CertificateAuthority + ?Sized),
    id: &str,
    namespace: &str,
    now: OffsetDateTime,
    lifetime: time::Duration,
) -> ClientIdentity {
    let key = DeviceKey::generate().expect("device key");
    let csr = key.csr(id).expect("csr");
    let device = DeviceIdentity::new(id, namespace).expect("device identity");
    let policy = CsrPolicy {
        device_lifetime: lifetime,
        ..CsrPolicy::default()
    };
    // The CAs of tests sign at once; the future never waits.
    let issued = futures::executor::block_on(policy.issue(ca, csr.pem().as_bytes(), &device, now))
        .expect("issue");
    ClientIdentity::from_issued(&issued, &key)
}

/// A device certificate for `id` that expired a day ago, signed by `ca`.
pub fn issue_expired_device(
    ca: &(impl CertificateAuthority + ?Sized),
    id: &str,
    namespace: &str,
) -> ClientIdentity {
    let key = DeviceKey::generate().expect("device key");
    let device = DeviceIdentity::new(id, namespace).expect("device identity");
    let now = OffsetDateTime::now_utc();
    let profile = CertificateProfile::device(
        &device,
        now - time::Duration::days(3),
        now - time::Duration::days(1),
    )
    .expect("profile");
    let issued =
        futures::executor::block_on(ca.issue(&key.public_key_der(), &profile)).expect("issue");
    ClientIdentity::from_issued(&issued, &key)
}

/// A device certificate from a CA no test server trusts.
pub fn foreign_identity(id: &str) -> ClientIdentity {
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("foreign CA", now).expect("CA");
    issue_device(&ca, id, NAMESPACE, now, time::Duration::days(1))
}

/// A reqwest client whose only trust anchors are the certificates in `ca_pem`, and
/// which presents `identity` when given.
pub fn tls_client(ca_pem: &str, identity: Option<&ClientIdentity>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(certificate.expect("CA PEM"))
            .expect("CA certificate accepted");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots);
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(identity.certificate_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate");
            let key =
                PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Enrols `id` in [`NAMESPACE`] and registers it over the Edge API at `edge_server`
/// (its base URL, trusted through `ca_pem`) with the fleet `registration` identity;
/// the server must approve at once. Returns the device identity it was issued.
pub async fn enrol_and_register(
    edge_server: &str,
    ca_pem: &str,
    registration: &ClientIdentity,
    id: &str,
) -> ClientIdentity {
    let client = tls_client(ca_pem, Some(registration));
    let url = format!(
        "{edge_server}{}/data/{id}/out",
        flotta_server::edge::BASE_PATH
    );
    let enrolled = client
        .post(&url)
        .json(&enrolment_message(NAMESPACE))
        .send()
        .await
        .expect("enrolment");
    assert!(
        enrolled.status() == reqwest::StatusCode::OK
            || enrolled.status() == reqwest::StatusCode::ALREADY_REPORTED,
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
    let status = registered.status();
    let body: serde_json::Value = registered.json().await.expect("registration response");
    assert_eq!(status, reqwest::StatusCode::OK, "registration: {body}");
    ClientIdentity {
        certificate_pem: body["content"]["certificate"]
            .as_str()
            .expect("certificate in the response")
            .to_owned(),
        key_pem: key.to_pem(),
    }
}
