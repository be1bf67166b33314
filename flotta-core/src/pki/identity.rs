//! Who the peer is, read from its client certificate alone.
//!
//! At the TLS handshake the server checks only that the client certificate chains to
//! the fleet CA (see the `tls` module, feature `rustls`); time, revocation
//! and what the certificate may be used for are decided here, per request, because an
//! expired device certificate is still good for one thing: re-registering.

use std::collections::HashSet;
use std::fmt;

use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::prelude::FromDer;

use super::ca::{CertificateAuthority, DeviceIdentity, PkiError};
use super::{MAX_CERTIFICATE_BYTES, REGISTRATION_COMMON_NAME};

/// A certificate serial number, as a positive big-endian integer without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A serial from big-endian bytes; leading zero bytes are dropped so that the same
    /// number always compares equal.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        Self(bytes.get(start..).unwrap_or_default().to_vec())
    }

    /// A fresh random 128-bit serial from the system's random generator.
    pub fn random() -> Result<Self, PkiError> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Random)?;
        // Fix the top bit so every serial is exactly 128 bits long (127 random bits);
        // DER then adds a zero byte to keep it positive.
        bytes[0] |= 0x80;
        Ok(Self(bytes.to_vec()))
    }

    /// The big-endian magnitude.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("00");
        }
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Serials the server refuses: those of deleted devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    serials: HashSet<Serial>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses `serial` from now on.
    pub fn revoke(&mut self, serial: Serial) {
        self.serials.insert(serial);
    }

    /// Whether `serial` is refused.
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.serials.contains(serial)
    }

    /// Number of revoked serials.
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    /// Whether no serial is revoked.
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }
}

impl FromIterator<Serial> for RevocationList {
    fn from_iter<I: IntoIterator<Item = Serial>>(iter: I) -> Self {
        Self {
            serials: iter.into_iter().collect(),
        }
    }
}

/// Why certificate bytes could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The input is larger than any certificate we issue.
    #[error("certificate is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Allowed maximum.
        max: usize,
    },
    /// The input starts like PEM but is not one complete `CERTIFICATE` block.
    #[error("certificate PEM is not one complete CERTIFICATE block")]
    MalformedPem,
    /// The DER is not an X.509 certificate.
    #[error("certificate DER is not a well-formed X.509 certificate")]
    MalformedDer(#[source] X509Error),
    /// Bytes follow the certificate.
    #[error("{count} unexpected bytes follow the certificate at byte offset {offset}")]
    TrailingBytes {
        /// Where the certificate ends.
        offset: usize,
        /// How many bytes follow.
        count: usize,
    },
    /// A validity time is outside the representable range.
    #[error("certificate validity time is out of range")]
    TimeOutOfRange,
}

/// Why a peer certificate does not identify anyone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The peer presented no certificate.
    #[error("the peer presented no client certificate")]
    NoCertificate,
    /// The certificate cannot be read, or its subject is not one we issue.
    #[error("the peer certificate is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
        /// The parser's error, when parsing failed.
        #[source]
        source: Option<CertificateError>,
    },
    /// The certificate is not signed by a trusted CA.
    #[error("the peer certificate is not signed by the fleet CA")]
    UnknownIssuer,
    /// The certificate's serial is revoked.
    #[error("the peer certificate serial {serial} is revoked")]
    Revoked {
        /// The revoked serial.
        serial: Serial,
    },
    /// The certificate expired.
    #[error("the peer certificate expired at {not_after} (now {now})")]
    Expired {
        /// End of validity.
        not_after: OffsetDateTime,
        /// The time of the check.
        now: OffsetDateTime,
    },
    /// The certificate is not valid yet.
    #[error("the peer certificate is valid only from {not_before} (now {now})")]
    NotYetValid {
        /// Start of validity.
        not_before: OffsetDateTime,
        /// The time of the check.
        now: OffsetDateTime,
    },
}

impl IdentityError {
    fn malformed(reason: &'static str) -> Self {
        Self::Malformed {
            reason,
            source: None,
        }
    }
}

