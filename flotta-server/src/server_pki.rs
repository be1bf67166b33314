//! The server's PKI files in `DATA_DIR/pki`: the fleet CA, the server's TLS
//! certificate and the fleet-wide registration certificate, loaded or first created;
//! and the CA rotation ([`rotate_ca`], [`retire_ca`]): while a previous CA is kept
//! beside the new one, both are trusted and the server's TLS certificate stays
//! with the previous one, so that devices not yet moved keep contact.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flotta_core::pki::{
    BuiltinCa, CertificateAuthority, issue_registration_certificate, issue_server_certificate,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

use crate::fs::{write_private_file, write_public_file};
use crate::start_error::StartError;

/// Lifetime of the server's TLS certificate; it is reissued at start-up when less
/// than [`SERVER_CERT_RENEW_BEFORE`] remains.
pub const SERVER_CERT_LIFETIME: time::Duration = time::Duration::days(365);
/// How long before expiry the server certificate is reissued at start-up.
pub const SERVER_CERT_RENEW_BEFORE: time::Duration = time::Duration::days(30);
/// Lifetime of the fleet-wide registration certificate (baked into device images,
/// so long-lived).
pub const REGISTRATION_CERT_LIFETIME: time::Duration = time::Duration::days(5 * 365);

/// The server's PKI as loaded from (or first written to) `DATA_DIR/pki`.
pub struct ServerPki {
    /// The built-in CA that signs device and registration certificates (and the
    /// server's, outside a rotation).
    pub ca: Arc<BuiltinCa>,
    /// During a CA rotation, the CA being retired: still trusted for device and
    /// registration certificates, and the issuer of the server's TLS certificate.
    pub previous_ca: Option<Arc<BuiltinCa>>,
    /// What clients should trust: `pki/ca.crt`'s chain, then the previous CA's
    /// during a rotation, PEM (also written to `pki/ca-bundle.crt`).
    pub ca_pem: String,
    /// `pki/server.crt`, PEM.
    pub server_certificate_pem: String,
    /// The certificates above the server certificate, DER, presented after it.
    pub server_issuer_chain_der: Vec<Vec<u8>>,
    /// `pki/server.key`, PEM.
    pub server_key_pem: String,
    /// `pki/register.crt`, PEM.
    pub registration_certificate_pem: String,
    /// `pki/register.key`, PEM.
    pub registration_key_pem: String,
    /// The `pki` directory.
    pub dir: PathBuf,
}

impl std::fmt::Debug for ServerPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// File names inside `DATA_DIR/pki`.
pub mod pki_files {
    /// CA certificate.
    pub const CA_CERT: &str = "ca.crt";
    /// CA private key.
    pub const CA_KEY: &str = "ca.key";
    /// Server TLS certificate.
    pub const SERVER_CERT: &str = "server.crt";
    /// Server TLS private key.
    pub const SERVER_KEY: &str = "server.key";
    /// Fleet-wide registration certificate.
    pub const REGISTER_CERT: &str = "register.crt";
    /// Registration private key: SEC1 (`EC PRIVATE KEY`) since Flotta's device
    /// worker reads no other form; a PKCS#8 one written earlier is read as well.
    pub const REGISTER_KEY: &str = "register.key";
    /// During a CA rotation: the CA being retired.
    pub const PREVIOUS_CA_CERT: &str = "previous-ca.crt";
    /// During a CA rotation: the private key of the CA being retired.
    pub const PREVIOUS_CA_KEY: &str = "previous-ca.key";
    /// Every CA certificate clients should trust now (written at each start).
    pub const CA_BUNDLE: &str = "ca-bundle.crt";
}

fn read_optional(path: &Path) -> Result<Option<String>, StartError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StartError::PkiFile {
            path: path.to_owned(),
            source,
        }),
    }
}

fn save_pair(
    cert_path: &Path,
    cert_pem: &str,
    key_path: &Path,
    key_pem: &str,
) -> Result<(), StartError> {
    write_private_file(key_path, key_pem.as_bytes()).map_err(|source| StartError::PkiFile {
        path: key_path.to_owned(),
        source,
    })?;
    write_public_file(cert_path, cert_pem.as_bytes()).map_err(|source| StartError::PkiFile {
        path: cert_path.to_owned(),
        source,
    })
}

