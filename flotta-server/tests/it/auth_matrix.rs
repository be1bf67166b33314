//! The authentication matrix: every Edge API endpoint and directive against every
//! kind of client certificate, and every management API endpoint against every kind
//! of bearer token, over the real listeners of one whole server (TLS, SQLite).
//!
//! The Edge API's expected answers are not written here: they are core's table
//! (`flotta_core::enrolment::table::EDGE_TABLE`), the one core's own unit test checks
//! `decide` against. This test sends each row's call, with each kind of
//! certificate, for a device in the row's state (registered, approved and not yet
//! registered, pending, denied, unknown, being deleted; the server auto-approves, so rows for manual approval are left to
//! core's test and `edge_flow.rs`) and compares every status. The rendered tables must appear
//! verbatim in `docs/security.md`; `FLOTTA_WRITE_SECURITY_TABLE=1 cargo test -p
//! flotta-server --test it auth_matrix` rewrites the blocks after a deliberate
//! change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flotta_core::enrolment::table::{self, PeerKind};
use flotta_core::enrolment::{Approval, DeviceRecord, Directive};
use flotta_core::pki::{BuiltinCa, CertificateProfile, DeviceIdentity, DeviceKey};
use flotta_server::api::API_PREFIX;
use flotta_server::store::TokenRole;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api_harness::{Database, TestServer, collection, object_path, test_config};
use crate::app_edge_client::{edge_url, enrol_and_register};
use crate::edge_support::{
    ClientIdentity, NAMESPACE, enrolment_message, envelope, foreign_identity, heartbeat_message,
    issue_device, registration_message,
};

const DEVICE: &str = "matrix-device";
const OTHER_DEVICE: &str = "matrix-other";
const EDGE_BEGIN: &str = "<!-- auth-matrix:edge:begin -->";
const EDGE_END: &str = "<!-- auth-matrix:edge:end -->";
const API_BEGIN: &str = "<!-- auth-matrix:management:begin -->";
const API_END: &str = "<!-- auth-matrix:management:end -->";

/// A device that enrolled and whose request waits for approval.
const PENDING_DEVICE: &str = "matrix-pending";

const TOKENS: [&str; 5] = ["no token", "bad token", "viewer", "operator", "admin"];

/// Expected management API statuses: (method, path) -> one status per token kind,
/// in the order of [`TOKENS`]. `{ns}`, `{plural}` and `{name}` stand for any
/// namespace, resource plural and object name.
const API_EXPECTED: [(&str, &str, [u16; 5]); 23] = [
    ("GET", "/healthz", [200, 200, 200, 200, 200]),
    ("GET", "/readyz", [200, 200, 200, 200, 200]),
    ("GET", "/metrics", [401, 401, 200, 200, 200]),
    ("GET", "/openapi.json", [200, 200, 200, 200, 200]),
    ("GET", "/apis/…/v1alpha1", [401, 401, 200, 200, 200]),
    (
        "GET",
        "/apis/…/v1alpha1/{plural}",
        [401, 401, 200, 200, 200],
    ),
    (
        "GET",
        "/apis/…/v1alpha1/{plural}?watch=true",
        [401, 401, 200, 200, 200],
    ),
    (
        "GET",
        "/apis/…/namespaces/{ns}/{plural}",
        [401, 401, 200, 200, 200],
    ),
    (
        "POST",
        "/apis/…/namespaces/{ns}/{plural}",
        [401, 401, 403, 201, 201],
    ),
    (
        "GET",
        "/apis/…/namespaces/{ns}/{plural}/{name}",
        [401, 401, 200, 200, 200],
    ),
    (
        "PUT",
        "/apis/…/namespaces/{ns}/{plural}/{name}",
        [401, 401, 403, 200, 200],
    ),
    (
        "PATCH",
        "/apis/…/namespaces/{ns}/{plural}/{name}",
        [401, 401, 403, 200, 200],
    ),
    (
        "DELETE",
        "/apis/…/namespaces/{ns}/{plural}/{name}",
        [401, 401, 403, 200, 200],
    ),
    (
        "GET",
        "/apis/…/namespaces/{ns}/{plural}/{name}/status",
        [401, 401, 200, 200, 200],
    ),
    (
        "PUT",
        "/apis/…/namespaces/{ns}/{plural}/{name}/status",
        [401, 401, 403, 200, 200],
    ),
    (
        "PATCH",
        "/apis/…/namespaces/{ns}/{plural}/{name}/status",
        [401, 401, 403, 200, 200],
    ),
    (
        "GET",
        "/api/v1/namespaces/{ns}/secrets",
        [401, 401, 403, 200, 200],
    ),
    (
        "GET",
        "/api/v1/namespaces/{ns}/configmaps",
        [401, 401, 200, 200, 200],
    ),
    ("GET", "/apis/…/v1alpha1/tokens", [401, 401, 403, 403, 200]),
    ("POST", "/apis/…/v1alpha1/tokens", [401, 401, 403, 403, 201]),
    (
        "DELETE",
        "/apis/…/v1alpha1/tokens/{id}",
        [401, 401, 403, 403, 204],
    ),
    (
        "GET",
        "/apis/…/v1alpha1/no-such-plural",
        [401, 401, 404, 404, 404],
    ),
    ("GET", "/no/such/path", [404, 404, 404, 404, 404]),
];

