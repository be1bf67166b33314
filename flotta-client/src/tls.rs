//! rustls client configurations: trust anchors from a CA PEM, optional client
//! identity, aws-lc-rs as the crypto provider.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{ClientError, ClientResult};

/// A device's TLS client identity: its certificate chain and private key.
#[derive(Clone)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity from a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem(certificate_chain_pem: &str, private_key_pem: &str) -> ClientResult<Self> {
        let chain = parse_certificates(certificate_chain_pem, "client certificate chain PEM")?;
        let key = PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes()).map_err(|e| {
            ClientError::Tls {
                what: "client private key PEM".into(),
                source: Some(Box::new(e)),
            }
        })?;
        Ok(Self {
            chain,
            key: Arc::new(key),
        })
    }

    /// The DER of the leaf certificate.
    pub fn leaf_der(&self) -> Option<&[u8]> {
        self.chain.first().map(|c| c.as_ref())
    }
}

fn parse_certificates(pem: &str, what: &str) -> ClientResult<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Tls {
            what: what.into(),
            source: Some(Box::new(e)),
        })?;
    if certificates.is_empty() {
        return Err(ClientError::tls(format!("{what}: no CERTIFICATE block")));
    }
    Ok(certificates)
}

/// A rustls client configuration (aws-lc-rs, safe default protocol versions)
/// trusting the CAs in `ca_pem`, presenting `identity` when given: for HTTP
/// clients of the device beyond the flotta APIs, such as the metrics receiver.
pub fn client_config(
    ca_pem: &str,
    identity: Option<&Identity>,
) -> ClientResult<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in parse_certificates(ca_pem, "CA certificate PEM")? {
        roots.add(certificate).map_err(|e| ClientError::Tls {
            what: "CA certificate".into(),
            source: Some(Box::new(e)),
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls {
            what: "protocol versions".into(),
            source: Some(Box::new(e)),
        })?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| ClientError::Tls {
                what: "client certificate and key".into(),
                source: Some(Box::new(e)),
            }),
    }
}
