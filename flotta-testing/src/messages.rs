//! Edge API messages as JSON, for tests that speak the wire format by hand.

use serde_json::{Value, json};

/// A `data` envelope carrying `content` for `directive`.
pub fn envelope(directive: &str, content: Value) -> Value {
    json!({
        "type": "data",
        "message_id": uuid::Uuid::new_v4().to_string(),
        "version": 1,
        "sent": "2026-01-01T00:00:00Z",
        "directive": directive,
        "content": content,
    })
}

/// An `enrolment` asking for `namespace`.
pub fn enrolment_message(namespace: &str) -> Value {
    envelope(
        "enrolment",
        json!({"target_namespace": namespace,
            "features": {"modelName": "test-board", "hardware": {"hostname": "enrolling"}}}),
    )
}

/// A `registration`, with a CSR when `csr` is given.
pub fn registration_message(csr: Option<&str>) -> Value {
    let mut content = json!({"hardware": {"hostname": "edge-host",
        "cpu": {"architecture": "aarch64", "count": 4, "frequency": 1500}}});
    if let Some(csr) = csr {
        content["certificate_request"] = Value::String(csr.to_owned());
    }
    envelope("registration", content)
}

/// A `heartbeat` with `status` and one running workload.
pub fn heartbeat_message(status: &str) -> Value {
    envelope(
        "heartbeat",
        json!({"status": status, "version": "1", "workloads": [
            {"name": "w1", "status": "Running", "last_data_upload": "2026-01-01T00:00:00Z"}],
            "events": []}),
    )
}

/// The `ETag` of a configuration response (the configuration's version).
pub fn etag(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .to_owned()
}
