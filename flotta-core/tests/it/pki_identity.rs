//! Peer identity from certificates: issuers, revocation, time and purpose.
// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use flotta_core::enrolment::{
    Approval, DeviceRecord, Directive, EdgeStatus, Effect, authenticate, decide,
};
use flotta_core::pki::{
    BuiltinCa, CertificateError, CsrPolicy, DeviceIdentity, DeviceKey, IdentityError,
    IssuedCertificate, PeerIdentity, PeerVerifier, Purpose, RenewalAction, RenewalPolicy,
    RevocationList, issue_registration_certificate, issue_server_certificate,
};
use futures::executor::block_on;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-06-01 08:00 UTC);

fn device_cert(
    ca: &BuiltinCa,
    id: &str,
    issued_at: OffsetDateTime,
    lifetime: Duration,
) -> IssuedCertificate {
    let key = DeviceKey::generate().unwrap();
    let policy = CsrPolicy {
        device_lifetime: lifetime,
        ..CsrPolicy::default()
    };
    let device = DeviceIdentity::new(id, "fleet-a").unwrap();
    block_on(policy.issue(
        ca,
        key.csr(id).unwrap().pem().as_bytes(),
        &device,
        issued_at,
    ))
    .unwrap()
}

fn edge(id: &str) -> PeerIdentity {
    PeerIdentity::Device {
        id: id.into(),
        namespace: "fleet-a".into(),
    }
}

struct Fleet {
    ca: BuiltinCa,
    verifier: PeerVerifier,
}

fn fleet() -> Fleet {
    let ca = BuiltinCa::generate("fleet CA", T0 - Duration::days(365)).unwrap();
    let verifier = PeerVerifier::from_authority(&ca).unwrap();
    Fleet { ca, verifier }
}

#[test]
fn device_and_registration_certificates_are_told_apart() {
    let f = fleet();
    let none = RevocationList::new();
    let dev = device_cert(&f.ca, "edge-1", T0, Duration::days(90));
    let reg = block_on(issue_registration_certificate(
        &f.ca,
        T0,
        Duration::days(365),
    ))
    .unwrap();
    assert_eq!(
        f.verifier
            .identify(&[dev.der()], &none, T0, Purpose::Request)
            .unwrap(),
        edge("edge-1")
    );
    assert_eq!(
        f.verifier
            .identify(&[reg.certificate.der()], &none, T0, Purpose::Request)
            .unwrap(),
        PeerIdentity::Register
    );
}

#[test]
fn foreign_ca_is_unknown_issuer_even_with_the_same_names() {
    let f = fleet();
    let foreign = BuiltinCa::generate("fleet CA", T0 - Duration::days(1)).unwrap();
    let none = RevocationList::new();
    let dev = device_cert(&foreign, "edge-1", T0, Duration::days(90));
    let reg = block_on(issue_registration_certificate(
        &foreign,
        T0,
        Duration::days(365),
    ))
    .unwrap();
    for der in [dev.der(), reg.certificate.der()] {
        assert!(matches!(
            f.verifier.identify(&[der], &none, T0, Purpose::Request),
            Err(IdentityError::UnknownIssuer)
        ));
        assert!(matches!(
            f.verifier
                .identify(&[der], &none, T0, Purpose::Registration),
            Err(IdentityError::UnknownIssuer)
        ));
    }
}

#[test]
fn server_certificate_is_not_a_client_identity() {
    let f = fleet();
    let server = block_on(issue_server_certificate(
        &f.ca,
        &["edge-api.local"],
        T0,
        Duration::days(30),
    ))
    .unwrap();
    assert!(matches!(
        f.verifier.identify(
            &[server.certificate.der()],
            &RevocationList::new(),
            T0,
            Purpose::Request
        ),
        Err(IdentityError::Malformed { .. })
    ));
}

