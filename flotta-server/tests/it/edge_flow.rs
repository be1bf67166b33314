//! Enrolment and registration over real mTLS, in auto and manual approval modes.

use flotta_core::pki::{DeviceKey, PeerCertificate};
use flotta_server::edge::EdgeOptions;
use flotta_server::store::ResourceKind;
use serde_json::Value;

use crate::edge_support::{
    ClientIdentity, EdgeServer, NAMESPACE, common_name, enrolment_message, heartbeat_message,
    registration_message,
};

/// Approves the signed request of `id`, as read in `request`, the way an operator
/// does: `spec.approved` set, plus whatever `edit` changes, written over that version.
async fn approve(
    server: &EdgeServer,
    id: &str,
    request: flotta_server::store::StoredObject,
    edit: impl FnOnce(&mut Value),
) {
    let mut body = request.body;
    body["spec"]["approved"] = Value::Bool(true);
    edit(&mut body);
    server
        .store
        .update(
            ResourceKind::EdgeDeviceSignedRequest,
            "default",
            id,
            Some(request.resource_version),
            body,
        )
        .await
        .expect("approve");
}

#[tokio::test]
async fn auto_approved_device_enrols_registers_and_runs() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let registration = server.registration_identity();
    let id = "auto-device-1";

    let response = server
        .post(
            Some(&registration),
            &format!("/data/{id}/out"),
            &enrolment_message(NAMESPACE),
        )
        .await;
    assert_eq!(
        response.status(),
        208,
        "an auto-approved request is already approved"
    );
    let request = server
        .store
        .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
        .await
        .expect("get")
        .expect("signed request created");
    assert_eq!(request.body["spec"]["approved"], true);
    assert_eq!(request.body["spec"]["targetNamespace"], NAMESPACE);
    assert_eq!(request.body["spec"]["features"]["modelName"], "test-board");

    let device = server.enrol_and_register(id).await;
    assert_eq!(
        common_name(&device),
        (Some(id.to_owned()), Some(NAMESPACE.to_owned()))
    );
    let stored = server.device(id).await.expect("device created");
    assert_eq!(stored.body["status"]["hardware"]["hostname"], "edge-host");
    assert_eq!(
        stored.body["status"]["hardware"]["cpu"]["frequency"],
        "1500"
    );
    let serial = PeerCertificate::parse(device.certificate_pem.as_bytes())
        .expect("certificate")
        .serial
        .to_string();
    let serials = stored.body["metadata"]["annotations"]["flotta-rs.io/certificate-serials"]
        .as_str()
        .expect("serials recorded");
    assert!(serials.split(',').any(|s| s == serial));

    let response = server.get(Some(&device), &format!("/data/{id}/in")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("etag").is_some());
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["directive"], "device");
    assert_eq!(body["type"], "data");
    assert_eq!(body["content"]["device_id"], id);

    let response = server
        .post(
            Some(&device),
            &format!("/data/{id}/out"),
            &heartbeat_message("up"),
        )
        .await;
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn manual_approval_gates_registration() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let registration = server.registration_identity();
    let id = "manual-device-1";
    let path = format!("/data/{id}/out");

    let response = server
        .post(Some(&registration), &path, &enrolment_message(NAMESPACE))
        .await;
    assert_eq!(response.status(), 200, "pending");
    let key = DeviceKey::generate().expect("key");
    let csr = key.csr(id).expect("csr").pem();
    let response = server
        .post(
            Some(&registration),
            &path,
            &registration_message(Some(&csr)),
        )
        .await;
    assert_eq!(response.status(), 404, "not approved yet");
    assert!(server.device(id).await.is_none());

    // An operator approves the request.
    let request = server
        .store
        .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
        .await
        .expect("get")
        .expect("request");
    assert_eq!(request.body["spec"]["approved"], false);
    approve(&server, id, request, |_| {}).await;

    let response = server
        .post(Some(&registration), &path, &enrolment_message(NAMESPACE))
        .await;
    assert_eq!(response.status(), 208, "approved now");
    let response = server
        .post(
            Some(&registration),
            &path,
            &registration_message(Some(&csr)),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["directive"], "registration");
    let certificate = body["content"]["certificate"]
        .as_str()
        .expect("certificate");
    let parsed = PeerCertificate::parse(certificate.as_bytes()).expect("parse");
    assert_eq!(parsed.common_name.as_deref(), Some(id));
    assert_eq!(parsed.organizational_unit.as_deref(), Some(NAMESPACE));
    assert!(server.device(id).await.is_some());
    server.stop().await;
}