fn security_doc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md")
}

/// An Edge API client trusting `ca_pem`, presenting `identity` when given.
fn edge_client(ca_pem: &str, identity: Option<&ClientIdentity>) -> reqwest::Client {
    flotta_testing::identity::tls_client(ca_pem, identity)
}

/// A device certificate for `id` signed by `ca` that expired a day ago.
fn expired_identity(ca: &BuiltinCa, id: &str) -> ClientIdentity {
    let key = DeviceKey::generate().expect("device key");
    let device = DeviceIdentity::new(id, NAMESPACE).expect("device identity");
    let now = OffsetDateTime::now_utc();
    let profile = CertificateProfile::device(
        &device,
        now - time::Duration::days(3),
        now - time::Duration::days(1),
    )
    .expect("profile");
    let issued = ca
        .issue_now(&key.public_key_der(), &profile)
        .expect("issue");
    ClientIdentity {
        certificate_pem: issued.pem(),
        key_pem: key.to_pem(),
    }
}

fn markdown_row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

fn api_table(rows: &[(&str, &str, [u16; 5])]) -> String {
    let mut header = vec!["method".to_owned(), "path".to_owned()];
    header.extend(TOKENS.iter().map(|s| (*s).to_owned()));
    let mut lines = vec![
        markdown_row(&header),
        markdown_row(&vec!["---".to_owned(); header.len()]),
    ];
    for (method, path, codes) in rows {
        let mut cells = vec![(*method).to_owned(), format!("`{path}`")];
        cells.extend(codes.iter().map(u16::to_string));
        lines.push(markdown_row(&cells));
    }
    lines.join("\n")
}

/// Replaces (when writing) or checks the block between `begin` and `end`.
fn sync_doc_block(doc: &str, begin: &str, end: &str, table: &str, write: bool) -> String {
    let block = format!("{begin}\n{table}\n{end}");
    let start = doc.find(begin);
    let stop = doc.find(end);
    match (start, stop) {
        (Some(start), Some(stop)) if stop > start => {
            let current = &doc[start..stop + end.len()];
            if write {
                format!("{}{block}{}", &doc[..start], &doc[stop + end.len()..])
            } else {
                assert_eq!(
                    current, block,
                    "docs/security.md is out of date; rerun with FLOTTA_WRITE_SECURITY_TABLE=1"
                );
                doc.to_owned()
            }
        }
        _ => panic!("docs/security.md lacks the {begin} ... {end} block"),
    }
}

/// Everything the Edge side of the matrix needs.
struct EdgeWorld {
    edge_server: String,
    ca_pem: String,
    ca: Arc<BuiltinCa>,
    registration: ClientIdentity,
    /// `DEVICE`'s first certificate, revoked when the device was deleted.
    revoked: ClientIdentity,
    /// `DEVICE`'s current certificate.
    valid: ClientIdentity,
    other: ClientIdentity,
    /// Numbers the unknown and the deleted devices, one per call.
    unknown: std::sync::atomic::AtomicUsize,
}