#[test]
fn revoked_serial_is_refused_for_every_purpose() {
    let f = fleet();
    let dev = device_cert(&f.ca, "edge-1", T0, Duration::days(90));
    let other = device_cert(&f.ca, "edge-2", T0, Duration::days(90));
    let revoked: RevocationList = [dev.serial().clone()].into_iter().collect();
    for purpose in [Purpose::Request, Purpose::Registration] {
        match f.verifier.identify(&[dev.der()], &revoked, T0, purpose) {
            Err(IdentityError::Revoked { serial, .. }) => assert_eq!(&serial, dev.serial()),
            other => panic!("expected Revoked, got {other:?}"),
        }
    }
    assert_eq!(
        f.verifier
            .identify(&[other.der()], &revoked, T0, Purpose::Request)
            .unwrap(),
        edge("edge-2")
    );
    // Expired and revoked: revocation wins, also for registration.
    let later = T0 + Duration::days(200);
    assert!(matches!(
        f.verifier
            .identify(&[dev.der()], &revoked, later, Purpose::Registration),
        Err(IdentityError::Revoked { .. })
    ));
}

#[test]
fn expiry_not_yet_valid_and_the_registration_exception() {
    let f = fleet();
    let none = RevocationList::new();
    let dev = device_cert(&f.ca, "edge-1", T0, Duration::days(90));
    let expiry = T0 + Duration::days(90);
    let after = expiry + Duration::hours(1);
    assert!(matches!(
        f.verifier.identify(&[dev.der()], &none, after, Purpose::Request),
        Err(IdentityError::Expired { not_after, .. }) if not_after == expiry
    ));
    assert_eq!(
        f.verifier
            .identify(&[dev.der()], &none, after, Purpose::Registration)
            .unwrap(),
        edge("edge-1")
    );
    // NotBefore is one hour before issuance.
    let before = T0 - Duration::hours(2);
    assert!(matches!(
        f.verifier.identify(&[dev.der()], &none, before, Purpose::Registration),
        Err(IdentityError::NotYetValid { not_before, .. }) if not_before == T0 - Duration::hours(1)
    ));
    assert!(
        f.verifier
            .identify(
                &[dev.der()],
                &none,
                T0 - Duration::minutes(30),
                Purpose::Request
            )
            .is_ok()
    );
    // The registration certificate gets no expiry exception.
    let reg = block_on(issue_registration_certificate(
        &f.ca,
        T0,
        Duration::days(10),
    ))
    .unwrap();
    assert!(matches!(
        f.verifier.identify(
            &[reg.certificate.der()],
            &none,
            T0 + Duration::days(11),
            Purpose::Registration
        ),
        Err(IdentityError::Expired { .. })
    ));
}

#[test]
fn clock_skew_allowance_on_both_bounds() {
    let f = fleet();
    let none = RevocationList::new();
    let dev = device_cert(&f.ca, "edge-1", T0, Duration::days(1));
    let not_before = T0 - Duration::hours(1);
    let not_after = T0 + Duration::days(1);
    let v = f.verifier.clone().with_clock_skew(Duration::minutes(10));
    let id = |now| v.identify(&[dev.der()], &none, now, Purpose::Request);
    assert!(id(not_before - Duration::minutes(9)).is_ok());
    assert!(matches!(
        id(not_before - Duration::minutes(11)),
        Err(IdentityError::NotYetValid { .. })
    ));
    assert!(id(not_after + Duration::minutes(9)).is_ok());
    assert!(matches!(
        id(not_after + Duration::minutes(11)),
        Err(IdentityError::Expired { .. })
    ));
    let strict = f.verifier.clone().with_clock_skew(Duration::ZERO);
    assert!(matches!(
        strict.identify(
            &[dev.der()],
            &none,
            not_after + Duration::seconds(1),
            Purpose::Request
        ),
        Err(IdentityError::Expired { .. })
    ));
    assert_eq!(f.verifier.clock_skew(), Duration::minutes(5));
}

#[test]
fn malformed_and_missing_certificates() {
    let f = fleet();
    let none = RevocationList::new();
    let empty: [&[u8]; 0] = [];
    assert!(matches!(
        f.verifier.identify(&empty, &none, T0, Purpose::Request),
        Err(IdentityError::NoCertificate)
    ));
    let dev = device_cert(&f.ca, "edge-1", T0, Duration::days(1));
    let der = dev.der();
    for bad in [&der[..der.len() / 2], b"garbage".as_slice(), &[]] {
        assert!(matches!(
            f.verifier.identify(&[bad], &none, T0, Purpose::Request),
            Err(IdentityError::Malformed { .. })
        ));
    }
    let mut trailing = der.to_vec();
    trailing.push(0);
    assert!(matches!(
        f.verifier
            .identify(&[trailing], &none, T0, Purpose::Request),
        Err(IdentityError::Malformed { .. })
    ));
    let huge = vec![0x30u8; 1 << 20];
    assert!(matches!(
        f.verifier.identify(&[huge], &none, T0, Purpose::Request),
        Err(IdentityError::Malformed { .. })
    ));
}

