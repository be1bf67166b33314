//! The certificate authority: the trait an external signer implements, the built-in
//! CA, and the certificate profiles the server issues.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::csr::VerifiedCsr;
use super::identity::Serial;
use super::{CA_LIFETIME, REGISTRATION_COMMON_NAME};

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
    /// The CA certificate given to [`BuiltinCa::from_pem`] is not usable as a CA.
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

/// A device as named in its certificate: CN = device id, OU = namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    id: String,
    namespace: String,
}

impl DeviceIdentity {
    /// Checks and pairs a device id (a DNS subdomain, not `register`) and a namespace
    /// (a DNS label).
    pub fn new(id: impl Into<String>, namespace: impl Into<String>) -> Result<Self, PkiError> {
        let id = id.into();
        let namespace = namespace.into();
        if let Some(reason) = dns_subdomain_problem(&id) {
            return Err(PkiError::InvalidDeviceId { id, reason });
        }
        if id == REGISTRATION_COMMON_NAME {
            return Err(PkiError::InvalidDeviceId {
                id,
                reason: "reserved for the registration certificate",
            });
        }
        if let Some(reason) = dns_label_problem(&namespace) {
            return Err(PkiError::InvalidNamespace { namespace, reason });
        }
        Ok(Self { id, namespace })
    }

    /// The device id (certificate CN).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespace (certificate OU).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Why `name` is not a DNS-1123 subdomain, if it is not one.
pub(crate) fn dns_subdomain_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("must not be empty");
    }
    if name.len() > 253 {
        return Some("must be at most 253 characters");
    }
    for label in name.split('.') {
        if let Some(problem) = dns_label_problem(label) {
            return Some(problem);
        }
    }
    None
}

/// Why `label` is not a DNS-1123 label, if it is not one.
pub(crate) fn dns_label_problem(label: &str) -> Option<&'static str> {
    if label.is_empty() {
        return Some("labels must not be empty");
    }
    if label.len() > 63 {
        return Some("labels must be at most 63 characters");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("only lowercase letters, digits, '-' and '.' are allowed");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some("labels must start and end with a letter or digit");
    }
    None
}

/// Which extended key usage a certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateUsage {
    /// TLS client (devices, registration certificate).
    Client,
    /// TLS server.
    Server,
}

/// Every field of an end-entity certificate, chosen by the server: the signer copies
/// them and adds nothing from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateProfile {
    /// Subject common name.
    pub common_name: String,
    /// Subject organizational unit, the namespace for device certificates.
    pub organizational_unit: Option<String>,
    /// Extended key usage.
    pub usage: CertificateUsage,
    /// subjectAltName DNS names.
    pub dns_names: Vec<String>,
    /// subjectAltName IP addresses.
    pub ip_addresses: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Serial number.
    pub serial: Serial,
}

impl CertificateProfile {
    /// A device certificate: CN = id, OU = namespace, clientAuth, valid from
    /// `not_before` to `not_after`, random serial.
    pub fn device(
        device: &DeviceIdentity,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        Ok(Self {
            common_name: device.id.clone(),
            organizational_unit: Some(device.namespace.clone()),
            usage: CertificateUsage::Client,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            not_before,
            not_after,
            serial: Serial::random()?,
        })
    }
}

/// A certificate as issued, DER plus the facts the server records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    der: Vec<u8>,
    serial: Serial,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl IssuedCertificate {
    /// Wraps a certificate a signer produced for `profile`.
    pub fn new(der: Vec<u8>, profile: &CertificateProfile) -> Self {
        Self {
            der,
            serial: profile.serial.clone(),
            not_before: profile.not_before,
            not_after: profile.not_after,
        }
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// Its serial number, to record for revocation.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    /// Start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

/// A certificate together with the private key generated for it (registration and
/// server certificates, whose keys the server hands out or keeps).
#[derive(Clone)]
pub struct IssuedKeyPair {
    /// The certificate.
    pub certificate: IssuedCertificate,
    key_pem: String,
}

impl IssuedKeyPair {
    /// The private key, PKCS#8 PEM, for persisting or distributing.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for IssuedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKeyPair")
            .field("certificate", &self.certificate)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Something that signs certificates for the fleet: the [`BuiltinCa`], or an external
/// signer (an HSM, a corporate CA) implementing this trait.
pub trait CertificateAuthority {
    /// Issues a certificate for the public key `subject_public_key_info` (DER) with
    /// exactly the fields of `profile`.
    fn issue(
        &self,
        subject_public_key_info: &[u8],
        profile: &CertificateProfile,
    ) -> Result<IssuedCertificate, PkiError>;

    /// The CA chain, DER, the certificate that signs device certificates first.
    fn chain_der(&self) -> Vec<Vec<u8>>;

    /// The CA chain as concatenated PEM blocks, in [`chain_der`](Self::chain_der) order.
    fn chain_pem(&self) -> String {
        self.chain_der()
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der))
            .collect()
    }

    /// Signs a device CSR that passed the [`CsrPolicy`](super::CsrPolicy): CN = device
    /// id, OU = namespace, clientAuth, the given validity, a random serial.
    fn sign_csr(
        &self,
        csr: &VerifiedCsr,
        device: &DeviceIdentity,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let profile = CertificateProfile::device(device, not_before, not_after)?;
        self.issue(csr.subject_public_key_info(), &profile)
    }
}

/// The built-in CA: ECDSA P-256, self-signed, valid for ten years.
pub struct BuiltinCa {
    issuer: Issuer<'static, KeyPair>,
    certificate_der: Vec<u8>,
}

impl fmt::Debug for BuiltinCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltinCa")
            .field("certificate_der_len", &self.certificate_der.len())
            .finish_non_exhaustive()
    }
}