/// Creates the signed request `name`, approved or not, through the management API.
async fn create_request(server: &TestServer, name: &str, approved: bool) {
    let created = server
        .admin(
            Method::POST,
            &collection(NAMESPACE, "edgedevicesignedrequests"),
        )
        .json(&json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDeviceSignedRequest",
            "metadata": {"name": name},
            "spec": {"approved": approved, "targetNamespace": NAMESPACE, "features": {}},
        }))
        .send()
        .await
        .expect("create signed request");
    assert_eq!(created.status(), StatusCode::CREATED);
}

impl EdgeWorld {
    /// A device id in `record`'s state: unknown and deleted devices are new for
    /// every call, so that what one call does cannot change the next one's state.
    async fn device(&self, server: &TestServer, record: DeviceRecord) -> String {
        let serial = self
            .unknown
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match record {
            DeviceRecord::Registered => DEVICE.to_owned(),
            DeviceRecord::Pending => PENDING_DEVICE.to_owned(),
            DeviceRecord::Denied => {
                // Denied by an operator: `spec.approved` false and a `declined`
                // condition, as `flotta deny` writes them.
                let name = format!("matrix-denied-{serial}");
                create_request(server, &name, false).await;
                let denied = server
                    .admin(
                        Method::PATCH,
                        &format!(
                            "{}/status",
                            object_path(NAMESPACE, "edgedevicesignedrequests", &name)
                        ),
                    )
                    .header("content-type", "application/merge-patch+json")
                    .json(&json!({"status": {"conditions": [
                        {"type": "declined", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                    ]}}))
                    .send()
                    .await
                    .expect("deny request");
                assert_eq!(denied.status(), StatusCode::OK);
                name
            }
            DeviceRecord::Approved => {
                // Approved and not registered yet: a registration would create it.
                let name = format!("matrix-approved-{serial}");
                create_request(server, &name, true).await;
                name
            }
            DeviceRecord::Deleted => {
                // A finalizer holds the device while it is being deleted.
                let name = format!("matrix-deleting-{serial}");
                let created = server
                    .admin(Method::POST, &collection(NAMESPACE, "edgedevices"))
                    .json(&json!({
                        "apiVersion": "management.project-flotta.io/v1alpha1",
                        "kind": "EdgeDevice",
                        "metadata": {"name": name, "finalizers": ["matrix.test/hold"]},
                        "spec": {"requestTime": "2024-05-01T10:00:00Z"},
                    }))
                    .send()
                    .await
                    .expect("create device");
                assert_eq!(created.status(), StatusCode::CREATED);
                let deleted = server
                    .admin(
                        Method::DELETE,
                        &object_path(NAMESPACE, "edgedevices", &name),
                    )
                    .send()
                    .await
                    .expect("delete device");
                assert!(deleted.status().is_success(), "{}", deleted.status());
                name
            }
            _ => format!("matrix-unknown-{serial}"),
        }
    }

    /// A certificate of `device`, revoked: the answer to a revoked certificate
    /// depends on whether its own device still exists.
    async fn revoked_for(&self, server: &TestServer, device: &str) -> ClientIdentity {
        let identity = issue_device(
            &self.ca,
            device,
            NAMESPACE,
            OffsetDateTime::now_utc(),
            time::Duration::days(1),
        );
        let serial = flotta_core::pki::PeerCertificate::parse(identity.certificate_pem.as_bytes())
            .expect("parse")
            .serial;
        server
            .edge()
            .revoke_certificate(&serial, NAMESPACE, device)
            .await
            .expect("revoke");
        identity
    }

    /// A certificate of `kind` for calls on `device`.
    fn identity(&self, kind: PeerKind, device: &str) -> Option<ClientIdentity> {
        let now = OffsetDateTime::now_utc();
        match kind {
            PeerKind::NoCertificate => None,
            PeerKind::ForeignCa => Some(foreign_identity(device)),
            PeerKind::RegistrationCertificate => Some(self.registration.clone()),
            PeerKind::ExpiredDevice => Some(expired_identity(&self.ca, device)),
            // Other devices' revoked certificates: `revoked_for`.
            PeerKind::RevokedDevice => Some(self.revoked.clone()),
            PeerKind::OtherDevice => Some(self.other.clone()),
            PeerKind::Device if device == DEVICE => Some(self.valid.clone()),
            PeerKind::Device => Some(issue_device(
                &self.ca,
                device,
                NAMESPACE,
                now,
                time::Duration::days(1),
            )),
            other => panic!("no certificate for {other:?}"),
        }
    }
}

async fn edge_world(server: &TestServer, data_dir: &Path) -> EdgeWorld {
    let admin = server.running().admin_config().clone();
    let pki = flotta_server::app::load_or_create_pki(
        &data_dir.join("pki"),
        &[],
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("server PKI");
    let register = |_: ()| {
        enrol_and_register(
            &admin.edge_server,
            &admin.certificate_authority,
            data_dir,
            DEVICE,
        )
    };
    // The revoked certificate is the device's first one: deleting the device revokes
    // it; the device then registers again and gets the valid one.
    let revoked = register(()).await;
    let deleted = server
        .admin(
            Method::DELETE,
            &object_path(NAMESPACE, "edgedevices", DEVICE),
        )
        .send()
        .await
        .expect("delete device");
    assert_eq!(deleted.status(), StatusCode::OK);
    // The revocation list follows the store's watch.
    let serial = flotta_core::pki::PeerCertificate::parse(revoked.certificate_pem.as_bytes())
        .expect("parse")
        .serial;
    flotta_testing::eventually("deleting the device to revoke its certificate", || async {
        server.edge().is_revoked(&serial).then_some(())
    })
    .await;
    let valid = register(()).await;
    // A request the operator has not approved (the server would approve one it
    // creates itself).
    create_request(server, PENDING_DEVICE, false).await;
    let now = OffsetDateTime::now_utc();
    EdgeWorld {
        edge_server: admin.edge_server.clone(),
        ca_pem: admin.certificate_authority.clone(),
        registration: ClientIdentity {
            certificate_pem: pki.registration_certificate_pem.clone(),
            key_pem: pki.registration_key_pem.clone(),
        },
        other: issue_device(
            &pki.ca,
            OTHER_DEVICE,
            NAMESPACE,
            now,
            time::Duration::days(1),
        ),
        ca: pki.ca,
        revoked,
        valid,
        unknown: std::sync::atomic::AtomicUsize::new(0),
    }
}

/// One Edge request: `directive`'s call on `device` as `identity`; returns the
/// status after checking that errors come with a reason and a message.
async fn edge_request(
    world: &EdgeWorld,
    identity: Option<&ClientIdentity>,
    directive: Option<Directive>,
    device: &str,
) -> u16 {
    let client = edge_client(&world.ca_pem, identity);
    let (method, path) = table::endpoint(directive);
    let url = edge_url(&world.edge_server, &path.replace("{id}", device));
    let request = match (method, directive) {
        ("GET", _) => client.get(&url),
        (_, Some(Directive::Enrolment)) => client.post(&url).json(&enrolment_message(NAMESPACE)),
        (_, Some(Directive::Registration)) => {
            let key = DeviceKey::generate().expect("key");
            let csr = key.csr(device).expect("csr").pem();
            client.post(&url).json(&registration_message(Some(&csr)))
        }
        (_, Some(Directive::Heartbeat)) => client.post(&url).json(&heartbeat_message("up")),
        (_, Some(Directive::Ansible)) => client.post(&url).json(&envelope("ansible", json!(null))),
        (_, None) => client.post(&url).json(&envelope("reboot-now", json!({}))),
        _ => client.post(&url).json(&envelope("ack", json!({}))),
    };
    let response = request.send().await.expect("edge request");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (reason, message) = (
        header(flotta_core::wire::REASON_HEADER),
        header(flotta_core::wire::MESSAGE_HEADER),
    );
    let body = response.text().await.unwrap_or_default();
    if status >= 400 && method == "GET" && path.starts_with("/data/") {
        // The configuration poll refuses without a body, as Flotta's does; the
        // reason and message travel in headers.
        assert!(body.is_empty(), "{method} {path} {directive:?}: {body}");
        assert!(
            !reason.is_empty() && !message.is_empty(),
            "{method} {path} {directive:?}: no reason or message header"
        );
    } else if status >= 400 {
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("{method} {path} {directive:?}: error body is not JSON ({e}): {body}")
        });
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty())
                && error["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{method} {path} {directive:?}: {body}"
        );
    }
    status
}