/// The certificate's end of validity, when the PEM parses.
fn not_after(pem: &str) -> Option<OffsetDateTime> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    OffsetDateTime::from_unix_timestamp(certificate.validity().not_after.timestamp()).ok()
}

/// Whether the certificate in `pem` was signed by `ca`'s certificate.
fn issued_by(pem: &str, ca: &BuiltinCa) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(pem.as_bytes()) else {
        return false;
    };
    let (Ok((_, certificate)), Ok((_, issuer))) = (
        x509_parser::parse_x509_certificate(der.as_ref()),
        x509_parser::parse_x509_certificate(ca.certificate_der()),
    ) else {
        return false;
    };
    certificate.issuer().as_raw() == issuer.subject().as_raw()
        && certificate
            .verify_signature(Some(issuer.public_key()))
            .is_ok()
}

/// Loads the CA stored as `cert_name`/`key_name`, if both files are there.
fn load_ca(dir: &Path, cert_name: &str, key_name: &str) -> Result<Option<BuiltinCa>, StartError> {
    match (
        read_optional(&dir.join(cert_name))?,
        read_optional(&dir.join(key_name))?,
    ) {
        (Some(cert), Some(key)) => BuiltinCa::from_pem(&cert, &key)
            .map(Some)
            .map_err(|source| StartError::Pki {
                path: dir.join(cert_name),
                source,
            }),
        _ => Ok(None),
    }
}

/// A common name for a CA made at `now`, so that a rotated CA is told apart from
/// the one it replaces.
fn ca_common_name(now: OffsetDateTime, rotated: bool) -> String {
    if rotated {
        format!(
            "flotta fleet CA {}",
            flotta_core::timestamp::rfc3339_seconds(now)
        )
    } else {
        "flotta fleet CA".to_owned()
    }
}

/// Loads the CA, server and registration certificates from `dir`, creating what is
/// missing. The server certificate is reissued when it is about to expire or when
/// its issuer is no longer the one it should have (after a rotation step); the
/// registration certificate when the active CA did not sign it.
pub async fn load_or_create_pki(
    dir: &Path,
    hostnames: &[String],
    now: OffsetDateTime,
) -> Result<ServerPki, StartError> {
    use pki_files::*;
    std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = |name: &str| dir.join(name);
    let pki_error = |name: &str| {
        let path = dir.join(name);
        move |source| StartError::Pki { path, source }
    };

    let ca = match load_ca(dir, CA_CERT, CA_KEY)? {
        Some(ca) => ca,
        None => {
            let ca = BuiltinCa::generate(&ca_common_name(now, false), now)
                .map_err(pki_error(CA_CERT))?;
            let (cert, key) = ca.to_pem();
            save_pair(&path(CA_CERT), &cert, &path(CA_KEY), &key)?;
            tracing::info!(path = %path(CA_CERT).display(), "created the fleet CA");
            ca
        }
    };
    let previous_ca = load_ca(dir, PREVIOUS_CA_CERT, PREVIOUS_CA_KEY)?
        .filter(|previous| previous.certificate_der() != ca.certificate_der());
    // The server certificate stays with the previous CA while one is kept, so
    // that devices trusting only it keep verifying the server.
    let server_issuer = previous_ca.as_ref().unwrap_or(&ca);

    let hosts: Vec<&str> = hostnames.iter().map(String::as_str).collect();
    let (server_certificate_pem, server_key_pem) = match (
        read_optional(&path(SERVER_CERT))?,
        read_optional(&path(SERVER_KEY))?,
    ) {
        (Some(cert), Some(key))
            if not_after(&cert).is_some_and(|end| end - now > SERVER_CERT_RENEW_BEFORE)
                && issued_by(&cert, server_issuer) =>
        {
            (cert, key)
        }
        _ => {
            let issued = issue_server_certificate(server_issuer, &hosts, now, SERVER_CERT_LIFETIME)
                .await
                .map_err(pki_error(SERVER_CERT))?;
            let cert = issued.certificate.pem();
            let key = issued.key_pem().to_owned();
            save_pair(&path(SERVER_CERT), &cert, &path(SERVER_KEY), &key)?;
            tracing::info!(path = %path(SERVER_CERT).display(), hosts = ?hostnames, "issued the server certificate");
            (cert, key)
        }
    };

    let (registration_certificate_pem, registration_key_pem) = match (
        read_optional(&path(REGISTER_CERT))?,
        read_optional(&path(REGISTER_KEY))?,
    ) {
        (Some(cert), Some(key)) if issued_by(&cert, &ca) => (cert, key),
        _ => {
            let issued = issue_registration_certificate(&ca, now, REGISTRATION_CERT_LIFETIME)
                .await
                .map_err(pki_error(REGISTER_CERT))?;
            let cert = issued.certificate.pem();
            // SEC1, as Flotta's device worker reads it (our clients read both forms).
            let key = issued.key_pem_sec1().map_err(pki_error(REGISTER_KEY))?;
            save_pair(&path(REGISTER_CERT), &cert, &path(REGISTER_KEY), &key)?;
            tracing::info!(path = %path(REGISTER_CERT).display(), "issued the registration certificate");
            (cert, key)
        }
    };

    let mut ca_pem = ca.chain_pem();
    if let Some(previous) = &previous_ca {
        ca_pem.push_str(&previous.chain_pem());
    }
    write_public_file(&path(CA_BUNDLE), ca_pem.as_bytes()).map_err(|source| {
        StartError::PkiFile {
            path: path(CA_BUNDLE),
            source,
        }
    })?;
    Ok(ServerPki {
        server_issuer_chain_der: server_issuer.chain_der(),
        ca: Arc::new(ca),
        previous_ca: previous_ca.map(Arc::new),
        ca_pem,
        server_certificate_pem,
        server_key_pem,
        registration_certificate_pem,
        registration_key_pem,
        dir: dir.to_owned(),
    })
}

