//! The CSR policy against requests made by openssl with odd keys and extensions.
// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use flotta_core::pki::{
    BuiltinCa, CsrError, CsrPolicy, DeviceIdentity, DeviceKey, KeyKind, MAX_CSR_BYTES, verify_csr,
};
use futures::executor::block_on;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki_support::{Scratch, openssl_csr};

const EC_P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

#[test]
fn key_types_and_sizes() {
    let s = Scratch::new("keys");
    let cases: &[(&str, &[&str], Result<KeyKind, &str>)] = &[
        ("p256", EC_P256, Ok(KeyKind::EcdsaP256)),
        (
            "p384",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Ok(KeyKind::EcdsaP384),
        ),
        (
            "rsa2048",
            &["-newkey", "rsa:2048"],
            Ok(KeyKind::Rsa { bits: 2048 }),
        ),
        ("rsa1024", &["-newkey", "rsa:1024"], Err("RsaKeyTooSmall")),
        (
            "p521",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            Err("UnsupportedCurve"),
        ),
        (
            "ed25519",
            &["-newkey", "ed25519"],
            Err("UnsupportedKeyAlgorithm"),
        ),
    ];
    for (name, key_args, expected) in cases {
        let csr = openssl_csr(&s, name, key_args, &[]);
        let got = verify_csr(&csr);
        match (expected, &got) {
            (Ok(kind), Ok(verified)) => assert_eq!(verified.key_kind(), *kind, "{name}"),
            (
                Err("RsaKeyTooSmall"),
                Err(CsrError::RsaKeyTooSmall {
                    bits: 1024,
                    min: 2048,
                }),
            ) => {}
            (Err("UnsupportedCurve"), Err(CsrError::UnsupportedCurve { curve })) => {
                assert_eq!(curve, "1.3.132.0.35", "{name}");
            }
            (Err("UnsupportedKeyAlgorithm"), Err(CsrError::UnsupportedKeyAlgorithm { oid })) => {
                assert_eq!(oid, "1.3.101.112", "{name}");
            }
            _ => panic!("{name}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn bad_signature_is_refused() {
    let key = DeviceKey::generate().unwrap();
    let mut der = key.csr("edge-aaaa").unwrap().der().to_vec();
    // Change the requested CN after signing: the signature no longer covers the body.
    let at = der
        .windows(9)
        .position(|w| w == b"edge-aaaa")
        .expect("CN in the CSR");
    der[at + 5] = b'b';
    assert!(matches!(verify_csr(&der), Err(CsrError::BadSignature)));
}

#[test]
fn requested_ca_and_sans_are_ignored() {
    let s = Scratch::new("ignored");
    let csr = openssl_csr(
        &s,
        "greedy",
        EC_P256,
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-addext",
            "subjectAltName=DNS:evil.example,IP:10.0.0.1",
        ],
    );
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("policy CA", now).unwrap();
    let device = DeviceIdentity::new("edge-7", "plant-3").unwrap();
    let issued = block_on(CsrPolicy::default().issue(&ca, &csr, &device, now)).unwrap();
    let (_, cert) = X509Certificate::from_der(issued.der()).unwrap();
    assert!(!cert.is_ca(), "requested CA:TRUE must not be honoured");
    assert!(
        cert.subject_alternative_name().unwrap().is_none(),
        "requested SANs must be dropped"
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    let ou: Vec<_> = cert
        .subject()
        .iter_organizational_unit()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["edge-7"]);
    assert_eq!(ou, ["plant-3"]);
    assert_eq!(cert.subject().iter_organization().count(), 0);
    // NotBefore one hour back, 90 days of life.
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert_eq!(nb, now.unix_timestamp() - 3600);
    assert_eq!(na, now.unix_timestamp() + 90 * 86400);
    // Serial: positive, 128 random bits.
    let serial = cert.raw_serial();
    let significant = serial.iter().skip_while(|b| **b == 0).count();
    assert_eq!(significant, 16);
    assert_eq!(cert.tbs_certificate.serial.bits(), 128);
}

#[test]
fn unknown_critical_extension_is_refused_and_noncritical_ignored() {
    let s = Scratch::new("unknown-ext");
    let critical = openssl_csr(
        &s,
        "crit",
        EC_P256,
        &["-addext", "1.2.3.4.5=critical,DER:05:00"],
    );
    match verify_csr(&critical) {
        Err(CsrError::UnknownCriticalExtension { oid }) => assert_eq!(oid, "1.2.3.4.5"),
        other => panic!("expected UnknownCriticalExtension, got {other:?}"),
    }
    let plain = openssl_csr(&s, "plain", EC_P256, &["-addext", "1.2.3.4.5=DER:05:00"]);
    assert!(verify_csr(&plain).is_ok());
}

#[test]
fn malformed_inputs_get_their_named_errors() {
    let key = DeviceKey::generate().unwrap();
    let pem = key.csr("edge-1").unwrap().pem();
    let truncated = &pem.as_bytes()[..pem.len() / 2];
    assert!(matches!(verify_csr(truncated), Err(CsrError::MalformedPem)));
    let wrong_label = pem.replace("CERTIFICATE REQUEST", "CERTIFICATE");
    assert!(matches!(
        verify_csr(wrong_label.as_bytes()),
        Err(CsrError::MalformedPem)
    ));
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    assert!(matches!(
        verify_csr(&garbage),
        Err(CsrError::MalformedDer(_))
    ));
    let der = key.csr("edge-1").unwrap().der().to_vec();
    assert!(matches!(
        verify_csr(&der[..der.len() - 3]),
        Err(CsrError::MalformedDer(_))
    ));
    let huge = vec![b'A'; 1024 * 1024];
    assert!(matches!(
        verify_csr(&huge),
        Err(CsrError::TooLarge {
            len: 1_048_576,
            max: MAX_CSR_BYTES
        })
    ));
    assert!(matches!(verify_csr(b""), Err(CsrError::Empty)));
    assert!(matches!(verify_csr(b" \n"), Err(CsrError::Empty)));
}

#[test]
fn openssl_rsa_2048_csr_issues_a_certificate() {
    let s = Scratch::new("rsa-issue");
    let csr = openssl_csr(&s, "rsa", &["-newkey", "rsa:2048"], &[]);
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("policy CA", now).unwrap();
    let device = DeviceIdentity::new("rsa-device", "default").unwrap();
    let issued = block_on(CsrPolicy::default().issue(&ca, &csr, &device, now)).unwrap();
    let (_, cert) = X509Certificate::from_der(issued.der()).unwrap();
    let expected = verify_csr(&csr).unwrap();
    assert_eq!(cert.public_key().raw, expected.subject_public_key_info());
}
