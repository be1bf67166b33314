//! Who the peer is, read from its client certificate alone.
//!
//! At the TLS handshake the server checks only that the client certificate chains to
//! the fleet CA (see the `tls` module, feature `rustls`); time, revocation
//! and what the certificate may be used for are decided here, per request, because an
//! expired device certificate is still good for one thing: re-registering.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::prelude::FromDer;

use super::ca::CertificateAuthority;
use super::defaults::{MAX_CERTIFICATE_BYTES, MAX_CHAIN_INTERMEDIATES, REGISTRATION_COMMON_NAME};
use super::device::DeviceIdentity;
use super::pem::{certificate_bundle, pem_or_der};
use super::serial::Serial;
use super::validity::asn1_time;

/// Serials the server refuses: those of deleted devices, and those a renewal
/// superseded (refused from the end of a grace window, so that the device can
/// still use its old certificate until it has switched to the new one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    /// Each serial with the time it is refused from.
    serials: HashMap<Serial, OffsetDateTime>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses `serial` from now on.
    pub fn revoke(&mut self, serial: Serial) {
        self.serials.insert(serial, OffsetDateTime::UNIX_EPOCH);
    }

    /// Refuses `serial` from `at` on (an earlier revocation of it stands).
    pub fn revoke_from(&mut self, serial: Serial, at: OffsetDateTime) {
        let from = self.serials.entry(serial).or_insert(at);
        *from = (*from).min(at);
    }

    /// Whether `serial` is revoked, now or from a later time.
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.serials.contains_key(serial)
    }

    /// Whether `serial` is refused at `now`.
    pub fn is_revoked_at(&self, serial: &Serial, now: OffsetDateTime) -> bool {
        self.serials.get(serial).is_some_and(|from| *from <= now)
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
            serials: iter
                .into_iter()
                .map(|serial| (serial, OffsetDateTime::UNIX_EPOCH))
                .collect(),
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
    /// The input starts like PEM but is not one to five complete `CERTIFICATE`
    /// blocks.
    #[error("certificate PEM is not one to five complete CERTIFICATE blocks")]
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
        /// Whom the certificate names: the Edge API answers a deleted device's
        /// revoked certificate as Flotta does, a superseded one with 401.
        identity: PeerIdentity,
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
    /// Reads a certificate, PEM or DER. Of a PEM bundle (a certificate followed by
    /// the intermediates above it, as the server issues under an intermediate CA)
    /// the first certificate is read; every block must be a complete `CERTIFICATE`.
    pub fn parse(input: &[u8]) -> Result<Self, CertificateError> {
        let der = certificate_der(input)?;
        let (_, cert) = parse_certificate(&der)?;
        Self::from_x509(&cert)
    }

    fn from_x509(cert: &X509Certificate<'_>) -> Result<Self, CertificateError> {
        let validity = cert.validity();
        let not_before = asn1_time(validity.not_before).ok_or(CertificateError::TimeOutOfRange)?;
        let not_after = asn1_time(validity.not_after).ok_or(CertificateError::TimeOutOfRange)?;
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
    if input.trim_ascii_start().starts_with(b"-----BEGIN") {
        let mut chain = certificate_bundle(input, MAX_CHAIN_INTERMEDIATES + 1)
            .ok_or(CertificateError::MalformedPem)?;
        if chain.is_empty() {
            return Err(CertificateError::MalformedPem);
        }
        return Ok(std::borrow::Cow::Owned(chain.swap_remove(0)));
    }
    pem_or_der(input, &["CERTIFICATE"]).ok_or(CertificateError::MalformedPem)
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

/// A CA certificate the verifier trusts: peer certificates it signed, directly or
/// through intermediates the peer sends, are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrustedIssuer {
    subject: Vec<u8>,
    subject_public_key_info: Vec<u8>,
    /// Trusted only until a CA rotation retires it: its devices are told to renew.
    retiring: bool,
}

/// Default tolerance between the server's clock and a certificate's validity bounds.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Checks peer certificates against the fleet CAs, the revocation list and the time.
///
/// A peer certificate is accepted when a trusted CA signed it, or signed one of the
/// intermediate CA certificates the peer sent after it (at most
/// [`MAX_CHAIN_INTERMEDIATES`], each a CA, each signing the one before). During a CA
/// rotation the verifier trusts the new CA and the one being retired
/// ([`with_retiring`](Self::with_retiring)); [`VerifiedPeer::issued_by_retiring_ca`]
/// says which signed a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerVerifier {
    issuers: Vec<TrustedIssuer>,
    clock_skew: Duration,
}