#[test]
fn authenticate_then_decide_end_to_end() {
    let f = fleet();
    let none = RevocationList::new();
    let dev = device_cert(&f.ca, "edge-1", T0, Duration::days(1));
    let expired_at = T0 + Duration::days(3);
    let hb = authenticate(
        &f.verifier,
        &[dev.der()],
        &none,
        expired_at,
        Some(Directive::Heartbeat),
    );
    let d = decide(
        hb.as_ref(),
        Some(Directive::Heartbeat),
        "edge-1",
        DeviceRecord::Registered,
        Approval::Manual,
    );
    assert_eq!(d.status, EdgeStatus::Unauthorized);
    let reg = authenticate(
        &f.verifier,
        &[dev.der()],
        &none,
        expired_at,
        Some(Directive::Registration),
    );
    let d = decide(
        reg.as_ref(),
        Some(Directive::Registration),
        "edge-1",
        DeviceRecord::Registered,
        Approval::Manual,
    );
    assert_eq!((d.status, d.effect), (EdgeStatus::Ok, Effect::SignCsr));
    let d = decide(
        reg.as_ref(),
        Some(Directive::Registration),
        "edge-9",
        DeviceRecord::Registered,
        Approval::Manual,
    );
    assert_eq!(d.status, EdgeStatus::Forbidden);
}

#[test]
fn renewal_points_from_real_certificates() {
    let f = fleet();
    let dev = device_cert(&f.ca, "edge-1", T0, Duration::days(90));
    let policy = RenewalPolicy::default();
    // Lifetime runs from NotBefore (T0 - 1 h) to T0 + 90 d.
    let lifetime = Duration::days(90) + Duration::hours(1);
    let renew_at = T0 - Duration::hours(1) + lifetime * 2 / 3;
    assert_eq!(
        policy.decide(dev.der(), T0).unwrap(),
        RenewalAction::Valid { renew_at }
    );
    assert_eq!(
        policy.decide(dev.pem().as_bytes(), renew_at).unwrap(),
        RenewalAction::RenewNow
    );
    assert_eq!(
        policy.decide(dev.der(), T0 + Duration::days(90)).unwrap(),
        RenewalAction::ExpiredReRegister
    );
    let half = RenewalPolicy::at_fraction(1, 2);
    assert_eq!(
        half.decide(dev.der(), T0).unwrap(),
        RenewalAction::Valid {
            renew_at: T0 - Duration::hours(1) + lifetime / 2
        }
    );
    let error = policy
        .decide(b"not a certificate", T0)
        .expect_err("not a certificate");
    assert!(
        matches!(error, CertificateError::MalformedDer(_)),
        "{error:?}"
    );
}

#[test]
fn verified_peer_rechecks_time_and_revocation_without_reparsing() {
    let f = fleet();
    let dev = device_cert(&f.ca, "edge-1", T0, Duration::days(1));
    let peer = f.verifier.verify_peer(&[dev.der()]).unwrap();
    assert_eq!(peer.identity(), &edge("edge-1"));
    assert_eq!(peer.serial(), dev.serial());
    assert_eq!(peer.not_after(), T0 + Duration::days(1));
    let mut revoked = RevocationList::new();
    assert_eq!(
        peer.check(&revoked, T0, Purpose::Request).unwrap(),
        edge("edge-1")
    );
    let later = T0 + Duration::days(2);
    assert!(matches!(
        peer.check(&revoked, later, Purpose::Request),
        Err(IdentityError::Expired { .. })
    ));
    assert!(peer.check(&revoked, later, Purpose::Registration).is_ok());
    revoked.revoke(dev.serial().clone());
    assert!(matches!(
        peer.check(&revoked, T0, Purpose::Request),
        Err(IdentityError::Revoked { .. })
    ));
    // The same answers as the one-shot path.
    for (now, purpose) in [(T0, Purpose::Request), (later, Purpose::Registration)] {
        assert_eq!(
            peer.check(&revoked, now, purpose).is_ok(),
            f.verifier
                .identify(&[dev.der()], &revoked, now, purpose)
                .is_ok()
        );
    }
}
