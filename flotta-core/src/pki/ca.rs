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
use super::defaults::MAX_CHAIN_INTERMEDIATES;
use super::defaults::{CA_LIFETIME, NOT_BEFORE_SKEW, REGISTRATION_COMMON_NAME};
use super::device::{DeviceIdentity, dns_subdomain_problem};
use super::error::PkiError;
use super::pem::{certificate_bundle, pem_encode};
use super::serial::Serial;
use super::validity::whole_seconds;

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
            common_name: device.id().to_owned(),
            organizational_unit: Some(device.namespace().to_owned()),
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

    /// The private key as a SEC1 `EC PRIVATE KEY` PEM block (RFC 5915, with the
    /// curve named), the form Flotta's device worker reads.
    pub fn key_pem_sec1(&self) -> Result<String, PkiError> {
        use aws_lc_rs::encoding::AsDer as _;
        let invalid = || PkiError::NotAnEcKey;
        let pkcs8 = super::pem::pem_or_der(self.key_pem.as_bytes(), &["PRIVATE KEY"])
            .ok_or_else(invalid)?;
        let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
        )
        .map_err(|_| invalid())?;
        let sec1 = key.private_key().as_der().map_err(|_| invalid())?;
        Ok(pem_encode("EC PRIVATE KEY", sec1.as_ref()))
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
/// signer (a PKCS#11 HSM, a remote or corporate CA) implementing this trait.
///
/// Signing is `async` so that a signer may wait on a device or a network call; the
/// server awaits it while answering a device's `registration`, so a slow signer
/// slows registrations, never heartbeats. Errors of an external signer are wrapped in
/// [`PkiError::External`]. `docs/pki.md` shows an implementation.
#[async_trait::async_trait]
pub trait CertificateAuthority: Send + Sync {
    /// Issues a certificate for the public key `subject_public_key_info` (DER) with
    /// exactly the fields of `profile`.
    async fn issue(
        &self,
        subject_public_key_info: &[u8],
        profile: &CertificateProfile,
    ) -> Result<IssuedCertificate, PkiError>;

    /// The CA chain, DER: the certificate that signs device certificates first, then
    /// the certificates above it, up to the root.
    fn chain_der(&self) -> Vec<Vec<u8>>;

    /// The CA chain as concatenated PEM blocks, in [`chain_der`](Self::chain_der) order.
    fn chain_pem(&self) -> String {
        self.chain_der()
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der))
            .collect()
    }

    /// The certificates a device sends after its own so that a server trusting only
    /// the root can build the path: the chain without its self-signed root. Empty
    /// when the signing certificate is the root itself.
    fn intermediates_der(&self) -> Vec<Vec<u8>> {
        let mut chain = self.chain_der();
        if chain.last().is_some_and(|der| is_self_signed(der)) {
            chain.pop();
        }
        chain
    }

    /// Signs a device CSR that passed the [`CsrPolicy`](super::CsrPolicy): CN = device
    /// id, OU = namespace, clientAuth, the given validity, a random serial.
    async fn sign_csr(
        &self,
        csr: &VerifiedCsr,
        device: &DeviceIdentity,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let profile = CertificateProfile::device(device, not_before, not_after)?;
        self.issue(csr.subject_public_key_info(), &profile).await
    }
}

/// Whether a certificate (DER) names itself as its issuer.
fn is_self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, cert)| cert.subject().as_raw() == cert.issuer().as_raw())
}

/// The built-in CA: an ECDSA P-256 key in memory. Either a self-signed root valid for
/// ten years ([`generate`](Self::generate)), or an intermediate under another CA
/// ([`generate_intermediate`](Self::generate_intermediate), or a chain loaded with
/// [`from_pem`](Self::from_pem)), whose chain then names the CAs above it.
pub struct BuiltinCa {
    issuer: Issuer<'static, KeyPair>,
    certificate_der: Vec<u8>,
    /// The CAs above this one, DER, nearest first; empty for a root.
    parents_der: Vec<Vec<u8>>,
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
    /// valid from `now - 1 h` for ten years. It signs end-entity certificates only
    /// (path length 0).
    pub fn generate(common_name: &str, now: OffsetDateTime) -> Result<Self, PkiError> {
        Self::generate_root(common_name, now, 0)
    }

