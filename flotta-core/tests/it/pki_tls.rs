//! Real TLS 1.3 handshakes between rustls client and server, in memory.
// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use futures::executor::block_on;
use std::sync::Arc;

use flotta_core::pki::tls::ChainOnlyClientVerifier;
use flotta_core::pki::{
    BuiltinCa, CertificateAuthority, CsrPolicy, DeviceIdentity, DeviceKey, IdentityError,
    PeerIdentity, PeerVerifier, Purpose, RevocationList, issue_registration_certificate,
    issue_server_certificate,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use time::{Duration, OffsetDateTime};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

struct Pki {
    ca: BuiltinCa,
    server_config: Arc<ServerConfig>,
    roots: Arc<RootCertStore>,
}

fn pki(verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>, ca: BuiltinCa) -> Pki {
    let now = OffsetDateTime::now_utc();
    let server = block_on(issue_server_certificate(
        &ca,
        &["localhost", "127.0.0.1"],
        now,
        Duration::days(30),
    ))
    .unwrap();
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server.certificate.der().to_vec())],
            PrivateKeyDer::from_pem_slice(server.key_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    let mut roots = RootCertStore::empty();
    for der in ca.chain_der() {
        roots.add(CertificateDer::from(der)).unwrap();
    }
    Pki {
        ca,
        server_config: Arc::new(server_config),
        roots: Arc::new(roots),
    }
}

fn chain_only_pki() -> Pki {
    let ca = BuiltinCa::generate("tls CA", OffsetDateTime::now_utc()).unwrap();
    let verifier =
        ChainOnlyClientVerifier::new(PeerVerifier::from_authority(&ca).unwrap(), &provider());
    pki(verifier, ca)
}

/// Runs a handshake; returns the client certificate chain the server saw.
fn handshake(p: &Pki, cert_der: &[u8], key_pem: &str) -> Result<Vec<Vec<u8>>, rustls::Error> {
    let client_config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(p.roots.clone())
        .with_client_auth_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let mut client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(p.server_config.clone()).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
        }
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            // Application data proves the session keys agree.
            use std::io::{Read, Write};
            client.writer().write_all(b"ping").unwrap();
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut got = [0u8; 4];
            server.reader().read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            let peer = server.peer_certificates().expect("client certificate");
            return Ok(peer.iter().map(|c| c.to_vec()).collect());
        }
    }
    panic!("handshake did not finish");
}

fn device(
    ca: &BuiltinCa,
    id: &str,
    issued_at: OffsetDateTime,
    lifetime: Duration,
) -> (Vec<u8>, String) {
    let key = DeviceKey::generate().unwrap();
    let policy = CsrPolicy {
        device_lifetime: lifetime,
        ..CsrPolicy::default()
    };
    let issued = block_on(policy.issue(
        ca,
        key.csr(id).unwrap().der(),
        &DeviceIdentity::new(id, "fleet-a").unwrap(),
        issued_at,
    ))
    .unwrap();
    (issued.der().to_vec(), key.to_pem())
}

#[test]
fn device_and_registration_certificates_complete_mtls() {
    let p = chain_only_pki();
    let now = OffsetDateTime::now_utc();
    let verifier = PeerVerifier::from_authority(&p.ca).unwrap();
    let none = RevocationList::new();

    let (der, key) = device(&p.ca, "edge-1", now, Duration::days(90));
    let chain = handshake(&p, &der, &key).unwrap();
    assert_eq!(
        verifier
            .identify(&chain, &none, now, Purpose::Request)
            .unwrap(),
        PeerIdentity::Device {
            id: "edge-1".into(),
            namespace: "fleet-a".into()
        }
    );

    let reg = block_on(issue_registration_certificate(
        &p.ca,
        now,
        Duration::days(365),
    ))
    .unwrap();
    let chain = handshake(&p, reg.certificate.der(), reg.key_pem()).unwrap();
    assert_eq!(
        verifier
            .identify(&chain, &none, now, Purpose::Request)
            .unwrap(),
        PeerIdentity::Register
    );
}

#[test]
fn foreign_ca_client_is_refused_at_the_handshake() {
    let p = chain_only_pki();
    let now = OffsetDateTime::now_utc();
    let foreign = BuiltinCa::generate("tls CA", now).unwrap();
    let reg = block_on(issue_registration_certificate(
        &foreign,
        now,
        Duration::days(1),
    ))
    .unwrap();
    let err = handshake(&p, reg.certificate.der(), reg.key_pem()).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    );
}

#[test]
fn client_key_must_match_its_certificate() {
    let p = chain_only_pki();
    let now = OffsetDateTime::now_utc();
    let (der, _) = device(&p.ca, "edge-1", now, Duration::days(1));
    let (_, other_key) = device(&p.ca, "edge-2", now, Duration::days(1));
    // rustls refuses, on the client side, a key that does not match the certificate.
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(p.roots.clone())
        .with_client_auth_cert(
            vec![CertificateDer::from(der)],
            PrivateKeyDer::from_pem_slice(other_key.as_bytes()).unwrap(),
        );
    assert!(
        matches!(client, Err(rustls::Error::InconsistentKeys(_))),
        "{client:?}"
    );
}

#[test]
fn expired_device_passes_the_handshake_and_only_registers() {
    let p = chain_only_pki();
    let now = OffsetDateTime::now_utc();
    let (der, key) = device(
        &p.ca,
        "edge-1",
        now - Duration::days(100),
        Duration::days(90),
    );
    let chain = handshake(&p, &der, &key).unwrap();
    let verifier = PeerVerifier::from_authority(&p.ca).unwrap();
    let none = RevocationList::new();
    assert!(matches!(
        verifier.identify(&chain, &none, now, Purpose::Request),
        Err(IdentityError::Expired { .. })
    ));
    assert_eq!(
        verifier
            .identify(&chain, &none, now, Purpose::Registration)
            .unwrap(),
        PeerIdentity::Device {
            id: "edge-1".into(),
            namespace: "fleet-a".into()
        }
    );
}

#[test]
fn stock_webpki_verifier_accepts_our_certificates_but_not_expired_ones() {
    let ca = BuiltinCa::generate("tls CA", OffsetDateTime::now_utc()).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.certificate_der().to_vec()))
        .unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let p = pki(verifier, ca);
    let now = OffsetDateTime::now_utc();
    let (der, key) = device(&p.ca, "edge-1", now, Duration::days(90));
    assert!(handshake(&p, &der, &key).is_ok());
    let reg = block_on(issue_registration_certificate(
        &p.ca,
        now,
        Duration::days(1),
    ))
    .unwrap();
    assert!(handshake(&p, reg.certificate.der(), reg.key_pem()).is_ok());
    let (old, old_key) = device(
        &p.ca,
        "edge-1",
        now - Duration::days(100),
        Duration::days(90),
    );
    assert!(matches!(
        handshake(&p, &old, &old_key),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
        ))
    ));
}
