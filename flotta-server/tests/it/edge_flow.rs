//! Enrolment and registration over real mTLS, in auto and manual approval modes.

use flotta_core::pki::{DeviceKey, PeerCertificate};
use flotta_server::edge::EdgeOptions;
use flotta_server::store::ResourceKind;
use serde_json::Value;

use crate::edge_support::{
    EdgeServer, NAMESPACE, common_name, enrolment_message, heartbeat_message, registration_message,
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
        serde_json::json!({"site": "lab", "tier": "core", "flotta/member-of": "lab-set"})
    );
    server.stop().await;
}
