//! The server's CSR policy: what a device may send, and what the server keeps of it.
//!
//! The policy keeps only the public key. The requested subject, SANs, basic
//! constraints and key usages are ignored, because the server chooses every field of
//! the certificate it issues. A critical extension the policy does not know is
//! refused: a requester that insists on a constraint we would silently drop is
//! better told no.

use time::Duration;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::FromDer;

use super::defaults::{DEFAULT_DEVICE_LIFETIME, MAX_CSR_BYTES, NOT_BEFORE_SKEW};
use super::pem::pem_or_der;

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The input is larger than the policy allows.
    #[error("CSR is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Allowed maximum.
        max: usize,
    },
    /// The input is empty.
    #[error("CSR is empty")]
    Empty,
    /// The input starts like PEM but is not one complete `CERTIFICATE REQUEST` block.
    #[error("CSR PEM is not one complete CERTIFICATE REQUEST block")]
    MalformedPem,
    /// The DER is not a PKCS#10 request.
    #[error("CSR DER is not a well-formed PKCS#10 request")]
    MalformedDer(#[source] X509Error),
    /// Bytes follow the request.
    #[error("{count} unexpected bytes follow the CSR at byte offset {offset}")]
    TrailingBytes {
        /// Where the request ends.
        offset: usize,
        /// How many bytes follow.
        count: usize,
    },
    /// The public key is neither EC nor RSA.
    #[error("CSR public key algorithm {oid} is not accepted (only ECDSA P-256/P-384 and RSA)")]
    UnsupportedKeyAlgorithm {
        /// The key algorithm OID.
        oid: String,
    },
    /// The EC key is on a curve other than P-256 or P-384.
    #[error("CSR EC public key curve {curve} is not accepted (only P-256 and P-384)")]
    UnsupportedCurve {
        /// The curve OID, or `absent`.
        curve: String,
    },
    /// The RSA key is shorter than the minimum.
    #[error("CSR RSA key has {bits} bits, fewer than the {min} required")]
    RsaKeyTooSmall {
        /// Modulus length.
        bits: usize,
        /// Required minimum.
        min: usize,
    },
    /// The public key bits do not decode for the declared algorithm.
    #[error("CSR public key is malformed for its algorithm")]
    MalformedPublicKey,
    /// The signature algorithm is not one we verify.
    #[error("CSR signature algorithm {oid} is not supported")]
    UnsupportedSignatureAlgorithm {
        /// The signature algorithm OID.
        oid: String,
    },
    /// The request is not signed by the key it carries.
    #[error("CSR signature does not verify with the CSR's own public key")]
    BadSignature,
    /// A requested extension is critical and unknown to the policy.
    #[error("CSR requests unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// The extension OID.
        oid: String,
    },
}

/// Kind of public key a verified CSR carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// RSA with the given modulus length.
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
}

/// A CSR that passed the policy, reduced to what the server uses: its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    subject_public_key_info: Vec<u8>,
    key_kind: KeyKind,
}

impl VerifiedCsr {
    /// The requester's public key, DER SubjectPublicKeyInfo.
    pub fn subject_public_key_info(&self) -> &[u8] {
        &self.subject_public_key_info
    }

    /// The kind of key.
    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }
}

/// Extensions a CSR may request and we knowingly ignore, critical or not.
const IGNORED_EXTENSIONS: &[&str] = &[
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.15", // keyUsage
    "2.5.29.17", // subjectAltName
    "2.5.29.19", // basicConstraints
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.37", // extKeyUsage
];

/// The server's rules for CSRs and the device certificates issued from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrPolicy {
    /// Lifetime of an issued device certificate, counted from the signing time.
    pub device_lifetime: Duration,
    /// How far back NotBefore is set, for device clock skew.
    pub not_before_skew: Duration,
    /// Largest accepted input, bytes.
    pub max_input_bytes: usize,
    /// Smallest accepted RSA modulus, bits.
    pub min_rsa_bits: usize,
}

impl Default for CsrPolicy {
    fn default() -> Self {
        Self {
            device_lifetime: DEFAULT_DEVICE_LIFETIME,
            not_before_skew: NOT_BEFORE_SKEW,
            max_input_bytes: MAX_CSR_BYTES,
            min_rsa_bits: 2048,
        }
    }
}

/// Verifies a CSR (PEM or DER) with the default [`CsrPolicy`].
pub fn verify_csr(input: &[u8]) -> Result<VerifiedCsr, CsrError> {
    CsrPolicy::default().verify(input)
}