impl BuiltinCa {
    /// Generates a new CA key and a self-signed CA certificate named `common_name`,
    /// valid from `now - 1 h` for ten years.
    pub fn generate(common_name: &str, now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::KeyGeneration)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = whole_seconds(now);
        params.not_before = now.saturating_sub(super::NOT_BEFORE_SKEW);
        params.not_after = now.saturating_add(CA_LIFETIME);
        params.serial_number = Some(SerialNumber::from_slice(Serial::random()?.as_bytes()));
        let certificate = params
            .self_signed(&key)
            .map_err(|source| PkiError::Signing {
                subject: common_name.to_owned(),
                source,
            })?;
        Ok(Self {
            certificate_der: certificate.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and PKCS#8 private key, both PEM.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| PkiError::Pem {
            what: "CA key",
            source,
        })?;
        let der = super::pem_or_der(certificate_pem.as_bytes(), &["CERTIFICATE"]).ok_or(
            PkiError::NotACaCertificate {
                reason: "not a PEM CERTIFICATE block",
            },
        )?;
        let (rest, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| PkiError::NotACaCertificate {
                reason: "not a well-formed X.509 certificate",
            })?;
        if !rest.is_empty() {
            return Err(PkiError::NotACaCertificate {
                reason: "trailing bytes after the certificate",
            });
        }
        if !cert.is_ca() {
            return Err(PkiError::NotACaCertificate {
                reason: "basicConstraints does not say CA:TRUE",
            });
        }
        if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
            return Err(PkiError::KeyMismatch { what: "CA" });
        }
        let certificate_der = der.to_vec();
        let issuer =
            Issuer::from_ca_cert_der(&certificate_der.clone().into(), key).map_err(|source| {
                PkiError::Pem {
                    what: "CA certificate",
                    source,
                }
            })?;
        Ok(Self {
            issuer,
            certificate_der,
        })
    }

    /// The CA certificate and private key, PEM, for persisting.
    pub fn to_pem(&self) -> (String, String) {
        (
            pem_encode("CERTIFICATE", &self.certificate_der),
            self.issuer.key().serialize_pem(),
        )
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }
}

impl CertificateAuthority for BuiltinCa {
    fn issue(
        &self,
        subject_public_key_info: &[u8],
        profile: &CertificateProfile,
    ) -> Result<IssuedCertificate, PkiError> {
        if profile.not_before >= profile.not_after {
            return Err(PkiError::EmptyValidity {
                not_before: profile.not_before,
                not_after: profile.not_after,
            });
        }
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(subject_public_key_info)
            .map_err(PkiError::UnsupportedPublicKey)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, profile.common_name.as_str());
        if let Some(ou) = &profile.organizational_unit {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, ou.as_str());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match profile.usage {
            CertificateUsage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            CertificateUsage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        for (index, name) in profile.dns_names.iter().enumerate() {
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|_| PkiError::InvalidHostName {
                    name: name.clone(),
                    index,
                })?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params.subject_alt_names.extend(
            profile
                .ip_addresses
                .iter()
                .map(|ip| SanType::IpAddress(*ip)),
        );
        params.not_before = profile.not_before;
        params.not_after = profile.not_after;
        params.serial_number = Some(SerialNumber::from_slice(profile.serial.as_bytes()));
        params.use_authority_key_identifier_extension = true;
        let certificate = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|source| PkiError::Signing {
                subject: profile.common_name.clone(),
                source,
            })?;
        Ok(IssuedCertificate::new(certificate.der().to_vec(), profile))
    }

    fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.certificate_der.clone()]
    }
}