/// Who a peer is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// The fleet-wide registration certificate: may only enrol and register.
    Register,
    /// A device certificate.
    Device {
        /// Device id (certificate CN).
        id: String,
        /// Namespace (certificate OU).
        namespace: String,
    },
}

/// What the certificate is being used for, which decides whether expiry is fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    /// Any request other than registration: the certificate must be in its validity.
    Request,
    /// The `registration` directive: an expired but CA-signed, unrevoked device
    /// certificate is accepted, so a device that was offline past its expiry can get a
    /// new certificate.
    Registration,
}

/// The facts of a certificate that the identity and renewal rules use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Subject common name, if exactly one UTF-8 CN is present.
    pub common_name: Option<String>,
    /// Subject organizational unit, if exactly one UTF-8 OU is present.
    pub organizational_unit: Option<String>,
    /// Serial number.
    pub serial: Serial,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether the extended key usage allows TLS client authentication.
    pub client_auth: bool,
}

impl PeerCertificate {
    /// Reads a certificate, PEM or DER.
    pub fn parse(input: &[u8]) -> Result<Self, CertificateError> {
        let der = certificate_der(input)?;
        let (_, cert) = parse_certificate(&der)?;
        Self::from_x509(&cert)
    }

    fn from_x509(cert: &X509Certificate<'_>) -> Result<Self, CertificateError> {
        let validity = cert.validity();
        let not_before =
            super::asn1_time(validity.not_before).ok_or(CertificateError::TimeOutOfRange)?;
        let not_after =
            super::asn1_time(validity.not_after).ok_or(CertificateError::TimeOutOfRange)?;
        let subject = cert.subject();
        let client_auth = matches!(
            cert.extended_key_usage(),
            Ok(Some(eku)) if eku.value.client_auth
        );
        Ok(Self {
            common_name: single_string(subject.iter_common_name()),
            organizational_unit: single_string(subject.iter_organizational_unit()),
            serial: Serial::from_bytes(cert.raw_serial()),
            not_before,
            not_after,
            client_auth,
        })
    }
}

fn single_string<'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.as_str().ok().map(str::to_owned)
}

fn certificate_der(input: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CertificateError> {
    if input.len() > MAX_CERTIFICATE_BYTES {
        return Err(CertificateError::TooLarge {
            len: input.len(),
            max: MAX_CERTIFICATE_BYTES,
        });
    }
    super::pem_or_der(input, &["CERTIFICATE"]).ok_or(CertificateError::MalformedPem)
}

fn parse_certificate(der: &[u8]) -> Result<(usize, X509Certificate<'_>), CertificateError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| {
        CertificateError::MalformedDer(match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
        })
    })?;
    if !rest.is_empty() {
        return Err(CertificateError::TrailingBytes {
            offset: der.len() - rest.len(),
            count: rest.len(),
        });
    }
    Ok((der.len(), cert))
}

/// A certificate the verifier trusts as the direct issuer of peer certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrustedIssuer {
    subject: Vec<u8>,
    subject_public_key_info: Vec<u8>,
}

/// Default tolerance between the server's clock and a certificate's validity bounds.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Checks peer certificates against the fleet CA, the revocation list and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerVerifier {
    issuers: Vec<TrustedIssuer>,
    clock_skew: Duration,
}

impl PeerVerifier {
    /// Trusts the given CA certificates (DER) as direct issuers of peer certificates.
    pub fn new<C: AsRef<[u8]>>(ca_certificates: &[C]) -> Result<Self, CertificateError> {
        let mut issuers = Vec::with_capacity(ca_certificates.len());
        for der in ca_certificates {
            let (_, cert) = parse_certificate(der.as_ref())?;
            issuers.push(TrustedIssuer {
                subject: cert.subject().as_raw().to_vec(),
                subject_public_key_info: cert.public_key().raw.to_vec(),
            });
        }
        Ok(Self {
            issuers,
            clock_skew: DEFAULT_CLOCK_SKEW,
        })
    }

