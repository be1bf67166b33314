//! Certificates of a flotta fleet: the certificate authority, device keys and CSRs,
//! the server's CSR policy, peer identity from a client certificate, and renewal.
//!
//! Everything here works over bytes and a caller-supplied time: nothing reads the
//! clock or touches a socket or a file. Keys and serial numbers are drawn from the
//! operating system's random generator through aws-lc-rs.
//!
//! The pieces, in the order a device meets them:
//!
//! 1. The server runs a [`CertificateAuthority`], usually the [`BuiltinCa`] (a root, or
//!    an intermediate under the operator's own root), and issues
//!    the fleet-wide registration certificate ([`issue_registration_certificate`]) and
//!    its own TLS certificate ([`issue_server_certificate`]).
//! 2. A device makes its own [`DeviceKey`] and sends a [`Csr`] for its id.
//! 3. The server checks the CSR with a [`CsrPolicy`], which keeps only the public key,
//!    and issues a device certificate with server-chosen fields.
//! 4. On every request, [`PeerIdentity::from_chain`] tells who the peer is from its
//!    certificate alone.
//! 5. The device asks [`RenewalPolicy::decide`] when to renew.
//!
//! ```
//! use flotta_core::pki::{BuiltinCa, CsrPolicy, DeviceIdentity, DeviceKey, PeerIdentity,
//!     PeerVerifier, Purpose, RevocationList};
//! use time::OffsetDateTime;
//!
//! let now = OffsetDateTime::now_utc();
//! let ca = BuiltinCa::generate("flotta fleet CA", now)?;
//! let key = DeviceKey::generate()?;
//! let csr = key.csr("edge-01")?;
//! let device = DeviceIdentity::new("edge-01", "fleet-a")?;
//! // Signing is async (an external signer may wait on an HSM or a remote CA).
//! let issued = futures::executor::block_on(
//!     CsrPolicy::default().issue(&ca, csr.pem().as_bytes(), &device, now),
//! )?;
//!
//! let verifier = PeerVerifier::from_authority(&ca)?;
//! let peer = PeerIdentity::from_chain(&[issued.der()], &verifier, &RevocationList::new(),
//!     now, Purpose::Request)?;
//! assert_eq!(peer, PeerIdentity::Device { id: "edge-01".into(), namespace: "fleet-a".into() });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The modules form a DAG. Leaves: defaults, error, pem, validity. Above them: device
// and serial; csr (reads requests, never signs); ca (signs, takes a verified CSR);
// issuance (joins the CSR policy and the authority); device_key; identity (reads peer
// certificates, trusts an authority); renewal and tls (read identity).
mod ca;
mod csr;
mod defaults;
mod device;
mod device_key;
mod error;
mod identity;
mod issuance;
mod pem;
mod renewal;
mod serial;
#[cfg(feature = "rustls")]
pub mod tls;
mod validity;

pub use ca::{
    BuiltinCa, CertificateAuthority, CertificateProfile, CertificateUsage, IssuedCertificate,
    IssuedKeyPair, issue_registration_certificate, issue_server_certificate,
};
pub use csr::{CsrError, CsrPolicy, KeyKind, VerifiedCsr, verify_csr};
pub use defaults::{
    CA_LIFETIME, DEFAULT_DEVICE_LIFETIME, MAX_CERTIFICATE_BYTES, MAX_CHAIN_INTERMEDIATES,
    MAX_CSR_BYTES, NOT_BEFORE_SKEW, REGISTRATION_COMMON_NAME,
};
pub use device::DeviceIdentity;
pub use device_key::{Csr, DeviceKey};
pub use error::PkiError;
pub use identity::{
    CertificateError, DEFAULT_CLOCK_SKEW, IdentityError, PeerCertificate, PeerIdentity,
    PeerVerifier, Purpose, RevocationList, VerifiedPeer,
};
pub use issuance::IssueError;
pub use renewal::{RenewalAction, RenewalPolicy};
pub use serial::Serial;

/// Encodes a certificate (DER) as one PEM `CERTIFICATE` block.
pub fn pem_certificate(der: &[u8]) -> String {
    pem::pem_encode("CERTIFICATE", der)
}

pub(crate) use device::dns_subdomain_problem;
