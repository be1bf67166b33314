//! The device side: its own key, generated on the device, and the CSR it sends.

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use super::error::PkiError;
use super::pem::pem_encode;

/// A device's private key, ECDSA P-256. It never leaves the device: the only way to
/// get the private key out is [`to_pem`](Self::to_pem), for the device's own storage.
pub struct DeviceKey {
    key: KeyPair,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("algorithm", &"ECDSA P-256")
            .finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// Generates a new P-256 key from the system's random generator.
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::KeyGeneration)?;
        Ok(Self { key })
    }

    /// Loads a key persisted with [`to_pem`](Self::to_pem); refuses anything but P-256.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(pem).map_err(|source| PkiError::Pem {
            what: "device key",
            source,
        })?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::UnsupportedDeviceKey);
        }
        Ok(Self { key })
    }

    /// The private key as PKCS#8 PEM, for persisting on the device only.
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key)
    }

    /// Builds a CSR with CN = `device_id`. The server ignores every requested field
    /// except the public key; the CN is there for humans reading the request.
    pub fn csr(&self, device_id: &str) -> Result<Csr, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, device_id);
        let request = params
            .serialize_request(&self.key)
            .map_err(|source| PkiError::Signing {
                subject: device_id.to_owned(),
                source,
            })?;
        Ok(Csr {
            der: request.der().to_vec(),
        })
    }
}

/// A certificate signing request as the device sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    der: Vec<u8>,
}

impl Csr {
    /// The request, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The request, PEM (`CERTIFICATE REQUEST`), as the wire's `certificate_request`.
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE REQUEST", &self.der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_pem() {
        let key = DeviceKey::generate().expect("key");
        let again = DeviceKey::from_pem(&key.to_pem()).expect("reload");
        assert_eq!(key.public_key_der(), again.public_key_der());
    }

    #[test]
    fn non_p256_key_is_refused() {
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        assert!(matches!(
            DeviceKey::from_pem(&other.serialize_pem()),
            Err(PkiError::UnsupportedDeviceKey)
        ));
        assert!(matches!(
            DeviceKey::from_pem("not a key"),
            Err(PkiError::Pem { .. })
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = DeviceKey::generate().expect("key");
        let shown = format!("{key:?}");
        assert!(!shown.contains("PRIVATE"));
        assert!(!shown.contains(&key.to_pem()));
    }
}
