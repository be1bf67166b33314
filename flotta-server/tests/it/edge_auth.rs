//! Every status code of the Edge API, for every kind of client identity.

use std::time::Duration;

use flotta_core::pki::DeviceKey;
use flotta_server::edge::EdgeOptions;
use flotta_server::store::ResourceKind;
use serde_json::{Value, json};

use crate::edge_support::{
    ClientIdentity, EdgeServer, NAMESPACE, enrolment_message, envelope, foreign_identity,
    heartbeat_message, registration_message,
};

struct Identities {
    none: Option<ClientIdentity>,
    foreign: Option<ClientIdentity>,
    registration: Option<ClientIdentity>,
    expired: Option<ClientIdentity>,
    revoked: Option<ClientIdentity>,
    other_device: Option<ClientIdentity>,
    valid: Option<ClientIdentity>,
}

impl Identities {
    fn all(&self) -> [(&'static str, Option<&ClientIdentity>); 7] {
        [
            ("no certificate", self.none.as_ref()),
            ("foreign CA", self.foreign.as_ref()),
            ("registration", self.registration.as_ref()),
            ("expired", self.expired.as_ref()),
            ("revoked", self.revoked.as_ref()),
            ("other device", self.other_device.as_ref()),
            ("valid", self.valid.as_ref()),
        ]
    }
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
    for _ in 0..200 {
        if server.state.is_revoked(&serial) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        server.state.is_revoked(&serial),
        "deletion revokes the certificate"
    );
    let valid = server.enrol_and_register(DEVICE).await;
    let identities = Identities {
        none: None,
        foreign: Some(foreign_identity(DEVICE)),
        registration: Some(server.registration_identity()),
        expired: Some(server.expired_device_identity(DEVICE, NAMESPACE)),
        revoked: Some(revoked),
        other_device: Some(server.device_identity("device-b", NAMESPACE)),
        valid: Some(valid),
    };
    (server, identities)
}

async fn check(
    server: &EdgeServer,
    identities: &Identities,
    what: &str,
    expected: [u16; 7],
    request: impl AsyncFn(Option<&ClientIdentity>) -> reqwest::Response,
) {
    for ((name, identity), want) in identities.all().into_iter().zip(expected) {
        let response = request(identity).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, want, "{what} with {name}: {body}");
        if status == 401 || status == 403 {
            let error: Value = serde_json::from_str(&body).expect("error body is JSON");
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    let _ = server;
}

#[tokio::test]
async fn status_codes_per_identity() {
    let (server, ids) = setup().await;
    let out = format!("/data/{DEVICE}/out");

    check(
        &server,
        &ids,
        "heartbeat",
        [401, 401, 403, 401, 401, 403, 200],
        async |id| server.post(id, &out, &heartbeat_message("up")).await,
    )
    .await;
    check(
        &server,
        &ids,
        "config",
        [401, 401, 403, 401, 401, 403, 200],
        async |id| server.get(id, &format!("/data/{DEVICE}/in")).await,
    )
    .await;
    check(
        &server,
        &ids,
        "enrolment",
        [401, 401, 208, 401, 401, 403, 208],
        async |id| server.post(id, &out, &enrolment_message(NAMESPACE)).await,
    )
    .await;
    check(
        &server,
        &ids,
        "registration",
        [401, 401, 200, 200, 401, 403, 200],
        async |id| {
            let key = DeviceKey::generate().expect("key");
            let csr = key.csr(DEVICE).expect("csr").pem();
            server
                .post(id, &out, &registration_message(Some(&csr)))
                .await
        },
    )
    .await;
    check(
        &server,
        &ids,
        "control in",
        [401, 401, 403, 401, 200, 403, 200],
        async |id| server.get(id, &format!("/control/{DEVICE}/in")).await,
    )
    .await;
    check(
        &server,
        &ids,
        "control out",
        [401, 401, 403, 401, 401, 403, 200],
        async |id| {
            server
                .post(
                    id,
                    &format!("/control/{DEVICE}/out"),
                    &envelope("ack", json!({})),
                )
                .await
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn revoked_certificate_of_a_deleted_device_is_told_to_disconnect() {
    let (server, ids) = setup().await;
    let response = server
        .get(ids.revoked.as_ref(), &format!("/control/{DEVICE}/in"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["type"], "command");
    assert_eq!(body["content"]["command"], "disconnect");

    let response = server
        .get(ids.valid.as_ref(), &format!("/control/{DEVICE}/in"))
        .await;
    let body: Value = response.json().await.expect("json");
    assert_ne!(body["content"]["command"], "disconnect");

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