#[tokio::test]
async fn expired_certificate_re_registers_and_nothing_else() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let id = "renewing-device";
    let current = server.enrol_and_register(id).await;
    let expired = server.expired_device_identity(id, NAMESPACE);
    let path = format!("/data/{id}/out");

    let response = server
        .post(Some(&expired), &path, &heartbeat_message("up"))
        .await;
    assert_eq!(response.status(), 401);

    let key = DeviceKey::generate().expect("key");
    let csr = key.csr(id).expect("csr").pem();
    let response = server
        .post(Some(&expired), &path, &registration_message(Some(&csr)))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let renewed = body["content"]["certificate"]
        .as_str()
        .expect("certificate");
    let renewed_serial = PeerCertificate::parse(renewed.as_bytes())
        .expect("parse")
        .serial;
    let old_serial = PeerCertificate::parse(current.certificate_pem.as_bytes())
        .expect("parse")
        .serial;
    assert_ne!(renewed_serial, old_serial);
    let stored = server.device(id).await.expect("device");
    let serials = stored.body["metadata"]["annotations"]["flotta-rs.io/certificate-serials"]
        .as_str()
        .expect("serials");
    assert!(serials.contains(&renewed_serial.to_string()));
    assert!(serials.contains(&old_serial.to_string()));
    server.stop().await;
}

#[tokio::test]
async fn enrolment_labels_are_kept_for_the_approver_and_given_to_the_device() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let registration = server.registration_identity();
    let id = "labelled-device-1";
    let path = format!("/data/{id}/out");

    let mut bad = enrolment_message(NAMESPACE);
    bad["content"]["labels"] = serde_json::json!({"site": "not a valid value!"});
    let response = server.post(Some(&registration), &path, &bad).await;
    assert_eq!(response.status(), 400);
    let message = response.text().await.expect("body");
    assert!(message.contains("content.labels.site"), "{message}");
    let mut bad = enrolment_message(NAMESPACE);
    bad["content"]["labels"] = serde_json::json!(["site=lab"]);
    let response = server.post(Some(&registration), &path, &bad).await;
    assert_eq!(response.status(), 400);
    assert!(
        server
            .store
            .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
            .await
            .expect("get")
            .is_none(),
        "a refused enrolment leaves no request"
    );

    let mut enrolment = enrolment_message(NAMESPACE);
    enrolment["content"]["labels"] = serde_json::json!({"site": "lab", "tier": "edge"});
    let response = server.post(Some(&registration), &path, &enrolment).await;
    assert_eq!(response.status(), 200, "pending");
    let request = server
        .store
        .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
        .await
        .expect("get")
        .expect("request");
    assert_eq!(
        request.body["spec"]["labels"],
        serde_json::json!({"site": "lab", "tier": "edge"})
    );

    // The approver changes one label and adds a device set before approving.
    approve(&server, id, request, |body| {
        body["spec"]["labels"]["tier"] = Value::String("core".into());
        body["spec"]["targetSet"] = Value::String("lab-set".into());
    })
    .await;
    let key = DeviceKey::generate().expect("key");
    let csr = key.csr(id).expect("csr").pem();
    let response = server
        .post(
            Some(&registration),
            &path,
            &registration_message(Some(&csr)),
        )
        .await;
    assert_eq!(response.status(), 200);
    let device = server.device(id).await.expect("device created");
    assert_eq!(
        device.body["metadata"]["labels"],
        serde_json::json!({"site": "lab", "tier": "core", "flotta/member-of": "lab-set",
            // From the hardware the registration reported.
            "device.hostname": "edge-host", "device.cpu-architecture": "aarch64"})
    );
    server.stop().await;
}

/// A P-256 key and a CSR for `id` made by the openssl command, as an outsider
/// holding only the fleet's registration key would make them. Returns the CSR PEM.
fn openssl_csr(dir: &std::path::Path, id: &str) -> String {
    let output = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "attacker.key",
            "-out",
            "attacker.csr",
            "-subj",
        ])
        .arg(format!("/CN={id}"))
        .current_dir(dir)
        .output()
        .expect("run openssl (the openssl package is part of the test set-up)");
    assert!(
        output.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(dir.join("attacker.csr")).expect("CSR written")
}

