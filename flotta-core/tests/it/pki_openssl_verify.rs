//! Certificates we issue, checked by the openssl command line against our CA.
// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use flotta_core::pki::{
    BuiltinCa, CertificateAuthority, CsrPolicy, DeviceIdentity, DeviceKey,
    issue_registration_certificate, issue_server_certificate,
};
use futures::executor::block_on;
use time::{Duration, OffsetDateTime};

use crate::pki_support::{Scratch, openssl};

#[test]
fn issued_certificates_verify_with_openssl() {
    let s = Scratch::new("openssl-verify");
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("flotta test CA", now).unwrap();
    s.write("ca.pem", ca.chain_pem());

    let key = DeviceKey::generate().unwrap();
    let device = DeviceIdentity::new("edge-42", "fleet-a").unwrap();
    let dev = block_on(CsrPolicy::default().issue(
        &ca,
        key.csr("edge-42").unwrap().pem().as_bytes(),
        &device,
        now,
    ))
    .unwrap();
    s.write("device.pem", dev.pem());
    let reg = block_on(issue_registration_certificate(
        &ca,
        now,
        Duration::days(365),
    ))
    .unwrap();
    s.write("register.pem", reg.certificate.pem());
    let server = block_on(issue_server_certificate(
        &ca,
        &["edge-api.example", "127.0.0.1", "::1"],
        now,
        Duration::days(30),
    ))
    .unwrap();
    s.write("server.pem", server.certificate.pem());

    for (file, purpose) in [
        ("device.pem", "sslclient"),
        ("register.pem", "sslclient"),
        ("server.pem", "sslserver"),
    ] {
        let (ok, log) = openssl(
            s.dir(),
            &[
                "verify",
                "-x509_strict",
                "-CAfile",
                "ca.pem",
                "-purpose",
                purpose,
                file,
            ],
        );
        assert!(ok && log.contains(": OK"), "{file}: {log}");
    }
    // A client certificate is not a server certificate and vice versa.
    let (ok, _) = openssl(
        s.dir(),
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "device.pem",
        ],
    );
    assert!(!ok);
    let (ok, _) = openssl(
        s.dir(),
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "server.pem",
        ],
    );
    assert!(!ok);

    // What openssl reads back: subject, SANs, CA flag.
    let (ok, text) = openssl(
        s.dir(),
        &[
            "x509",
            "-in",
            "device.pem",
            "-noout",
            "-subject",
            "-ext",
            "basicConstraints",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("CN = edge-42") && text.contains("OU = fleet-a"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    let (ok, text) = openssl(
        s.dir(),
        &[
            "x509",
            "-in",
            "server.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("DNS:edge-api.example"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    assert!(text.contains("IP Address:0:0:0:0:0:0:0:1"), "{text}");
    let (ok, text) = openssl(
        s.dir(),
        &[
            "x509",
            "-in",
            "ca.pem",
            "-noout",
            "-ext",
            "basicConstraints",
            "-enddate",
            "-startdate",
        ],
    );
    assert!(ok && text.contains("CA:TRUE"), "{text}");
}

#[test]
fn foreign_ca_certificates_fail_openssl_verify() {
    let s = Scratch::new("openssl-foreign");
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("flotta test CA", now).unwrap();
    let foreign = BuiltinCa::generate("flotta test CA", now).unwrap();
    s.write("ca.pem", ca.chain_pem());
    let reg = block_on(issue_registration_certificate(
        &foreign,
        now,
        Duration::days(1),
    ))
    .unwrap();
    s.write("foreign.pem", reg.certificate.pem());
    let (ok, log) = openssl(s.dir(), &["verify", "-CAfile", "ca.pem", "foreign.pem"]);
    assert!(!ok, "{log}");
}

#[test]
fn reloaded_ca_issues_certificates_that_chain_to_the_original() {
    let s = Scratch::new("openssl-reload");
    let now = OffsetDateTime::now_utc();
    let ca = BuiltinCa::generate("flotta test CA", now).unwrap();
    let (cert_pem, key_pem) = ca.to_pem();
    s.write("ca.pem", &cert_pem);
    let reloaded = BuiltinCa::from_pem(&cert_pem, &key_pem).unwrap();
    let reg = block_on(issue_registration_certificate(
        &reloaded,
        now,
        Duration::days(1),
    ))
    .unwrap();
    s.write("register.pem", reg.certificate.pem());
    let (ok, log) = openssl(
        s.dir(),
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "register.pem",
        ],
    );
    assert!(ok, "{log}");
    // openssl reads the CA key we export.
    s.write("ca.key", &key_pem);
    let (ok, log) = openssl(s.dir(), &["pkey", "-in", "ca.key", "-noout", "-text"]);
    assert!(ok && log.contains("P-256"), "{log}");
}