    /// Trusts the certificate that signs device certificates for `ca` (the first of
    /// its chain).
    pub fn from_authority(
        ca: &(impl CertificateAuthority + ?Sized),
    ) -> Result<Self, CertificateError> {
        let chain = ca.chain_der();
        Self::new(chain.get(..1).unwrap_or_default())
    }

    /// Sets how far outside its validity window a certificate is still accepted
    /// (default five minutes), for replicas whose clocks differ slightly.
    pub fn with_clock_skew(mut self, clock_skew: Duration) -> Self {
        self.clock_skew = clock_skew;
        self
    }

    /// The configured clock skew allowance.
    pub fn clock_skew(&self) -> Duration {
        self.clock_skew
    }

    /// DER subjects of the trusted issuers, for TLS certificate-request hints.
    pub fn issuer_subjects(&self) -> impl Iterator<Item = &[u8]> {
        self.issuers.iter().map(|i| i.subject.as_slice())
    }

    /// Whether `end_entity` (DER) is signed by a trusted issuer, ignoring time and
    /// revocation: the TLS handshake check.
    pub fn is_signed_by_trusted_issuer(&self, end_entity: &[u8]) -> Result<(), IdentityError> {
        let der = certificate_der(end_entity).map_err(|e| IdentityError::Malformed {
            reason: "unreadable certificate",
            source: Some(e),
        })?;
        let (_, cert) = parse_certificate(&der).map_err(|e| IdentityError::Malformed {
            reason: "unreadable certificate",
            source: Some(e),
        })?;
        self.check_issuer(&cert)
    }

    fn check_issuer(&self, cert: &X509Certificate<'_>) -> Result<(), IdentityError> {
        let issuer = cert.issuer().as_raw();
        for trusted in self.issuers.iter().filter(|t| t.subject == issuer) {
            let Ok((_, spki)) =
                x509_parser::x509::SubjectPublicKeyInfo::from_der(&trusted.subject_public_key_info)
            else {
                continue;
            };
            if cert.verify_signature(Some(&spki)).is_ok() {
                return Ok(());
            }
        }
        Err(IdentityError::UnknownIssuer)
    }

    /// Decides who the peer is from its certificate chain (DER, end entity first) at
    /// time `now`, for `purpose`. Checks, in order: readable, signed by a trusted
    /// issuer, a subject we issue with clientAuth, not revoked, and in validity (an
    /// expired device certificate passes for [`Purpose::Registration`]).
    ///
    /// This is [`verify_peer`](Self::verify_peer) then [`VerifiedPeer::check`].
    pub fn identify<C: AsRef<[u8]>>(
        &self,
        chain: &[C],
        revoked: &RevocationList,
        now: OffsetDateTime,
        purpose: Purpose,
    ) -> Result<PeerIdentity, IdentityError> {
        self.verify_peer(chain)?.check(revoked, now, purpose)
    }

    /// The time-independent half of [`identify`](Self::identify): parses the end-entity
    /// certificate, checks the CA signature and reads the identity. A server can keep
    /// the result for the life of a TLS connection and call [`VerifiedPeer::check`] on
    /// each request, which costs no signature verification.
    pub fn verify_peer<C: AsRef<[u8]>>(&self, chain: &[C]) -> Result<VerifiedPeer, IdentityError> {
        let end_entity = chain.first().ok_or(IdentityError::NoCertificate)?;
        let end_entity = end_entity.as_ref();
        if end_entity.len() > MAX_CERTIFICATE_BYTES {
            return Err(IdentityError::Malformed {
                reason: "unreadable certificate",
                source: Some(CertificateError::TooLarge {
                    len: end_entity.len(),
                    max: MAX_CERTIFICATE_BYTES,
                }),
            });
        }
        let (_, cert) = parse_certificate(end_entity).map_err(|e| IdentityError::Malformed {
            reason: "unreadable certificate",
            source: Some(e),
        })?;
        self.check_issuer(&cert)?;
        let facts = PeerCertificate::from_x509(&cert).map_err(|e| IdentityError::Malformed {
            reason: "unreadable validity",
            source: Some(e),
        })?;
        if !facts.client_auth {
            return Err(IdentityError::malformed(
                "extended key usage does not allow client authentication",
            ));
        }
        let common_name = facts
            .common_name
            .as_deref()
            .ok_or_else(|| IdentityError::malformed("subject has no single UTF-8 common name"))?;
        let identity = match (&facts.organizational_unit, common_name) {
            (None, REGISTRATION_COMMON_NAME) => PeerIdentity::Register,
            (None, _) => {
                return Err(IdentityError::malformed(
                    "device certificate subject has no single organizational unit",
                ));
            }
            (Some(namespace), id) => {
                let device = DeviceIdentity::new(id, namespace.as_str()).map_err(|_| {
                    IdentityError::malformed("subject is not a valid device id and namespace")
                })?;
                PeerIdentity::Device {
                    id: device.id().to_owned(),
                    namespace: device.namespace().to_owned(),
                }
            }
        };
        Ok(VerifiedPeer {
            identity,
            serial: facts.serial,
            not_before: facts.not_before,
            not_after: facts.not_after,
            clock_skew: self.clock_skew,
        })
    }
}