/// Issues the fleet-wide registration certificate (CN `register`, clientAuth) with a
/// fresh P-256 key, valid from `now - 1 h` for `lifetime`.
pub fn issue_registration_certificate(
    ca: &(impl CertificateAuthority + ?Sized),
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<IssuedKeyPair, PkiError> {
    let now = whole_seconds(now);
    let profile = CertificateProfile {
        common_name: REGISTRATION_COMMON_NAME.to_owned(),
        organizational_unit: None,
        usage: CertificateUsage::Client,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        not_before: now.saturating_sub(super::NOT_BEFORE_SKEW),
        not_after: now.saturating_add(lifetime),
        serial: Serial::random()?,
    };
    issue_with_new_key(ca, &profile)
}

/// Issues the server's TLS certificate (serverAuth) with a fresh P-256 key. Each entry
/// of `hosts` that parses as an IP address becomes an IP SAN, every other one a DNS
/// SAN; the first entry is also the common name.
pub fn issue_server_certificate(
    ca: &(impl CertificateAuthority + ?Sized),
    hosts: &[&str],
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<IssuedKeyPair, PkiError> {
    let first = hosts.first().ok_or(PkiError::NoServerNames)?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    for (index, host) in hosts.iter().enumerate() {
        match host.parse::<IpAddr>() {
            Ok(ip) => ip_addresses.push(ip),
            Err(_) => {
                let wildcard_free = host.strip_prefix("*.").unwrap_or(host);
                if dns_subdomain_problem(&wildcard_free.to_ascii_lowercase()).is_some() {
                    return Err(PkiError::InvalidHostName {
                        name: (*host).to_owned(),
                        index,
                    });
                }
                dns_names.push((*host).to_owned());
            }
        }
    }
    let now = whole_seconds(now);
    let profile = CertificateProfile {
        common_name: (*first).to_owned(),
        organizational_unit: None,
        usage: CertificateUsage::Server,
        dns_names,
        ip_addresses,
        not_before: now.saturating_sub(super::NOT_BEFORE_SKEW),
        not_after: now.saturating_add(lifetime),
        serial: Serial::random()?,
    };
    issue_with_new_key(ca, &profile)
}

fn issue_with_new_key(
    ca: &(impl CertificateAuthority + ?Sized),
    profile: &CertificateProfile,
) -> Result<IssuedKeyPair, PkiError> {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::KeyGeneration)?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let certificate = ca.issue(&spki, profile)?;
    Ok(IssuedKeyPair {
        certificate,
        key_pem: key.serialize_pem(),
    })
}

/// Certificates carry whole seconds; dropping the fraction keeps what we record equal
/// to what the certificate says.
pub(crate) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Encodes DER as one PEM block with 64-character lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                b64.push(char::from(ALPHABET[index]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_encoding_matches_known_base64() {
        let pem = pem_encode("X", b"foobar!");
        assert_eq!(pem, "-----BEGIN X-----\nZm9vYmFyIQ==\n-----END X-----\n");
        let pem = pem_encode("X", b"fo");
        assert!(pem.contains("\nZm8=\n"));
    }

    #[test]
    fn device_identity_rules() {
        assert!(DeviceIdentity::new("edge-01.site-a", "fleet").is_ok());
        assert!(matches!(
            DeviceIdentity::new("register", "fleet"),
            Err(PkiError::InvalidDeviceId { .. })
        ));
        assert!(matches!(
            DeviceIdentity::new("Edge", "fleet"),
            Err(PkiError::InvalidDeviceId { .. })
        ));
        assert!(matches!(
            DeviceIdentity::new("edge", "a.b"),
            Err(PkiError::InvalidNamespace { .. })
        ));
        assert!(matches!(
            DeviceIdentity::new("", "fleet"),
            Err(PkiError::InvalidDeviceId { .. })
        ));
    }

    #[test]
    fn ca_round_trips_through_pem() {
        let now = OffsetDateTime::now_utc();
        let ca = BuiltinCa::generate("test CA", now).expect("ca");
        let (cert, key) = ca.to_pem();
        let loaded = BuiltinCa::from_pem(&cert, &key).expect("reload");
        assert_eq!(loaded.certificate_der(), ca.certificate_der());
        let other = BuiltinCa::generate("other CA", now).expect("ca");
        let (_, other_key) = other.to_pem();
        assert!(matches!(
            BuiltinCa::from_pem(&cert, &other_key),
            Err(PkiError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn server_certificate_needs_names() {
        let now = OffsetDateTime::now_utc();
        let ca = BuiltinCa::generate("test CA", now).expect("ca");
        assert!(matches!(
            issue_server_certificate(&ca, &[], now, Duration::days(1)),
            Err(PkiError::NoServerNames)
        ));
        assert!(matches!(
            issue_server_certificate(&ca, &["ok.example", "bad name"], now, Duration::days(1)),
            Err(PkiError::InvalidHostName { index: 1, .. })
        ));
    }
}
