//! A rustls client-certificate verifier for the Edge API listener (feature `rustls`).
//!
//! rustls' `WebPkiClientVerifier` refuses expired client certificates during the
//! handshake, which would lock out a device whose certificate expired while it was
//! offline. [`ChainOnlyClientVerifier`] checks only that the client certificate is
//! signed by a fleet CA (directly or through the intermediates the client sends) and
//! that the client holds its key; validity time, revocation
//! and what the certificate may do are decided per request by
//! [`PeerVerifier::identify`](super::PeerVerifier::identify), where the directive is
//! known. Every request handler must call it: a completed handshake alone proves
//! nothing about expiry.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::identity::{IdentityError, PeerVerifier};

/// Accepts client certificates signed by a trusted fleet CA, at any time.
#[derive(Debug)]
pub struct ChainOnlyClientVerifier {
    verifier: PeerVerifier,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ChainOnlyClientVerifier {
    /// A verifier trusting `verifier`'s issuers, with handshake signatures checked by
    /// `provider`'s algorithms.
    pub fn new(verifier: PeerVerifier, provider: &CryptoProvider) -> Arc<Self> {
        let hints = verifier
            .issuer_subjects()
            .map(|subject| DistinguishedName::from(subject.to_vec()))
            .collect();
        Arc::new(Self {
            verifier,
            hints,
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ClientCertVerifier for ChainOnlyClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .verifier
            .is_signed_by_trusted_issuer(end_entity.as_ref(), intermediates)
        {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            Err(IdentityError::UnknownIssuer) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
            Err(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