/// A peer certificate whose CA signature and subject passed
/// [`PeerVerifier::verify_peer`]; revocation and time are checked per use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    identity: PeerIdentity,
    serial: Serial,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    clock_skew: Duration,
}

impl VerifiedPeer {
    /// Who the certificate names, before revocation and time are considered.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The certificate's serial number.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Checks revocation, then validity at `now` (with the verifier's clock skew) for
    /// `purpose`, and returns the identity.
    pub fn check(
        &self,
        revoked: &RevocationList,
        now: OffsetDateTime,
        purpose: Purpose,
    ) -> Result<PeerIdentity, IdentityError> {
        if revoked.is_revoked(&self.serial) {
            return Err(IdentityError::Revoked {
                serial: self.serial.clone(),
            });
        }
        if now.saturating_add(self.clock_skew) < self.not_before {
            return Err(IdentityError::NotYetValid {
                not_before: self.not_before,
                now,
            });
        }
        let expired = now.saturating_sub(self.clock_skew) > self.not_after;
        let expiry_forgiven = purpose == Purpose::Registration
            && matches!(self.identity, PeerIdentity::Device { .. });
        if expired && !expiry_forgiven {
            return Err(IdentityError::Expired {
                not_after: self.not_after,
                now,
            });
        }
        Ok(self.identity.clone())
    }
}

impl PeerIdentity {
    /// Who the peer is: [`PeerVerifier::identify`] under another name, for readers
    /// who look for it here.
    pub fn from_chain<C: AsRef<[u8]>>(
        chain: &[C],
        verifier: &PeerVerifier,
        revoked: &RevocationList,
        now: OffsetDateTime,
        purpose: Purpose,
    ) -> Result<Self, IdentityError> {
        verifier.identify(chain, revoked, now, purpose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_normalises_leading_zeros() {
        assert_eq!(
            Serial::from_bytes(&[0, 0, 1, 2]),
            Serial::from_bytes(&[1, 2])
        );
        assert_eq!(Serial::from_bytes(&[0, 0xab]).to_string(), "ab");
        assert_eq!(Serial::from_bytes(&[]).to_string(), "00");
    }

    #[test]
    fn random_serials_are_128_bits_and_differ() {
        let a = Serial::random().expect("rng");
        let b = Serial::random().expect("rng");
        assert_eq!(a.as_bytes().len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn revocation_list_membership() {
        let s = Serial::from_bytes(&[7]);
        let mut list = RevocationList::new();
        assert!(!list.is_revoked(&s));
        list.revoke(s.clone());
        assert!(list.is_revoked(&Serial::from_bytes(&[0, 7])));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn empty_chain_is_no_certificate() {
        let verifier = PeerVerifier {
            issuers: Vec::new(),
            clock_skew: DEFAULT_CLOCK_SKEW,
        };
        let chain: [&[u8]; 0] = [];
        assert!(matches!(
            verifier.identify(
                &chain,
                &RevocationList::new(),
                OffsetDateTime::UNIX_EPOCH,
                Purpose::Request
            ),
            Err(IdentityError::NoCertificate)
        ));
    }
}