/// What a CA rotation step did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Subject of the CA that signs from now on.
    pub active: String,
    /// Subject of the CA being retired, while one is kept.
    pub previous: Option<String>,
}

fn subject_of(ca: &BuiltinCa) -> String {
    x509_parser::parse_x509_certificate(ca.certificate_der())
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_default()
}

/// Starts a CA rotation in `dir` (the server stopped, or restarted afterwards):
/// the current CA becomes the previous one (still trusted, still the issuer of the
/// server's TLS certificate), a new CA signs device and registration certificates
/// from the next start, and a new registration certificate is issued. Devices are
/// told to renew at their next control poll and, with the new certificate, learn
/// the CAs to trust (`caBundle`). Refused while a previous CA is still kept.
pub async fn rotate_ca(dir: &Path, now: OffsetDateTime) -> Result<RotationReport, StartError> {
    use pki_files::*;
    let Some(current) = load_ca(dir, CA_CERT, CA_KEY)? else {
        return Err(StartError::CaRotation {
            reason: format!("{} holds no CA to rotate", dir.display()),
        });
    };
    match load_ca(dir, PREVIOUS_CA_CERT, PREVIOUS_CA_KEY)? {
        Some(previous) if previous.certificate_der() != current.certificate_der() => {
            return Err(StartError::CaRotation {
                reason: format!(
                    "a rotation is under way: retire the previous CA ({}) first with `flotta-server ca retire`",
                    subject_of(&previous)
                ),
            });
        }
        _ => {}
    }
    let (cert, key) = current.to_pem();
    save_pair(
        &dir.join(PREVIOUS_CA_CERT),
        &cert,
        &dir.join(PREVIOUS_CA_KEY),
        &key,
    )?;
    let next =
        BuiltinCa::generate(&ca_common_name(now, true), now).map_err(|source| StartError::Pki {
            path: dir.join(CA_CERT),
            source,
        })?;
    let (cert, key) = next.to_pem();
    save_pair(&dir.join(CA_CERT), &cert, &dir.join(CA_KEY), &key)?;
    // The next start issues the registration certificate of the new CA.
    for name in [REGISTER_CERT, REGISTER_KEY] {
        remove_if_present(&dir.join(name))?;
    }
    tracing::info!(active = %subject_of(&next), previous = %subject_of(&current), "CA rotation started");
    Ok(RotationReport {
        active: subject_of(&next),
        previous: Some(subject_of(&current)),
    })
}

