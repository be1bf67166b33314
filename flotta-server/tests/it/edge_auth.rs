//! Edge API answers beyond the status table (which `auth_matrix.rs` checks against
//! core's table): revocation, unknown devices, bad bodies.

use flotta_core::pki::DeviceKey;
use flotta_server::edge::EdgeOptions;
use flotta_server::store::ResourceKind;
use serde_json::{Value, json};

use crate::edge_support::{
    ClientIdentity, EdgeServer, NAMESPACE, envelope, heartbeat_message, registration_message,
};

struct Identities {
    revoked: Option<ClientIdentity>,
    valid: Option<ClientIdentity>,
}

const DEVICE: &str = "device-a";

/// A server where `device-a` is registered; the revoked identity belongs to
/// `device-a` too: a second certificate of a device that was deleted and registered
/// again is the only way a device's own certificate gets revoked.
async fn setup() -> (EdgeServer, Identities) {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    // Register, delete (which revokes the certificate), then register again.
    let revoked = server.enrol_and_register(DEVICE).await;
    server
        .store
        .delete(ResourceKind::EdgeDevice, NAMESPACE, DEVICE, None)
        .await
        .expect("delete");
    let serial = flotta_core::pki::PeerCertificate::parse(revoked.certificate_pem.as_bytes())
        .expect("parse")
        .serial;
    // The revocation list follows the store's watch.
    flotta_testing::eventually("deletion to revoke the certificate", || async {
        server.state.is_revoked(&serial).then_some(())
    })
    .await;
    let valid = server.enrol_and_register(DEVICE).await;
    let identities = Identities {
        revoked: Some(revoked),
        valid: Some(valid),
    };
    (server, identities)
}

#[tokio::test]
async fn revoked_certificate_is_refused_and_told_why_and_a_gone_device_to_disconnect() {
    let (server, ids) = setup().await;
    // A revoked certificate of a device registered again was superseded: refused
    // everywhere, the control channel included, and told why.
    let response = server
        .get(ids.revoked.as_ref(), &format!("/control/{DEVICE}/in"))
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["reason"],
        flotta_core::enrolment::Reason::CertificateRevoked.as_str()
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("revoked")),
        "{body}"
    );

    // Nothing to do: an empty 200, as Flotta answers (yggdrasil cannot parse a
    // command message without content).
    let response = server
        .get(ids.valid.as_ref(), &format!("/control/{DEVICE}/in"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body").len(), 0);

    // A valid certificate of a device deleted from the store meanwhile.
    let gone = server.device_identity("gone-device", NAMESPACE);
    let response = server.get(Some(&gone), "/control/gone-device/in").await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["content"]["command"], "disconnect");
    server.stop().await;
}

#[tokio::test]
async fn unknown_devices_get_404() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let unknown = server.device_identity("unknown-device", NAMESPACE);
    let out = "/data/unknown-device/out";
    let response = server
        .post(Some(&unknown), out, &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 404);
    let response = server.get(Some(&unknown), "/data/unknown-device/in").await;
    assert_eq!(response.status(), 404);
    let response = server
        .post(
            Some(&unknown),
            "/control/unknown-device/out",
            &envelope("ack", json!({})),
        )
        .await;
    assert_eq!(response.status(), 404);
    let registration = server.registration_identity();
    let key = DeviceKey::generate().expect("key");
    let csr = key.csr("unknown-device").expect("csr").pem();
    let response = server
        .post(Some(&registration), out, &registration_message(Some(&csr)))
        .await;
    assert_eq!(response.status(), 404, "never enrolled");
    let response = server
        .post(Some(&unknown), out, &registration_message(Some(&csr)))
        .await;
    assert_eq!(
        response.status(),
        404,
        "a device certificate of a device that does not exist"
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let device = server.enrol_and_register("body-device").await;
    let client = server.client(Some(&device));
    let url = server.url("/data/body-device/out");

    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"directive\": \"heartbeat\", ")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("malformed JSON")),
        "{body}"
    );

    let wrong_type = envelope("heartbeat", json!({"workloads": "none"}));
    let response = server
        .post(Some(&device), "/data/body-device/out", &wrong_type)
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("content.workloads")),
        "{body}"
    );

    let no_directive = json!({"type": "data", "content": {}});
    let response = server
        .post(Some(&device), "/data/body-device/out", &no_directive)
        .await;
    assert_eq!(response.status(), 400);

    let bad_csr = envelope("registration", json!({"certificate_request": "not a CSR"}));
    let response = server
        .post(Some(&device), "/data/body-device/out", &bad_csr)
        .await;
    assert_eq!(response.status(), 400);

    let big = "x".repeat(1024 * 1024 + 1);
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);

    let response = client
        .get(server.url("/data/body-device/in?wait=soon"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    server.stop().await;
}