impl CsrPolicy {
    /// Parses and checks a CSR, PEM or DER: size, structure, key type and size,
    /// signature, and critical extensions, in that order.
    pub fn verify(&self, input: &[u8]) -> Result<VerifiedCsr, CsrError> {
        if input.len() > self.max_input_bytes {
            return Err(CsrError::TooLarge {
                len: input.len(),
                max: self.max_input_bytes,
            });
        }
        if input.trim_ascii().is_empty() {
            return Err(CsrError::Empty);
        }
        let der = pem_or_der(input, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])
            .ok_or(CsrError::MalformedPem)?;
        let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|e| {
            CsrError::MalformedDer(match e {
                x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
                x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
            })
        })?;
        if !rest.is_empty() {
            return Err(CsrError::TrailingBytes {
                offset: der.len() - rest.len(),
                count: rest.len(),
            });
        }
        let spki = &csr.certification_request_info.subject_pki;
        let key_kind = self.key_kind(spki)?;
        csr.verify_signature().map_err(|e| match e {
            X509Error::SignatureUnsupportedAlgorithm => CsrError::UnsupportedSignatureAlgorithm {
                oid: csr.signature_algorithm.algorithm.to_id_string(),
            },
            _ => CsrError::BadSignature,
        })?;
        for attribute in csr.certification_request_info.iter_attributes() {
            if let ParsedCriAttribute::ExtensionRequest(request) = attribute.parsed_attribute() {
                for extension in &request.extensions {
                    let oid = extension.oid.to_id_string();
                    if extension.critical && !IGNORED_EXTENSIONS.contains(&oid.as_str()) {
                        return Err(CsrError::UnknownCriticalExtension { oid });
                    }
                }
            }
        }
        Ok(VerifiedCsr {
            subject_public_key_info: spki.raw.to_vec(),
            key_kind,
        })
    }

    fn key_kind(
        &self,
        spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    ) -> Result<KeyKind, CsrError> {
        let algorithm = &spki.algorithm.algorithm;
        if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            let kind = match &curve {
                Some(c) if *c == OID_EC_P256 => KeyKind::EcdsaP256,
                Some(c) if *c == OID_NIST_EC_P384 => KeyKind::EcdsaP384,
                Some(c) => {
                    return Err(CsrError::UnsupportedCurve {
                        curve: c.to_id_string(),
                    });
                }
                None => {
                    return Err(CsrError::UnsupportedCurve {
                        curve: "absent".to_owned(),
                    });
                }
            };
            Ok(kind)
        } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
                _ => return Err(CsrError::MalformedPublicKey),
            };
            if bits < self.min_rsa_bits {
                return Err(CsrError::RsaKeyTooSmall {
                    bits,
                    min: self.min_rsa_bits,
                });
            }
            Ok(KeyKind::Rsa { bits })
        } else {
            Err(CsrError::UnsupportedKeyAlgorithm {
                oid: algorithm.to_id_string(),
            })
        }
    }
}

/// Bit length of a big-endian unsigned modulus (leading zero bytes allowed).
fn modulus_bits(modulus: &[u8]) -> usize {
    let significant: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(start) => modulus.get(start..).unwrap_or_default(),
        None => &[],
    };
    match significant.first() {
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::DeviceKey;

    #[test]
    fn modulus_bit_length() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(modulus_bits(&[0x00]), 0);
        assert_eq!(modulus_bits(&[]), 0);
    }

    #[test]
    fn device_csr_passes_as_pem_and_der() {
        let key = DeviceKey::generate().expect("key");
        let csr = key.csr("edge-1").expect("csr");
        let from_pem = verify_csr(csr.pem().as_bytes()).expect("pem");
        let from_der = verify_csr(csr.der()).expect("der");
        assert_eq!(from_pem, from_der);
        assert_eq!(from_pem.key_kind(), KeyKind::EcdsaP256);
        assert_eq!(from_pem.subject_public_key_info(), key.public_key_der());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let key = DeviceKey::generate().expect("key");
        let mut der = key.csr("edge-1").expect("csr").der().to_vec();
        let len = der.len();
        der.extend_from_slice(&[0, 0]);
        assert!(matches!(
            verify_csr(&der),
            Err(CsrError::TrailingBytes { offset, count: 2 }) if offset == len
        ));
    }
}