/// Ends a CA rotation in `dir`: the previous CA is deleted, so certificates it
/// signed (devices that did not renew, the old registration certificate) are
/// refused from the next start, and the server's TLS certificate is reissued by
/// the new CA.
pub fn retire_ca(dir: &Path) -> Result<RotationReport, StartError> {
    use pki_files::*;
    let Some(current) = load_ca(dir, CA_CERT, CA_KEY)? else {
        return Err(StartError::CaRotation {
            reason: format!("{} holds no CA", dir.display()),
        });
    };
    if load_ca(dir, PREVIOUS_CA_CERT, PREVIOUS_CA_KEY)?.is_none() {
        return Err(StartError::CaRotation {
            reason: "no rotation is under way: there is no previous CA to retire".to_owned(),
        });
    }
    for name in [PREVIOUS_CA_KEY, PREVIOUS_CA_CERT] {
        remove_if_present(&dir.join(name))?;
    }
    tracing::info!(active = %subject_of(&current), "previous CA retired");
    Ok(RotationReport {
        active: subject_of(&current),
        previous: None,
    })
}

/// The CAs in `dir`, without changing anything.
pub fn ca_status(dir: &Path) -> Result<RotationReport, StartError> {
    use pki_files::*;
    let Some(current) = load_ca(dir, CA_CERT, CA_KEY)? else {
        return Err(StartError::CaRotation {
            reason: format!(
                "{} holds no CA yet (it is created at the first start)",
                dir.display()
            ),
        });
    };
    Ok(RotationReport {
        active: subject_of(&current),
        previous: load_ca(dir, PREVIOUS_CA_CERT, PREVIOUS_CA_KEY)?
            .filter(|previous| previous.certificate_der() != current.certificate_der())
            .map(|previous| subject_of(&previous)),
    })
}

fn remove_if_present(path: &Path) -> Result<(), StartError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StartError::PkiFile {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pki_is_created_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = load_or_create_pki(dir.path(), &hosts, now)
            .await
            .expect("created");
        let second = load_or_create_pki(dir.path(), &hosts, now)
            .await
            .expect("reused");
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.server_certificate_pem, second.server_certificate_pem);
        assert_eq!(first.registration_key_pem, second.registration_key_pem);
        // A server certificate close to expiry is reissued, the CA kept.
        let later = now + SERVER_CERT_LIFETIME - time::Duration::days(1);
        let third = load_or_create_pki(dir.path(), &hosts, later)
            .await
            .expect("renewed");
        assert_eq!(first.ca_pem, third.ca_pem);
        assert_ne!(first.server_certificate_pem, third.server_certificate_pem);
    }

    #[tokio::test]
    async fn rotation_keeps_the_server_certificate_then_moves_it_at_retirement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = OffsetDateTime::now_utc();
        let hosts = vec!["localhost".to_owned()];
        let before = load_or_create_pki(dir.path(), &hosts, now)
            .await
            .expect("created");
        assert!(matches!(
            retire_ca(dir.path()),
            Err(StartError::CaRotation { .. })
        ));

        let report = rotate_ca(dir.path(), now).await.expect("rotated");
        assert!(report.previous.is_some());
        assert!(matches!(
            rotate_ca(dir.path(), now).await,
            Err(StartError::CaRotation { .. })
        ));
        let during = load_or_create_pki(dir.path(), &hosts, now)
            .await
            .expect("loaded");
        assert_ne!(during.ca.certificate_der(), before.ca.certificate_der());
        let previous = during.previous_ca.as_ref().expect("previous kept");
        assert_eq!(previous.certificate_der(), before.ca.certificate_der());
        // Devices trusting only the old CA still verify the server.
        assert_eq!(during.server_certificate_pem, before.server_certificate_pem);
        assert!(issued_by(&during.registration_certificate_pem, &during.ca));
        assert!(during.ca_pem.starts_with(&during.ca.chain_pem()));
        assert!(during.ca_pem.ends_with(&before.ca.chain_pem()));

        let retired = retire_ca(dir.path()).expect("retired");
        assert_eq!(retired.previous, None);
        let after = load_or_create_pki(dir.path(), &hosts, now)
            .await
            .expect("loaded");
        assert!(after.previous_ca.is_none());
        assert!(issued_by(&after.server_certificate_pem, &after.ca));
        assert_eq!(after.ca_pem, after.ca.chain_pem());
    }
}