#[tokio::test]
async fn the_registration_certificate_cannot_take_over_a_registered_device() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let id = "victim-device";
    let victim = server.enrol_and_register(id).await;
    let registration = server.registration_identity();
    let scratch = tempfile::tempdir().expect("scratch directory");
    let path = format!("/data/{id}/out");

    // Enrolment says the device is approved; registration is refused, with why.
    let response = server
        .post(Some(&registration), &path, &enrolment_message(NAMESPACE))
        .await;
    assert_eq!(response.status(), 208);
    let csr = openssl_csr(scratch.path(), id);
    let response = server
        .post(
            Some(&registration),
            &path,
            &registration_message(Some(&csr)),
        )
        .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("error body");
    assert_eq!(body["reason"], "AlreadyRegistered", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains(id) && m.contains("own certificate")),
        "{body}"
    );

    // Nothing was issued: the device still has exactly its one certificate, the
    // attacker reads no configuration, and the signed request says what happened.
    let stored = server.device(id).await.expect("device");
    let serials = stored.body["metadata"]["annotations"]["flotta-rs.io/certificate-serials"]
        .as_str()
        .expect("serials");
    assert_eq!(serials.split(',').count(), 1, "{serials}");
    let response = server
        .get(Some(&registration), &format!("/data/{id}/in"))
        .await;
    assert_eq!(response.status(), 403);
    let request = server
        .store
        .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
        .await
        .expect("get")
        .expect("signed request");
    let note = request.body["metadata"]["annotations"]["flotta-rs.io/registration-refused"]
        .as_str()
        .expect("the refusal is noted on the signed request");
    assert!(note.contains("AlreadyRegistered"), "{note}");
    // Another attempt within the minute is refused too, without another write.
    let response = server
        .post(
            Some(&registration),
            &path,
            &registration_message(Some(&csr)),
        )
        .await;
    assert_eq!(response.status(), 403);
    let again = server
        .store
        .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
        .await
        .expect("get")
        .expect("signed request");
    assert_eq!(again.resource_version, request.resource_version);

    // The device itself still renews with its own certificate.
    let key = DeviceKey::generate().expect("key");
    let response = server
        .post(
            Some(&victim),
            &path,
            &registration_message(Some(&key.csr(id).expect("csr").pem())),
        )
        .await;
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_device_comes_back_only_with_a_new_approval() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let registration = server.registration_identity();
    let id = "deleted-then-back";
    let path = format!("/data/{id}/out");
    let register = |csr: String| registration_message(Some(&csr));

    // Enrolled, approved by an operator, registered.
    let response = server
        .post(Some(&registration), &path, &enrolment_message(NAMESPACE))
        .await;
    assert_eq!(response.status(), 200);
    let request = server
        .store
        .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
        .await
        .expect("get")
        .expect("request");
    approve(&server, id, request, |_| {}).await;
    let old = register_as(&server, &registration, id).await;

    // The operator deletes the device: its certificate is refused, and its
    // approval is gone with it.
    server
        .store
        .delete(ResourceKind::EdgeDevice, NAMESPACE, id, None)
        .await
        .expect("delete device");
    let old_serial = PeerCertificate::parse(old.certificate_pem.as_bytes())
        .expect("parse")
        .serial;
    flotta_testing::eventually("the old certificate revoked", || async {
        server.state.is_revoked(&old_serial).then_some(())
    })
    .await;
    // Told, as Flotta tells a device it does not know, that it is gone.
    let status = server
        .get(Some(&old), &format!("/data/{id}/in"))
        .await
        .status();
    assert_eq!(status, 404);
    assert!(
        server
            .store
            .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
            .await
            .expect("get")
            .is_none(),
        "the signed request went with the device"
    );

    // Enrolling again waits for a new approval; registration is refused until then.
    let response = server
        .post(Some(&registration), &path, &enrolment_message(NAMESPACE))
        .await;
    assert_eq!(response.status(), 200, "pending again");
    let key = DeviceKey::generate().expect("key");
    let csr = key.csr(id).expect("csr").pem();
    let response = server
        .post(Some(&registration), &path, &register(csr.clone()))
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "NotApproved", "{body}");
    let request = server
        .store
        .get(ResourceKind::EdgeDeviceSignedRequest, "default", id)
        .await
        .expect("get")
        .expect("a new request");
    assert_eq!(request.body["spec"]["approved"], false);
    approve(&server, id, request, |_| {}).await;
    let response = server
        .post(Some(&registration), &path, &register(csr))
        .await;
    assert_eq!(response.status(), 200);
    let response = server.get(Some(&old), &format!("/data/{id}/in")).await;
    assert_eq!(response.status(), 401, "the old certificate stays revoked");
    server.stop().await;
}

