//! What Flotta's own device agent (yggdrasil plus `flotta-device-worker`) relies on,
//! asserted on the real server: each case is a behaviour of that agent that a
//! difference from Flotta's operator broke (docs/edge-api.md, "Compatibility with
//! Flotta's agent").

use std::process::Command;

use flotta_server::app::pki_files;
use flotta_server::edge::EdgeOptions;
use serde_json::Value;

use crate::edge_support::{EdgeServer, NAMESPACE};

/// The worker reads `heartbeat.hardware_profile` on its first heartbeat without
/// checking that it is there: every configuration carries one, as Flotta's
/// operator sends it.
#[tokio::test]
async fn every_configuration_carries_a_hardware_profile() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let identity = server.enrol_and_register("flotta-worker").await;
    let response = server.get(Some(&identity), "/data/flotta-worker/in").await;
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.expect("json");
    let heartbeat = &message["content"]["configuration"]["heartbeat"];
    assert!(
        heartbeat["hardware_profile"].is_object(),
        "no hardware_profile in {heartbeat}"
    );
    assert!(heartbeat["period_seconds"].is_i64(), "{heartbeat}");
    server.stop().await;
}

/// The worker loads the registration key only in SEC1 form (`EC PRIVATE KEY`), as
/// Go's `x509.ParseECPrivateKey` reads it, with the curve named; checked with
/// openssl, which reads it as an outsider would.
#[tokio::test]
async fn the_registration_key_is_sec1_with_the_curve_named() {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let path = server.data_dir().join("pki").join(pki_files::REGISTER_KEY);
    let pem = std::fs::read_to_string(&path).expect("register.key");
    assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{pem}");
    let output = Command::new("openssl")
        .args(["ec", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs (the test command installs it)");
    assert!(
        output.status.success(),
        "openssl ec refused the key: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
    // Our own clients read it too: the registration identity enrols.
    let registration = server.registration_identity();
    let response = server
        .post(
            Some(&registration),
            "/data/sec1-device/out",
            &crate::edge_support::enrolment_message(NAMESPACE),
        )
        .await;
    assert_eq!(response.status(), 200);
    server.stop().await;
}

/// yggdrasil polls the control channel and cannot parse a command message
/// without content: with nothing to do the answer is an empty 200, as Flotta's.
#[tokio::test]
async fn an_idle_control_poll_is_an_empty_200() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let identity = server.enrol_and_register("idle-worker").await;
    let response = server.get(Some(&identity), "/control/idle-worker/in").await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("body");
    assert!(body.is_empty(), "{}", String::from_utf8_lossy(&body));
    server.stop().await;
}

/// yggdrasil reads any body of a `GET /data/{id}/in` answer as a message: a refusal
/// there has none, as Flotta's, and carries its reason and message in headers for
/// our own clients.
#[tokio::test]
async fn a_refused_configuration_poll_has_no_body() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let identity = server.enrol_and_register("polling-worker").await;
    // Another device's configuration: forbidden.
    let response = server.get(Some(&identity), "/data/someone-else/in").await;
    assert_eq!(response.status(), 403);
    let reason = response
        .headers()
        .get(flotta_core::wire::REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let message = response
        .headers()
        .get(flotta_core::wire::MESSAGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default();
    let body = response.bytes().await.expect("body");
    assert!(body.is_empty(), "{}", String::from_utf8_lossy(&body));
    assert_eq!(reason.as_deref(), Some("OtherDevice"));
    assert!(message.contains("someone-else"), "{message}");
    // A bad query parameter is refused the same way.
    let response = server
        .get(Some(&identity), "/data/polling-worker/in?wait=soon")
        .await;
    assert_eq!(response.status(), 400);
    let body = response.bytes().await.expect("body");
    assert!(body.is_empty(), "{}", String::from_utf8_lossy(&body));
    server.stop().await;
}

/// A deleted device's certificates are revoked; Flotta's worker takes a 401 as
/// "register again" and crashes in that branch while unregistering. So a revoked
/// certificate whose device is gone is answered as Flotta answers a device it does
/// not know: 404 on the data routes, and `disconnect` on the control channel.
#[tokio::test]
async fn a_deleted_device_is_told_it_does_not_exist_and_to_disconnect() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let identity = server.enrol_and_register("deleted-worker").await;
    server
        .store
        .delete(
            flotta_server::store::ResourceKind::EdgeDevice,
            NAMESPACE,
            "deleted-worker",
            None,
        )
        .await
        .expect("delete");
    let serial = flotta_core::pki::PeerCertificate::parse(identity.certificate_pem.as_bytes())
        .expect("parse")
        .serial;
    flotta_testing::eventually("deletion to revoke the certificate", || async {
        server.state.is_revoked(&serial).then_some(())
    })
    .await;

    let heartbeat = server
        .post(
            Some(&identity),
            "/data/deleted-worker/out",
            &flotta_testing::messages::heartbeat_message("up"),
        )
        .await;
    assert_eq!(heartbeat.status(), 404);
    let config = server.get(Some(&identity), "/data/deleted-worker/in").await;
    assert_eq!(config.status(), 404);
    let reason = config
        .headers()
        .get(flotta_core::wire::REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(reason.as_deref(), Some("NoSuchDevice"));
    let body = config.bytes().await.expect("body");
    assert!(body.is_empty(), "{}", String::from_utf8_lossy(&body));

    let control = server
        .get(Some(&identity), "/control/deleted-worker/in")
        .await;
    assert_eq!(control.status(), 200);
    let command: Value = control.json().await.expect("json");
    assert_eq!(command["directive"], "disconnect", "{command}");
    server.stop().await;
}

/// The worker's ansible dispatcher posts the `ansible` directive and reads
/// `content` as a JSON text of `[{"name", "ansible_playbook_string"}]`; it reports
/// each execution in its heartbeats by `name` and `status` only. A labelled
/// device is sent `ansible-manager`; its execution is made on its first request;
/// a report of an unknown state is a 400 naming the entry; a finished run takes
/// the label off, after which the device is sent none.
#[tokio::test]
async fn flotta_agents_fetch_playbooks_and_report_them() {
    use base64::Engine as _;
    use flotta_server::store::ResourceKind;
    use flotta_testing::messages::envelope;
    use serde_json::json;

    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let identity = server.enrol_and_register("pb-worker").await;
    let playbook = "- hosts: 127.0.0.1\n  gather_facts: false\n  tasks:\n    - ping:\n";
    let config = json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeConfig",
        "metadata": {"name": "hello", "namespace": NAMESPACE},
        "spec": {"edgePlaybook": {"playbooks": [{
            "content": base64::engine::general_purpose::STANDARD.encode(playbook),
        }]}},
    });
    server
        .store
        .create(ResourceKind::EdgeConfig, NAMESPACE, "hello", config)
        .await
        .expect("EdgeConfig");
    let device = server.device("pb-worker").await.expect("device");
    let mut body = device.body.clone();
    body["metadata"]["labels"] = json!({"config/device-by-config": "hello"});
    server
        .store
        .update(ResourceKind::EdgeDevice, NAMESPACE, "pb-worker", None, body)
        .await
        .expect("label");

    flotta_testing::eventually("ansible-manager in the configuration", || async {
        let response = server.get(Some(&identity), "/data/pb-worker/in").await;
        let message: Value = response.json().await.ok()?;
        message["content"]["configuration"]["ansible-manager"]["period_seconds"]
            .as_i64()
            .filter(|p| *p > 0)
    })
    .await;
    let ask = || async {
        let response = server
            .post(
                Some(&identity),
                "/data/pb-worker/out",
                &envelope("ansible", Value::Null),
            )
            .await;
        assert_eq!(response.status(), 200);
        let message: Value = response.json().await.expect("json");
        let text = message["content"].as_str().expect("content is a JSON text");
        serde_json::from_str::<Vec<Value>>(text).expect("a list")
    };
    let executions = ask().await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    assert_eq!(executions[0]["name"], "pb-worker-hello");
    assert_eq!(executions[0]["ansible_playbook_string"], playbook);

    let report = |state: &str| {
        envelope(
            "heartbeat",
            json!({"status": "up", "version": "1",
                "playbook-executions": [{"name": "pb-worker-hello", "status": state}]}),
        )
    };
    let refused = server
        .post(Some(&identity), "/data/pb-worker/out", &report("Done"))
        .await;
    assert_eq!(refused.status(), 400);
    let why: Value = refused.json().await.expect("json");
    assert!(
        why["message"]
            .as_str()
            .is_some_and(|m| m.contains("content.playbook-executions[0].status")),
        "{why}"
    );
    for state in ["Running", "SuccessfullyCompleted"] {
        let answer = server
            .post(Some(&identity), "/data/pb-worker/out", &report(state))
            .await;
        assert_eq!(answer.status(), 200, "{state}");
    }
    let execution = server
        .store
        .get(
            ResourceKind::PlaybookExecution,
            NAMESPACE,
            "pb-worker-hello",
        )
        .await
        .expect("get")
        .expect("execution");
    let conditions = execution.body["status"]["conditions"].clone();
    assert_eq!(
        conditions,
        json!([
            {"type": "Running", "status": "False", "reason": "Running",
             "lastTransitionTime": conditions[0]["lastTransitionTime"]},
            {"type": "SuccessfullyCompleted", "status": "True", "reason": "SuccessfullyCompleted",
             "lastTransitionTime": conditions[1]["lastTransitionTime"]},
        ])
    );
    let device = server.device("pb-worker").await.expect("device");
    assert!(
        device.body["metadata"]["labels"]
            .get("config/device-by-config")
            .is_none(),
        "label removed: {}",
        device.body["metadata"]
    );
    assert_eq!(
        device.body["status"]["PlaybookExec"][0]["name"],
        "pb-worker-hello"
    );
    assert!(ask().await.is_empty(), "nothing more to run");
    server.stop().await;
}