/// How a peer's certificate reaches a trusted CA.
struct TrustPath {
    retiring: bool,
    /// The latest start and earliest end of validity of the intermediates on the way.
    not_before: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
}

impl PeerVerifier {
    /// Trusts the given CA certificates (DER) as issuers of peer certificates.
    pub fn new<C: AsRef<[u8]>>(ca_certificates: &[C]) -> Result<Self, CertificateError> {
        Self {
            issuers: Vec::with_capacity(ca_certificates.len()),
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
        .trusting(ca_certificates, false)
    }

    /// Also trusts `ca_certificates` (DER), as CAs being retired by a rotation: their
    /// peers are accepted, and [`VerifiedPeer::issued_by_retiring_ca`] says so.
    pub fn with_retiring<C: AsRef<[u8]>>(
        self,
        ca_certificates: &[C],
    ) -> Result<Self, CertificateError> {
        self.trusting(ca_certificates, true)
    }

    fn trusting<C: AsRef<[u8]>>(
        mut self,
        ca_certificates: &[C],
        retiring: bool,
    ) -> Result<Self, CertificateError> {
        for der in ca_certificates {
            let (_, cert) = parse_certificate(der.as_ref())?;
            let issuer = TrustedIssuer {
                subject: cert.subject().as_raw().to_vec(),
                subject_public_key_info: cert.public_key().raw.to_vec(),
                retiring,
            };
            if !self.issuers.iter().any(|known| {
                known.subject == issuer.subject
                    && known.subject_public_key_info == issuer.subject_public_key_info
            }) {
                self.issuers.push(issuer);
            }
        }
        Ok(self)
    }

    /// Trusts every certificate of `ca`'s chain: the one that signs device
    /// certificates and the CAs above it.
    pub fn from_authority(
        ca: &(impl CertificateAuthority + ?Sized),
    ) -> Result<Self, CertificateError> {
        Self::new(&ca.chain_der())
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

    /// Whether `end_entity` (DER) is signed by a trusted issuer, directly or through
    /// `intermediates` (DER, nearest first), ignoring time and revocation: the TLS
    /// handshake check.
    pub fn is_signed_by_trusted_issuer<C: AsRef<[u8]>>(
        &self,
        end_entity: &[u8],
        intermediates: &[C],
    ) -> Result<(), IdentityError> {
        let der = certificate_der(end_entity).map_err(|e| IdentityError::Malformed {
            reason: "unreadable certificate",
            source: Some(e),
        })?;
        let (_, cert) = parse_certificate(&der).map_err(|e| IdentityError::Malformed {
            reason: "unreadable certificate",
            source: Some(e),
        })?;
        let intermediates = parse_intermediates(intermediates)?;
        self.trust_path(&cert, &intermediates).map(|_| ())
    }

    /// The trusted CA that signed `cert` (DER of its SubjectPublicKeyInfo known).
    fn trusted_signer(&self, cert: &X509Certificate<'_>) -> Option<&TrustedIssuer> {
        let issuer = cert.issuer().as_raw();
        self.issuers
            .iter()
            .filter(|t| t.subject == issuer)
            .find(|trusted| {
                x509_parser::x509::SubjectPublicKeyInfo::from_der(&trusted.subject_public_key_info)
                    .is_ok_and(|(_, spki)| cert.verify_signature(Some(&spki)).is_ok())
            })
    }

    /// Walks from `cert` up through `intermediates` to a trusted CA.
    fn trust_path(
        &self,
        cert: &X509Certificate<'_>,
        intermediates: &[X509Certificate<'_>],
    ) -> Result<TrustPath, IdentityError> {
        let mut path = TrustPath {
            retiring: false,
            not_before: None,
            not_after: None,
        };
        let mut current = cert;
        // Each step climbs one intermediate; a path can use each at most once.
        for _ in 0..=intermediates.len() {
            if let Some(trusted) = self.trusted_signer(current) {
                path.retiring = trusted.retiring;
                return Ok(path);
            }
            let issuer = current.issuer().as_raw();
            let Some(parent) = intermediates.iter().find(|candidate| {
                candidate.subject().as_raw() == issuer
                    && candidate.is_ca()
                    && current
                        .verify_signature(Some(candidate.public_key()))
                        .is_ok()
            }) else {
                break;
            };
            let validity = parent.validity();
            let (Some(not_before), Some(not_after)) = (
                asn1_time(validity.not_before),
                asn1_time(validity.not_after),
            ) else {
                return Err(IdentityError::malformed(
                    "an intermediate certificate's validity is out of range",
                ));
            };
            path.not_before = Some(path.not_before.map_or(not_before, |t| t.max(not_before)));
            path.not_after = Some(path.not_after.map_or(not_after, |t| t.min(not_after)));
            current = parent;
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
        let intermediates = parse_intermediates(chain.get(1..).unwrap_or_default())?;
        let path = self.trust_path(&cert, &intermediates)?;
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
            not_before: path
                .not_before
                .map_or(facts.not_before, |t| t.max(facts.not_before)),
            not_after: path
                .not_after
                .map_or(facts.not_after, |t| t.min(facts.not_after)),
            clock_skew: self.clock_skew,
            retiring_issuer: path.retiring,
        })
    }
}

/// Reads the intermediate certificates a peer sent after its own.
fn parse_intermediates<C: AsRef<[u8]>>(
    chain: &[C],
) -> Result<Vec<X509Certificate<'_>>, IdentityError> {
    if chain.len() > MAX_CHAIN_INTERMEDIATES {
        return Err(IdentityError::malformed(
            "the certificate chain has more intermediates than allowed",
        ));
    }
    chain
        .iter()
        .map(|der| {
            let der = der.as_ref();
            if der.len() > MAX_CERTIFICATE_BYTES {
                return Err(IdentityError::Malformed {
                    reason: "unreadable intermediate certificate",
                    source: Some(CertificateError::TooLarge {
                        len: der.len(),
                        max: MAX_CERTIFICATE_BYTES,
                    }),
                });
            }
            parse_certificate(der)
                .map(|(_, cert)| cert)
                .map_err(|e| IdentityError::Malformed {
                    reason: "unreadable intermediate certificate",
                    source: Some(e),
                })
        })
        .collect()
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
    retiring_issuer: bool,
}

impl VerifiedPeer {
    /// Whether the certificate chains to a CA that a rotation is retiring: the
    /// device should renew, to get a certificate of the new CA.
    pub fn issued_by_retiring_ca(&self) -> bool {
        self.retiring_issuer
    }