/// One management request with `token` (None: no Authorization header).
async fn api_request(
    server: &TestServer,
    token: Option<&str>,
    method: &str,
    path: &str,
    serial: usize,
) -> u16 {
    let plural = "edgedevices";
    let name = format!("matrix-object-{serial}");
    let ns = "matrix";
    let device = |name: &str| {
        json!({"apiVersion": "management.project-flotta.io/v1alpha1", "kind": "EdgeDevice",
            "metadata": {"name": name, "labels": {"site": "lab"}},
            "spec": {"requestTime": "2024-05-01T10:00:00Z"}})
    };
    // Every write acts on an object of its own, created beforehand by the admin.
    let needs_object = path.contains("{name}");
    if needs_object {
        let created = server
            .admin(Method::POST, &collection(ns, plural))
            .json(&device(&name))
            .send()
            .await
            .expect("create");
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    let object = object_path(ns, plural, &name);
    let (url_path, body): (String, Option<Value>) = match (method, path) {
        (_, p) if p.starts_with("/api/v1/namespaces/{ns}/") => (p.replace("{ns}", ns), None),
        (_, p) if !p.starts_with("/apis") => (p.to_owned(), None),
        ("GET", "/apis/…/v1alpha1") => (API_PREFIX.to_owned(), None),
        ("GET", "/apis/…/v1alpha1/{plural}") => (format!("{API_PREFIX}/{plural}"), None),
        ("GET", "/apis/…/v1alpha1/{plural}?watch=true") => {
            (format!("{API_PREFIX}/{plural}?watch=true"), None)
        }
        (_, "/apis/…/namespaces/{ns}/{plural}") => (collection(ns, plural), Some(device(&name))),
        ("PUT", "/apis/…/namespaces/{ns}/{plural}/{name}") => {
            let mut current = server
                .admin(Method::GET, &object)
                .send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json");
            current["metadata"]["labels"]["site"] = json!("field");
            (object.clone(), Some(current))
        }
        ("PUT", "/apis/…/namespaces/{ns}/{plural}/{name}/status") => {
            let mut current = server
                .admin(Method::GET, &object)
                .send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json");
            current["status"] = json!({"phase": "up"});
            (format!("{object}/status"), Some(current))
        }
        ("PATCH", "/apis/…/namespaces/{ns}/{plural}/{name}") => (
            object.clone(),
            Some(json!({"metadata": {"labels": {"patched": "yes"}}})),
        ),
        ("PATCH", "/apis/…/namespaces/{ns}/{plural}/{name}/status") => (
            format!("{object}/status"),
            Some(json!({"status": {"phase": "up"}})),
        ),
        (_, "/apis/…/namespaces/{ns}/{plural}/{name}") => (object.clone(), None),
        (_, "/apis/…/namespaces/{ns}/{plural}/{name}/status") => {
            (format!("{object}/status"), None)
        }
        ("POST", "/apis/…/v1alpha1/tokens") => (
            format!("{API_PREFIX}/tokens"),
            Some(json!({"role": "viewer", "description": "matrix"})),
        ),
        ("DELETE", "/apis/…/v1alpha1/tokens/{id}") => {
            let id = server
                .running()
                .store()
                .create_token(TokenRole::Viewer, "matrix victim")
                .await
                .expect("token")
                .token
                .id;
            (format!("{API_PREFIX}/tokens/{id}"), None)
        }
        (_, "/apis/…/v1alpha1/tokens") => (format!("{API_PREFIX}/tokens"), None),
        (_, "/apis/…/v1alpha1/no-such-plural") => (format!("{API_PREFIX}/no-such-plural"), None),
        other => panic!("no request for {other:?}"),
    };
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = server
        .client
        .request(method.clone(), format!("{}{url_path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        let content_type = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        request = request
            .header("content-type", content_type)
            .body(serde_json::to_vec(&body).expect("body"));
    }
    let response = request.send().await.expect("management request");
    let status = response.status().as_u16();
    if status >= 400 {
        // Statuses only: a watch would stream forever, so no body is read on success.
        let body: Value = response.json().await.expect("error body is JSON");
        assert_eq!(body["kind"], "Status", "{url_path}: {body}");
        assert_eq!(body["code"], status, "{url_path}: {body}");
    }
    status
}

#[tokio::test]
async fn every_endpoint_answers_every_identity_as_documented() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = test_config(dir.path(), &Database::Sqlite);
    config.auto_approve = true;
    let server = TestServer::start_with(config).await;
    let world = edge_world(&server, dir.path()).await;

    let mut mismatches = Vec::new();
    let mut driven = 0;
    for row in table::rows(Approval::Automatic) {
        for kind in PeerKind::ALL {
            let device = world.device(&server, row.record).await;
            let identity = if kind == PeerKind::RevokedDevice && device != DEVICE {
                Some(world.revoked_for(&server, &device).await)
            } else {
                world.identity(kind, &device)
            };
            let got = edge_request(&world, identity.as_ref(), row.directive, &device).await;
            let want = row.answer(kind).status.code();
            driven += 1;
            if got != want {
                let (method, path) = table::endpoint(row.directive);
                mismatches.push(format!(
                    "{method} {path} {} on a {} device as {}: core says {want}, the server {got}",
                    table::directive_label(row.directive),
                    row.record.as_str(),
                    kind.as_str(),
                ));
            }
        }
    }
    assert_eq!(
        driven,
        8 * PeerKind::ALL.len() * DeviceRecord::ALL.len(),
        "every call, state and certificate kind"
    );

    let viewer = server.token(TokenRole::Viewer).await;
    let operator = server.token(TokenRole::Operator).await;
    let tokens: [Option<&str>; 5] = [
        None,
        Some("not-a-token-anyone-was-given"),
        Some(&viewer),
        Some(&operator),
        Some(&server.admin_token),
    ];
    let mut api_observed = Vec::new();
    let mut serial = 0;
    for (method, path, _) in API_EXPECTED {
        let mut codes = [0u16; 5];
        for (code, token) in codes.iter_mut().zip(tokens) {
            serial += 1;
            *code = api_request(&server, token, method, path, serial).await;
        }
        api_observed.push((method, path, codes));
    }
    server.stop().await;

    let edge_markdown = table::markdown(Approval::Manual);
    let api_markdown = api_table(&api_observed);
    println!("{edge_markdown}\n\n{api_markdown}");

    for ((method, path, want), (_, _, got)) in API_EXPECTED.iter().zip(&api_observed) {
        for ((who, want), got) in TOKENS.iter().zip(want).zip(got) {
            if want != got {
                mismatches.push(format!(
                    "{method} {path} with {who}: expected {want}, got {got}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    let write = std::env::var_os("FLOTTA_WRITE_SECURITY_TABLE").is_some_and(|v| v == "1");
    let path = security_doc();
    let doc = std::fs::read_to_string(&path).expect("docs/security.md");
    let doc = sync_doc_block(&doc, EDGE_BEGIN, EDGE_END, &edge_markdown, write);
    let doc = sync_doc_block(&doc, API_BEGIN, API_END, &api_markdown, write);
    if write {
        std::fs::write(&path, doc).expect("write docs/security.md");
    }
}

const RBAC_BEGIN: &str = "<!-- auth-matrix:rbac:begin -->";
const RBAC_END: &str = "<!-- auth-matrix:rbac:end -->";

/// The callers of the RBAC matrix: the four built-in roles, and a token of group
/// `team-a` bound to the team Role of `rbac.rs` in namespace `team-a`, asked about
/// `team-a` and about `team-b`.
const RBAC_CALLERS: [&str; 6] = [
    "viewer",
    "operator",
    "admin",
    "metrics",
    "team-a role, in team-a",
    "team-a role, in team-b",
];

/// (API group, resource, subresource) of every row of the RBAC matrix.
const RBAC_RESOURCES: [(&str, &str, &str); 24] = [
    ("management.project-flotta.io", "edgedevices", ""),
    ("management.project-flotta.io", "edgedevices", "status"),
    ("management.project-flotta.io", "edgedevicesets", ""),
    ("management.project-flotta.io", "edgedevicesets", "status"),
    ("management.project-flotta.io", "edgeworkloads", ""),
    ("management.project-flotta.io", "edgeworkloads", "status"),
    (
        "management.project-flotta.io",
        "edgedevicesignedrequests",
        "",
    ),
    (
        "management.project-flotta.io",
        "edgedevicesignedrequests",
        "approval",
    ),
    ("management.project-flotta.io", "edgeconfigs", ""),
    ("management.project-flotta.io", "playbookexecutions", ""),
    (
        "management.project-flotta.io",
        "playbookexecutions",
        "status",
    ),
    ("management.project-flotta.io", "repositories", ""),
    ("management.project-flotta.io", "repositories", "status"),
    ("management.project-flotta.io", "resourcesyncs", ""),
    ("management.project-flotta.io", "resourcesyncs", "status"),
    ("management.project-flotta.io", "tokens", ""),
    ("", "secrets", ""),
    ("", "configmaps", ""),
    ("", "events", ""),
    ("rbac.authorization.k8s.io", "roles", ""),
    ("rbac.authorization.k8s.io", "rolebindings", ""),
    ("rbac.authorization.k8s.io", "clusterroles", ""),
    ("rbac.authorization.k8s.io", "clusterrolebindings", ""),
    ("authorization.k8s.io", "selfsubjectaccessreviews", ""),
];

fn api_prefix_of(group: &str) -> String {
    match group {
        "" => "/api/v1".to_owned(),
        "management.project-flotta.io" => API_PREFIX.to_owned(),
        other => format!("/apis/{other}/v1"),
    }
}

/// The verbs that apply to a row: a subresource has no collection, and a review
/// is only ever created.
fn row_verbs(resource: &str, subresource: &str) -> Vec<&'static str> {
    if resource == "selfsubjectaccessreviews" {
        return vec!["create"];
    }
    flotta_core::rbac::VERBS
        .into_iter()
        .filter(|v| subresource.is_empty() || !matches!(*v, "list" | "watch" | "deletecollection"))
        .collect()
}

/// The real request for `verb` on a row in `namespace`: (method, path, body).
fn rbac_request(
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    verb: &str,
) -> (Method, String, Option<Value>) {
    let cluster_scoped = matches!(
        resource,
        "tokens" | "clusterroles" | "clusterrolebindings" | "selfsubjectaccessreviews"
    );
    let collection = if cluster_scoped {
        format!("{}/{resource}", api_prefix_of(group))
    } else {
        format!("{}/namespaces/{namespace}/{resource}", api_prefix_of(group))
    };
    let object = format!("{collection}/matrix-absent");
    let target = if subresource.is_empty() {
        object.clone()
    } else {
        format!("{object}/{subresource}")
    };
    // Bodies that no handler accepts: an allowed write fails validation or finds
    // nothing, so the matrix changes nothing.
    let junk = Some(json!({"matrix": true}));
    match verb {
        "get" => (Method::GET, target, None),
        "list" => (Method::GET, collection, None),
        "watch" => (Method::GET, format!("{collection}?watch=true"), None),
        "create" if subresource.is_empty() => (Method::POST, collection, junk),
        "create" => (Method::POST, target, junk),
        "update" => (Method::PUT, target, junk),
        "patch" => (Method::PATCH, target, junk),
        "delete" => (Method::DELETE, target, None),
        _ => (Method::DELETE, collection, None),
    }
}

/// `allowed` per verb as one table cell: `all`, `-`, or the verbs allowed.
fn rbac_cell(verbs: &[&str], allowed: &[bool]) -> String {
    if allowed.iter().all(|a| *a) {
        "all".to_owned()
    } else if !allowed.iter().any(|a| *a) {
        "-".to_owned()
    } else {
        verbs
            .iter()
            .zip(allowed)
            .filter(|(_, a)| **a)
            .map(|(v, _)| *v)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

async fn review_allows(server: &TestServer, token: &str, spec: Value) -> bool {
    let response = server
        .with_token(
            Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            token,
        )
        .json(&json!({"spec": spec}))
        .send()
        .await
        .expect("review");
    assert_eq!(response.status(), StatusCode::CREATED);
    let review: Value = response.json().await.expect("review JSON");
    review["status"]["allowed"]
        .as_bool()
        .expect("status.allowed")
}

/// The RBAC matrix: every verb on every resource (subresources, secrets, tokens
/// and the RBAC kinds included) for each built-in role and a namespaced custom Role.
/// Each cell is the SelfSubjectAccessReview's answer, and the same request made for
/// real must agree: refused with 403 when denied (or 405 where the server serves no
/// such verb), never 401 or 403 when allowed. The table must appear verbatim in
/// docs/security.md (rewritten with `FLOTTA_WRITE_SECURITY_TABLE=1`).
#[tokio::test]
async fn the_rbac_matrix_answers_as_documented() {
    let server = TestServer::start().await;
    crate::rbac::grant_team(&server, "team-a", "team-a").await;
    let team = crate::rbac::team_token(&server, "alice", &["team-a"]).await;
    let viewer = server.token(TokenRole::Viewer).await;
    let operator = server.token(TokenRole::Operator).await;
    let metrics = server.token(TokenRole::Metrics).await;
    let callers: [(&str, &str); 6] = [
        (&viewer, "team-a"),
        (&operator, "team-a"),
        (&server.admin_token, "team-a"),
        (&metrics, "team-a"),
        (&team, "team-a"),
        (&team, "team-b"),
    ];
    let mut header = vec!["resource".to_owned()];
    header.extend(RBAC_CALLERS.iter().map(|s| (*s).to_owned()));
    let mut lines = vec![
        markdown_row(&header),
        markdown_row(&vec!["---".to_owned(); header.len()]),
    ];
    let mut disagreements = Vec::new();
    for (group, resource, subresource) in RBAC_RESOURCES {
        let verbs = row_verbs(resource, subresource);
        let combined = if subresource.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}/{subresource}")
        };
        let label = if group.is_empty() {
            format!("`{combined}`")
        } else {
            format!("`{combined}` ({group})")
        };
        let mut cells = vec![label];
        for (token, namespace) in callers {
            let cluster_scoped = matches!(
                resource,
                "tokens" | "clusterroles" | "clusterrolebindings" | "selfsubjectaccessreviews"
            );
            let mut allowed = Vec::new();
            for verb in &verbs {
                let spec = json!({"resourceAttributes": {
                    "verb": verb, "group": group, "resource": resource,
                    "subresource": subresource,
                    "namespace": if cluster_scoped { "" } else { namespace },
                    "name": if matches!(*verb, "list" | "watch" | "deletecollection") || (*verb == "create" && subresource.is_empty()) { "" } else { "matrix-absent" },
                }});
                let answer = review_allows(&server, token, spec).await;
                let (method, path, body) =
                    rbac_request(group, resource, subresource, namespace, verb);
                let mut request = server.with_token(method.clone(), &path, token);
                if let Some(body) = body {
                    let content_type = if method == Method::PATCH {
                        "application/merge-patch+json"
                    } else {
                        "application/json"
                    };
                    request = request
                        .header("content-type", content_type)
                        .body(serde_json::to_vec(&body).expect("body"));
                }
                let status = request.send().await.expect("request").status().as_u16();
                let agrees = if answer {
                    status != 401 && status != 403
                } else {
                    status == 403 || status == 405
                };
                if !agrees {
                    disagreements.push(format!(
                        "{method} {path} as {namespace} caller: review says allowed={answer}, the server {status}"
                    ));
                }
                allowed.push(answer);
            }
            cells.push(rbac_cell(&verbs, &allowed));
        }
        lines.push(markdown_row(&cells));
    }
    let mut metrics_row = vec!["`GET /metrics` (non-resource)".to_owned()];
    for (token, _) in callers {
        let answer = review_allows(
            &server,
            token,
            json!({"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}),
        )
        .await;
        let status = server
            .with_token(Method::GET, "/metrics", token)
            .send()
            .await
            .expect("metrics")
            .status();
        if answer != (status == StatusCode::OK) {
            disagreements.push(format!("GET /metrics: review {answer}, server {status}"));
        }
        metrics_row.push(if answer { "get" } else { "-" }.to_owned());
    }
    lines.push(markdown_row(&metrics_row));
    server.stop().await;
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));

    let table = lines.join("\n");
    println!("{table}");
    let write = std::env::var_os("FLOTTA_WRITE_SECURITY_TABLE").is_some_and(|v| v == "1");
    let path = security_doc();
    let doc = std::fs::read_to_string(&path).expect("docs/security.md");
    let doc = sync_doc_block(&doc, RBAC_BEGIN, RBAC_END, &table, write);
    if write {
        std::fs::write(&path, doc).expect("write docs/security.md");
    }
}