    /// A self-signed root like [`generate`](Self::generate) that may have up to
    /// `intermediates` CAs below it (path length constraint).
    pub fn generate_root(
        common_name: &str,
        now: OffsetDateTime,
        intermediates: u8,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::KeyGeneration)?;
        let params = ca_params(common_name, now, intermediates)?;
        let certificate = params
            .self_signed(&key)
            .map_err(|source| PkiError::Signing {
                subject: common_name.to_owned(),
                source,
            })?;
        Ok(Self {
            certificate_der: certificate.der().to_vec(),
            issuer: Issuer::new(params, key),
            parents_der: Vec::new(),
        })
    }

    /// Generates an intermediate CA signed by this one, valid like a root from
    /// `now - 1 h` for ten years (not beyond this CA's own validity is the
    /// operator's concern), signing end-entity certificates only. Its chain is its
    /// own certificate followed by this CA's chain.
    pub fn generate_intermediate(
        &self,
        common_name: &str,
        now: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::KeyGeneration)?;
        let mut params = ca_params(common_name, now, 0)?;
        params.use_authority_key_identifier_extension = true;
        let certificate =
            params
                .signed_by(&key, &self.issuer)
                .map_err(|source| PkiError::Signing {
                    subject: common_name.to_owned(),
                    source,
                })?;
        let mut parents_der = vec![self.certificate_der.clone()];
        parents_der.extend(self.parents_der.iter().cloned());
        Ok(Self {
            certificate_der: certificate.der().to_vec(),
            issuer: Issuer::new(params, key),
            parents_der,
        })
    }

    /// Loads a CA from its certificate and PKCS#8 private key, both PEM. The
    /// certificate PEM may carry the CAs above it after it, nearest first (an
    /// intermediate issued by a corporate root, say); the key belongs to the first.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| PkiError::Pem {
            what: "CA key",
            source,
        })?;
        let mut chain = certificate_bundle(certificate_pem.as_bytes(), MAX_CHAIN_INTERMEDIATES + 1)
            .filter(|chain| !chain.is_empty())
            .ok_or(PkiError::NotACaCertificate {
                reason: "not a PEM bundle of one to five CERTIFICATE blocks",
            })?
            .into_iter();
        let der = chain.next().unwrap_or_default();
        let parents_der: Vec<Vec<u8>> = chain.collect();
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
        for parent in &parents_der {
            match x509_parser::parse_x509_certificate(parent) {
                Ok((rest, parent)) if rest.is_empty() && parent.is_ca() => {}
                _ => {
                    return Err(PkiError::NotACaCertificate {
                        reason: "a certificate after the first in the chain is not a CA certificate",
                    });
                }
            }
        }
        let certificate_der = der.clone();
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
            parents_der,
        })
    }

    /// The CA certificate (followed by the CAs above it, if any) and private key,
    /// PEM, for persisting; [`from_pem`](Self::from_pem) reads them back.
    pub fn to_pem(&self) -> (String, String) {
        let mut certificate = pem_encode("CERTIFICATE", &self.certificate_der);
        for parent in &self.parents_der {
            certificate.push_str(&pem_encode("CERTIFICATE", parent));
        }
        (certificate, self.issuer.key().serialize_pem())
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// Signs synchronously: what [`CertificateAuthority::issue`] does for the
    /// built-in CA, for callers outside an async context.
    pub fn issue_now(
        &self,
        subject_public_key_info: &[u8],
        profile: &CertificateProfile,
    ) -> Result<IssuedCertificate, PkiError> {
        sign_with(&self.issuer, subject_public_key_info, profile)
    }
}

/// The parameters of a CA certificate named `common_name`, valid from `now - 1 h`
/// for ten years, with at most `intermediates` CAs below it.
fn ca_params(
    common_name: &str,
    now: OffsetDateTime,
    intermediates: u8,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(intermediates));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = whole_seconds(now);
    params.not_before = now.saturating_sub(NOT_BEFORE_SKEW);
    params.not_after = now.saturating_add(CA_LIFETIME);
    params.serial_number = Some(SerialNumber::from_slice(Serial::random()?.as_bytes()));
    Ok(params)
}

#[async_trait::async_trait]
impl CertificateAuthority for BuiltinCa {
    async fn issue(
        &self,
        subject_public_key_info: &[u8],
        profile: &CertificateProfile,
    ) -> Result<IssuedCertificate, PkiError> {
        self.issue_now(subject_public_key_info, profile)
    }

    fn chain_der(&self) -> Vec<Vec<u8>> {
        let mut chain = vec![self.certificate_der.clone()];
        chain.extend(self.parents_der.iter().cloned());
        chain
    }
}