#[tokio::test]
async fn a_renewal_retires_the_superseded_certificate_after_the_grace_window() {
    let grace = std::time::Duration::from_millis(400);
    let server = EdgeServer::start(
        EdgeOptions::default()
            .with_auto_approve(true)
            .with_superseded_grace(grace),
    )
    .await;
    let id = "renewing-twice";
    let config = format!("/data/{id}/in");
    let first = server.enrol_and_register(id).await;

    // Renewal with the current certificate. The server starts the window while
    // it answers, so after `before`.
    let before = std::time::Instant::now();
    let second = register_as(&server, &first, id).await;

    // Both work during the window (requests under way, replicas catching up) ...
    let status = server.get(Some(&first), &config).await.status();
    if before.elapsed() < grace {
        // Answered before `before + grace`, so inside the window.
        assert_eq!(status, 200, "the old certificate within the grace window");
    }
    assert_eq!(server.get(Some(&second), &config).await.status(), 200);
    // ... then only the new one.
    flotta_testing::eventually("the superseded certificate refused", || async {
        (server.get(Some(&first), &config).await.status() == 401).then_some(())
    })
    .await;
    assert!(before.elapsed() >= grace, "refused before the window ended");
    let response = server.get(Some(&first), &config).await;
    let reason = response
        .headers()
        .get(flotta_core::wire::REASON_HEADER)
        .and_then(|v| v.to_str().ok());
    assert_eq!(reason, Some("CertificateRevoked"));
    assert_eq!(server.get(Some(&second), &config).await.status(), 200);

    // The revocation is stored: a restarted server refuses it too.
    let mut server = server;
    server.restart().await;
    assert_eq!(server.get(Some(&first), &config).await.status(), 401);
    assert_eq!(server.get(Some(&second), &config).await.status(), 200);
    server.stop().await;
}

/// Registers `id` as `who` (the registration certificate, or the device's own for a
/// renewal) with a new key; checks the 200 and returns the identity issued.
async fn register_as(
    server: &flotta_testing::TestServer,
    who: &ClientIdentity,
    id: &str,
) -> ClientIdentity {
    let key = DeviceKey::generate().expect("key");
    let response = edge_post(
        server,
        who,
        &format!("/data/{id}/out"),
        &registration_message(Some(&key.csr(id).expect("csr").pem())),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    ClientIdentity {
        certificate_pem: body["content"]["certificate"]
            .as_str()
            .expect("certificate in the registration response")
            .to_owned(),
        key_pem: key.to_pem(),
    }
}

/// The status of a GET of `path` on the Edge API as `who`.
async fn edge_get(server: &flotta_testing::TestServer, who: &ClientIdentity, path: &str) -> u16 {
    server
        .edge_client(Some(who))
        .get(server.edge_url(path))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// The response to a POST of `body` to `path` on the Edge API as `who`.
async fn edge_post(
    server: &flotta_testing::TestServer,
    who: &ClientIdentity,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    server
        .edge_client(Some(who))
        .post(server.edge_url(path))
        .json(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
#[ignore = "needs PostgreSQL (FLOTTA_TEST_POSTGRES_URL)"]
async fn revocations_and_denials_survive_a_restart_on_postgresql() {
    use flotta_testing::{Database, TestServer};
    let mut server = TestServer::builder()
        .database(Database::fresh_postgres().await)
        .superseded_grace(std::time::Duration::from_millis(100))
        .start()
        .await;
    let registration = server.registration_identity();

    // A device that renewed: its first certificate is superseded.
    let renewed = "pg-renewed";
    let first = server.enrol_and_register(renewed).await;
    let second = register_as(&server, &first, renewed).await;
    let renewed_config = format!("/data/{renewed}/in");
    flotta_testing::eventually("the superseded certificate refused", || async {
        (edge_get(&server, &first, &renewed_config).await == 401).then_some(())
    })
    .await;

    // A deleted device: its certificate is revoked.
    let deleted = "pg-deleted";
    let gone = server.enrol_and_register(deleted).await;
    server
        .management_client()
        .delete::<flotta_core::model::EdgeDevice>(NAMESPACE, deleted)
        .await
        .expect("delete device");
    let deleted_config = format!("/data/{deleted}/in");
    let gone_serial = PeerCertificate::parse(gone.certificate_pem.as_bytes())
        .expect("parse")
        .serial;
    flotta_testing::eventually("the deleted device's certificate revoked", || async {
        server.edge().is_revoked(&gone_serial).then_some(())
    })
    .await;
    assert_eq!(edge_get(&server, &gone, &deleted_config).await, 404);

    // A denied device.
    let denied = "pg-denied";
    let path = format!("/data/{denied}/out");
    let response = edge_post(&server, &registration, &path, &enrolment_message(NAMESPACE)).await;
    assert!(response.status().is_success(), "{}", response.status());
    server
        .management_client()
        .deny(NAMESPACE, denied)
        .await
        .expect("deny");

    server.restart().await;
    assert_eq!(edge_get(&server, &first, &renewed_config).await, 401);
    assert_eq!(edge_get(&server, &second, &renewed_config).await, 200);
    assert!(server.edge().is_revoked(&gone_serial), "revocation stored");
    assert_eq!(edge_get(&server, &gone, &deleted_config).await, 404);
    let key = DeviceKey::generate().expect("key");
    let response = edge_post(
        &server,
        &registration,
        &path,
        &registration_message(Some(&key.csr(denied).expect("csr").pem())),
    )
    .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "EnrolmentDenied", "{body}");
    server.stop().await;
}
