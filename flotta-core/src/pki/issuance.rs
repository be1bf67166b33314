//! Issuing a device certificate from a CSR: the request goes through the
//! [`CsrPolicy`], and the authority signs the public key with server-chosen fields.
//!
//! This sits above both the policy (which only reads requests) and the authority
//! (which only signs), so neither depends on the other's module.

use time::OffsetDateTime;

use super::ca::{CertificateAuthority, IssuedCertificate};
use super::csr::{CsrError, CsrPolicy, VerifiedCsr};
use super::device::DeviceIdentity;
use super::error::PkiError;
use super::validity::whole_seconds;

impl CsrPolicy {
    /// Verifies `csr` and has `ca` issue a device certificate for `device`:
    /// NotBefore = `now` - skew, NotAfter = `now` + lifetime.
    pub async fn issue(
        &self,
        ca: &(impl CertificateAuthority + ?Sized),
        csr: &[u8],
        device: &DeviceIdentity,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, IssueError> {
        let verified = self.verify(csr)?;
        Ok(self.sign(ca, &verified, device, now).await?)
    }

    /// Has `ca` issue a device certificate for an already verified CSR.
    pub async fn sign(
        &self,
        ca: &(impl CertificateAuthority + ?Sized),
        csr: &VerifiedCsr,
        device: &DeviceIdentity,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let now = whole_seconds(now);
        ca.sign_csr(
            csr,
            device,
            now.saturating_sub(self.not_before_skew),
            now.saturating_add(self.device_lifetime),
        )
        .await
    }
}

/// Why [`CsrPolicy::issue`] failed: the request was refused (answer 400) or the
/// signer failed (answer 500).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The CSR was refused by the policy.
    #[error("the certificate request was refused")]
    Refused(#[from] CsrError),
    /// The CA failed to sign.
    #[error("the certificate authority failed to sign")]
    Signer(#[from] PkiError),
}