    /// Who the certificate names, before revocation and time are considered.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The certificate's serial number.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    /// End of validity: the certificate's own, or an earlier end of an
    /// intermediate on its path.
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
        if revoked.is_revoked_at(&self.serial, now) {
            return Err(IdentityError::Revoked {
                serial: self.serial.clone(),
                identity: self.identity.clone(),
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
    fn revocation_list_membership() {
        let s = Serial::from_bytes(&[7]);
        let mut list = RevocationList::new();
        assert!(!list.is_revoked(&s));
        list.revoke(s.clone());
        assert!(list.is_revoked(&Serial::from_bytes(&[0, 7])));
        let later = Serial::from_bytes(&[9]);
        let at = time::macros::datetime!(2026-01-01 00:00 UTC);
        list.revoke_from(later.clone(), at);
        assert!(list.is_revoked(&later));
        assert!(!list.is_revoked_at(&later, at - Duration::seconds(1)));
        assert!(list.is_revoked_at(&later, at));
        list.revoke_from(later.clone(), at + Duration::days(1));
        assert!(list.is_revoked_at(&later, at), "the earlier time stands");
        assert_eq!(list.len(), 2);
    }

    /// A device certificate for `id` signed by `ca`, DER, valid from `at` for a day.
    fn device_der(ca: &crate::pki::BuiltinCa, id: &str, at: OffsetDateTime) -> Vec<u8> {
        let key = crate::pki::DeviceKey::generate().expect("key");
        let device = DeviceIdentity::new(id, "fleet").expect("device");
        let profile = crate::pki::CertificateProfile::device(&device, at, at + Duration::days(1))
            .expect("profile");
        ca.issue_now(&key.public_key_der(), &profile)
            .expect("issued")
            .der()
            .to_vec()
    }

    const AT: OffsetDateTime = time::macros::datetime!(2026-06-01 00:00 UTC);

    #[test]
    fn a_chain_through_intermediates_the_peer_sends_reaches_the_root() {
        use crate::pki::BuiltinCa;
        let root = BuiltinCa::generate_root("root", AT, 2).expect("root");
        let middle = root.generate_intermediate("middle", AT).expect("middle");
        let leaf = device_der(&middle, "edge-1", AT);
        let root_only = PeerVerifier::new(&[root.certificate_der()]).expect("verifier");
        let now = AT + Duration::hours(1);

        let chain = [leaf.clone(), middle.certificate_der().to_vec()];
        let peer = root_only
            .verify_peer(&chain)
            .expect("the chain reaches the root");
        assert!(!peer.issued_by_retiring_ca());
        assert!(
            peer.check(&RevocationList::new(), now, Purpose::Request)
                .is_ok()
        );
        assert!(
            root_only
                .is_signed_by_trusted_issuer(&leaf, &chain[1..])
                .is_ok()
        );

        // Without the intermediate, or with it in a chain it does not sign, the root
        // cannot vouch for the device.
        assert!(matches!(
            root_only.verify_peer(std::slice::from_ref(&leaf)),
            Err(IdentityError::UnknownIssuer)
        ));
        let stranger = BuiltinCa::generate_root("stranger", AT, 1).expect("stranger");
        let other_middle = stranger.generate_intermediate("middle", AT).expect("other");
        assert!(matches!(
            root_only.verify_peer(&[leaf.clone(), other_middle.certificate_der().to_vec()]),
            Err(IdentityError::UnknownIssuer)
        ));
        // An end-entity certificate is no intermediate, whatever its subject.
        let impostor = device_der(&root, "middle", AT);
        assert!(matches!(
            root_only.verify_peer(&[leaf.clone(), impostor]),
            Err(IdentityError::UnknownIssuer)
        ));
        // Too many certificates in the chain.
        let mut long = vec![leaf.clone()];
        long.extend(std::iter::repeat_n(middle.certificate_der().to_vec(), 5));
        assert!(matches!(
            root_only.verify_peer(&long),
            Err(IdentityError::Malformed { .. })
        ));
        // Trusting the intermediate itself needs no chain.
        let direct = PeerVerifier::from_authority(&middle).expect("verifier");
        assert!(direct.verify_peer(&[leaf]).is_ok());
    }

    #[test]
    fn the_path_is_valid_only_within_every_certificate_on_it() {
        use crate::pki::BuiltinCa;
        let root = BuiltinCa::generate_root("root", AT, 1).expect("root");
        let middle = root.generate_intermediate("middle", AT).expect("middle");
        let leaf = device_der(&middle, "edge-1", AT);
        let verifier = PeerVerifier::new(&[root.certificate_der()]).expect("verifier");
        let peer = verifier
            .verify_peer(&[leaf, middle.certificate_der().to_vec()])
            .expect("verified");
        // The leaf lives a day; the intermediate ten years: the leaf bounds it.
        assert_eq!(peer.not_after(), AT + Duration::days(1));
    }

    #[test]
    fn peers_of_a_retiring_ca_are_accepted_and_marked() {
        use crate::pki::BuiltinCa;
        let old = BuiltinCa::generate("old", AT).expect("old");
        let new = BuiltinCa::generate("new", AT).expect("new");
        let verifier = PeerVerifier::from_authority(&new)
            .and_then(|v| v.with_retiring(&[old.certificate_der()]))
            .expect("verifier");
        let on_old = verifier
            .verify_peer(&[device_der(&old, "edge-1", AT)])
            .expect("the retiring CA is trusted");
        assert!(on_old.issued_by_retiring_ca());
        let on_new = verifier
            .verify_peer(&[device_der(&new, "edge-1", AT)])
            .expect("the new CA is trusted");
        assert!(!on_new.issued_by_retiring_ca());
        let without_old = PeerVerifier::from_authority(&new).expect("verifier");
        assert!(matches!(
            without_old.verify_peer(&[device_der(&old, "edge-1", AT)]),
            Err(IdentityError::UnknownIssuer)
        ));
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
