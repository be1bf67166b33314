//! Certificates of a flotta fleet: the certificate authority, device keys and CSRs,
//! the server's CSR policy, peer identity from a client certificate, and renewal.
//!
//! Everything here works over bytes and a caller-supplied time: nothing reads the
//! clock or touches a socket or a file. Keys and serial numbers are drawn from the
//! operating system's random generator through aws-lc-rs.
//!
//! The pieces, in the order a device meets them:
//!
//! 1. The server runs a [`CertificateAuthority`], usually the [`BuiltinCa`], and issues
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
//! let issued = CsrPolicy::default().issue(&ca, csr.pem().as_bytes(), &device, now)?;
//!
//! let verifier = PeerVerifier::from_authority(&ca)?;
//! let peer = PeerIdentity::from_chain(&[issued.der()], &verifier, &RevocationList::new(),
//!     now, Purpose::Request)?;
//! assert_eq!(peer, PeerIdentity::Device { id: "edge-01".into(), namespace: "fleet-a".into() });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ca;
mod csr;
mod device_key;
mod identity;
mod renewal;
#[cfg(feature = "rustls")]
pub mod tls;

pub use ca::{
    BuiltinCa, CertificateAuthority, CertificateProfile, CertificateUsage, DeviceIdentity,
    IssuedCertificate, IssuedKeyPair, PkiError, issue_registration_certificate,
    issue_server_certificate,
};
pub use csr::{CsrError, CsrPolicy, IssueError, KeyKind, VerifiedCsr, verify_csr};
pub use device_key::{Csr, DeviceKey};
pub use identity::{
    CertificateError, DEFAULT_CLOCK_SKEW, IdentityError, PeerCertificate, PeerIdentity,
    PeerVerifier, Purpose, RevocationList, Serial, VerifiedPeer,
};
pub use renewal::{RenewalAction, RenewalPolicy};

pub(crate) use ca::dns_subdomain_problem;

/// Common name of the fleet-wide registration certificate.
pub const REGISTRATION_COMMON_NAME: &str = "register";

/// Largest CSR the server reads, in bytes, PEM or DER.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// Largest certificate the identity and renewal functions read, in bytes.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// How far back a device certificate's NotBefore is set, to absorb device clock skew.
pub const NOT_BEFORE_SKEW: time::Duration = time::Duration::hours(1);

/// Default lifetime of a device certificate.
pub const DEFAULT_DEVICE_LIFETIME: time::Duration = time::Duration::days(90);

/// Lifetime of the built-in CA certificate.
pub const CA_LIFETIME: time::Duration = time::Duration::days(3650);

/// Decodes PEM (one block with one of the given labels) or passes DER through.
///
/// Returns `None` when the input looks like PEM but is not one well-formed block with
/// an accepted label, optionally followed by whitespace.
fn pem_or_der<'a>(input: &'a [u8], labels: &[&str]) -> Option<std::borrow::Cow<'a, [u8]>> {
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let (rest, pem) = x509_parser::pem::parse_x509_pem(trimmed).ok()?;
        if !labels.contains(&pem.label.as_str()) || !rest.trim_ascii().is_empty() {
            return None;
        }
        Some(std::borrow::Cow::Owned(pem.contents))
    } else {
        Some(std::borrow::Cow::Borrowed(input))
    }
}

/// Converts a certificate time into an `OffsetDateTime`.
fn asn1_time(t: x509_parser::time::ASN1Time) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}
