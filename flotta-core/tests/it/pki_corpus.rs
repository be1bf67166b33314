//! Replays the fuzz seed corpus (`fuzz/corpus/csr`, `fuzz/corpus/certificate`)
//! through the parsers: nothing panics, `valid-*` seeds pass and `invalid-*` seeds
//! fail.
// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use flotta_core::pki::{
    BuiltinCa, CsrError, CsrPolicy, DeviceIdentity, IdentityError, PeerCertificate, PeerVerifier,
    Purpose, RenewalPolicy, RevocationList, verify_csr,
};
use time::OffsetDateTime;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "corpus {target} has too few seeds");
    out
}

#[test]
fn csr_corpus_replays() {
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("corpus CA", now).unwrap();
    let device = DeviceIdentity::new("corpus-device", "default").unwrap();
    for (name, bytes) in seeds("csr") {
        let result = verify_csr(&bytes);
        if name.starts_with("valid-") {
            let csr = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let issued =
                futures::executor::block_on(CsrPolicy::default().sign(&ca, &csr, &device, now))
                    .unwrap();
            let facts = PeerCertificate::parse(issued.der()).unwrap();
            assert_eq!(
                facts.common_name.as_deref(),
                Some("corpus-device"),
                "{name}"
            );
        } else {
            assert!(
                name.starts_with("invalid-"),
                "seed {name} must be valid-* or invalid-*"
            );
            let err = result.expect_err(&name);
            let expected = match name.as_str() {
                "invalid-rsa1024" => matches!(err, CsrError::RsaKeyTooSmall { bits: 1024, .. }),
                "invalid-p521" => matches!(err, CsrError::UnsupportedCurve { .. }),
                "invalid-ed25519" => matches!(err, CsrError::UnsupportedKeyAlgorithm { .. }),
                "invalid-critical-unknown-ext" => {
                    matches!(err, CsrError::UnknownCriticalExtension { .. })
                }
                "invalid-bad-signature" => matches!(err, CsrError::BadSignature),
                "invalid-truncated-pem" => matches!(err, CsrError::MalformedPem),
                _ => matches!(err, CsrError::MalformedDer(_)),
            };
            assert!(expected, "{name}: unexpected error {err:?}");
        }
    }
}

#[test]
fn certificate_corpus_replays() {
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("corpus CA", now).unwrap();
    let verifier = PeerVerifier::from_authority(&ca).unwrap();
    let revoked = RevocationList::new();
    for (name, bytes) in seeds("certificate") {
        let parsed = PeerCertificate::parse(&bytes);
        let renewal = RenewalPolicy::default().decide(&bytes, now);
        assert_eq!(parsed.is_ok(), renewal.is_ok(), "{name}");
        if name.starts_with("valid-") {
            parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            assert!(
                name.starts_with("invalid-"),
                "seed {name} must be valid-* or invalid-*"
            );
            assert!(parsed.is_err(), "{name}");
        }
        // The seeds come from another CA: never an identity here.
        for purpose in [Purpose::Request, Purpose::Registration] {
            let identified = verifier.identify(&[&bytes], &revoked, now, purpose);
            if name.starts_with("valid-") {
                assert!(
                    matches!(identified, Err(IdentityError::UnknownIssuer)),
                    "{name}: {identified:?}"
                );
            } else {
                assert!(
                    matches!(identified, Err(IdentityError::Malformed { .. })),
                    "{name}: {identified:?}"
                );
            }
        }
    }
}
