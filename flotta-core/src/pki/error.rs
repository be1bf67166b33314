//! The error of key generation and certificate issuance, shared by the authority,
//! device keys and serial numbers.

use time::OffsetDateTime;

/// What failed while creating keys or issuing certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The key pair generator failed.
    #[error("generating a key pair failed")]
    KeyGeneration(#[source] rcgen::Error),
    /// The operating system's random generator failed while drawing a serial number.
    #[error("drawing a random certificate serial number failed")]
    Random,
    /// A PEM input (`what` names it) could not be decoded.
    #[error("decoding the {what} PEM failed")]
    Pem {
        /// Which input: `CA certificate`, `CA key`, `device key`.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: rcgen::Error,
    },
    /// The CA certificate given to [`BuiltinCa::from_pem`](super::BuiltinCa::from_pem) is not usable as a CA.
    #[error("the CA certificate is not usable: {reason}")]
    NotACaCertificate {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The private key does not belong to the certificate it was given with.
    #[error("the {what} private key does not match the certificate's public key")]
    KeyMismatch {
        /// Which key: `CA`.
        what: &'static str,
    },
    /// A key to re-encode is not an ECDSA P-256 key in PKCS#8.
    #[error("the key is not an ECDSA P-256 PKCS#8 key")]
    NotAnEcKey,
    /// A device key given to [`DeviceKey::from_pem`](super::DeviceKey::from_pem) is not ECDSA P-256.
    #[error("the device key is not an ECDSA P-256 key")]
    UnsupportedDeviceKey,
    /// A device id is not a valid DNS subdomain, or is reserved.
    #[error("invalid device id {id:?}: {reason}")]
    InvalidDeviceId {
        /// The rejected id.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A namespace is not a valid DNS label.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The rejected namespace.
        namespace: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A server host name cannot go into a subjectAltName.
    #[error("invalid server host name {name:?} at position {index}")]
    InvalidHostName {
        /// The rejected name.
        name: String,
        /// Its position in the configured list.
        index: usize,
    },
    /// The server certificate would have no subjectAltName.
    #[error("a server certificate needs at least one host name or IP address")]
    NoServerNames,
    /// The validity window is empty or reversed.
    #[error(
        "validity window is empty: not_before {not_before} is not before not_after {not_after}"
    )]
    EmptyValidity {
        /// Requested start.
        not_before: OffsetDateTime,
        /// Requested end.
        not_after: OffsetDateTime,
    },
    /// The public key to certify is not one the signer can encode.
    #[error("the public key to certify is not supported by the signer")]
    UnsupportedPublicKey(#[source] rcgen::Error),
    /// The signer failed to produce the certificate for `subject`.
    #[error("signing the certificate for {subject:?} failed")]
    Signing {
        /// The certificate's common name.
        subject: String,
        /// The signer's error.
        #[source]
        source: rcgen::Error,
    },
    /// An external signer failed; its own error is the source.
    #[error("the external certificate signer failed")]
    External(#[source] Box<dyn std::error::Error + Send + Sync>),
}
