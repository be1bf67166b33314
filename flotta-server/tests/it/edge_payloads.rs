//! Flotta's recorded agent payloads (`reference/flotta/misc/*.json.in`) are accepted.

use std::path::PathBuf;

use flotta_server::edge::EdgeOptions;
use serde_json::Value;

use crate::edge_support::{EdgeServer, NAMESPACE, enrolment_message};

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/flotta/misc")
}

/// Replaces the load-test template markers with concrete values.
fn substitute(template: &str) -> String {
    template.replace("${__UUID()}", &uuid::Uuid::new_v4().to_string())
}

#[tokio::test]
async fn every_reference_payload_is_accepted() {
    let dir = reference_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("skipped: ../shared/reference not found");
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".json.in"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no payloads in {}", dir.display());

    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let registration = server.registration_identity();
    let fallback_device = "payload-device";
    let mut accepted = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read payload");
        let payload: Value = serde_json::from_str(&substitute(&text)).expect("payload JSON");
        // The registration recording wraps the message with the device id, as the
        // load-test tool posts it.
        let (device_id, message) = match (payload.get("DeviceID"), payload.get("Message")) {
            (Some(Value::String(id)), Some(message)) => (id.clone(), message.clone()),
            _ => (fallback_device.to_owned(), payload.clone()),
        };
        let path = format!("/data/{device_id}/out");
        let response = server
            .post(Some(&registration), &path, &enrolment_message(NAMESPACE))
            .await;
        assert!(matches!(response.status().as_u16(), 200 | 208));
        let directive = message["directive"].as_str().expect("directive");
        let identity = if directive == "registration" {
            registration.clone()
        } else {
            if server.device(&device_id).await.is_none() {
                server.enrol_and_register(&device_id).await;
            }
            server.device_identity(&device_id, NAMESPACE)
        };
        let response = server.post(Some(&identity), &path, &message).await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{}: {body}", file.display());
        accepted += 1;
    }
    assert_eq!(accepted, files.len());
    // The registration recording carries a hardware inventory that lands on the device.
    let registered = server
        .device("07b68c4e-41b0-4cb9-87ef-171766c01147")
        .await
        .expect("registered device");
    assert_eq!(
        registered.body["status"]["hardware"]["hostname"],
        "masayag.usersys.redhat.com"
    );
    server.stop().await;
}