/// Signs an end-entity certificate for `profile` with `issuer`.
fn sign_with(
    issuer: &Issuer<'static, KeyPair>,
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
    let certificate =
        params
            .signed_by(&public_key, issuer)
            .map_err(|source| PkiError::Signing {
                subject: profile.common_name.clone(),
                source,
            })?;
    Ok(IssuedCertificate::new(certificate.der().to_vec(), profile))
}

/// Issues the fleet-wide registration certificate (CN `register`, clientAuth) with a
/// fresh P-256 key, valid from `now - 1 h` for `lifetime`.
pub async fn issue_registration_certificate(
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
        not_before: now.saturating_sub(NOT_BEFORE_SKEW),
        not_after: now.saturating_add(lifetime),
        serial: Serial::random()?,
    };
    issue_with_new_key(ca, &profile).await
}

/// Issues the server's TLS certificate (serverAuth) with a fresh P-256 key. Each entry
/// of `hosts` that parses as an IP address becomes an IP SAN, every other one a DNS
/// SAN; the first entry is also the common name.
pub async fn issue_server_certificate(
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
        not_before: now.saturating_sub(NOT_BEFORE_SKEW),
        not_after: now.saturating_add(lifetime),
        serial: Serial::random()?,
    };
    issue_with_new_key(ca, &profile).await
}

async fn issue_with_new_key(
    ca: &(impl CertificateAuthority + ?Sized),
    profile: &CertificateProfile,
) -> Result<IssuedKeyPair, PkiError> {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::KeyGeneration)?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let certificate = ca.issue(&spki, profile).await?;
    Ok(IssuedKeyPair {
        certificate,
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_intermediate_round_trips_with_its_chain() {
        let now = OffsetDateTime::now_utc();
        let root = BuiltinCa::generate_root("root", now, 1).expect("root");
        let middle = root.generate_intermediate("middle", now).expect("middle");
        assert_eq!(
            middle.chain_der(),
            vec![
                middle.certificate_der().to_vec(),
                root.certificate_der().to_vec()
            ]
        );
        assert_eq!(
            middle.intermediates_der(),
            vec![middle.certificate_der().to_vec()]
        );
        assert!(root.intermediates_der().is_empty());
        let (cert, key) = middle.to_pem();
        let loaded = BuiltinCa::from_pem(&cert, &key).expect("reload");
        assert_eq!(loaded.chain_der(), middle.chain_der());
        // A device certificate after the chain is no CA.
        let leaf = futures::executor::block_on(issue_registration_certificate(
            &middle,
            now,
            Duration::days(1),
        ))
        .expect("leaf");
        let bad = format!("{cert}{}", leaf.certificate.pem());
        assert!(matches!(
            BuiltinCa::from_pem(&bad, &key),
            Err(PkiError::NotACaCertificate { .. })
        ));
    }

    #[test]
    fn a_registration_key_reads_as_sec1_with_its_curve_named() {
        let now = OffsetDateTime::now_utc();
        let ca = BuiltinCa::generate("test CA", now).expect("ca");
        let pair = futures::executor::block_on(issue_registration_certificate(
            &ca,
            now,
            Duration::days(1),
        ))
        .expect("issued");
        let sec1 = pair.key_pem_sec1().expect("SEC1");
        assert!(
            sec1.starts_with("-----BEGIN EC PRIVATE KEY-----\n"),
            "{sec1}"
        );
        let der =
            super::super::pem::pem_or_der(sec1.as_bytes(), &["EC PRIVATE KEY"]).expect("one block");
        // ECPrivateKey ::= SEQUENCE { version 1, privateKey, [0] prime256v1, ... }
        let prime256v1 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        assert!(der.windows(prime256v1.len()).any(|w| w == prime256v1));
        // The same key as the certificate's.
        use aws_lc_rs::signature::KeyPair as _;
        let key = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &der,
        )
        .expect("SEC1 parses");
        let (_, cert) =
            x509_parser::parse_x509_certificate(pair.certificate.der()).expect("certificate");
        assert_eq!(
            key.public_key().as_ref(),
            &*cert.public_key().subject_public_key.data
        );
    }

    #[test]
    fn server_certificate_needs_names() {
        let now = OffsetDateTime::now_utc();
        let ca = BuiltinCa::generate("test CA", now).expect("ca");
        let block_on = futures::executor::block_on;
        assert!(matches!(
            block_on(issue_server_certificate(&ca, &[], now, Duration::days(1))),
            Err(PkiError::NoServerNames)
        ));
        assert!(matches!(
            block_on(issue_server_certificate(
                &ca,
                &["ok.example", "bad name"],
                now,
                Duration::days(1)
            )),
            Err(PkiError::InvalidHostName { index: 1, .. })
        ));
    }
}
