//! The authentication matrix: every Edge API endpoint and directive against every
//! kind of client certificate, and every management API endpoint against every kind
//! of bearer token, over the real listeners of one whole server (TLS, SQLite).
//!
//! The observed table is compared cell by cell with the expected one and must also
//! appear verbatim in `docs/security.md`, so that the document cannot drift from
//! the server. `FLOTTA_WRITE_SECURITY_TABLE=1 cargo test -p flotta-server --test it
//! auth_matrix` rewrites the block in the document from the observed table (after
//! the expected table was changed here deliberately).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotta_core::pki::{
    BuiltinCa, CertificateAuthority, CertificateProfile, DeviceIdentity, DeviceKey,
};
use flotta_server::api::API_PREFIX;
use flotta_server::store::TokenRole;
use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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

const IDENTITIES: [&str; 7] = [
    "no certificate",
    "foreign CA",
    "registration certificate",
    "expired device certificate",
    "revoked device certificate",
    "another device's certificate",
    "valid device certificate",
];

/// Expected Edge API statuses: (method, path, directive) -> one status per
/// identity, in the order of [`IDENTITIES`].
const EDGE_EXPECTED: [(&str, &str, &str, [u16; 7]); 7] = [
    (
        "POST",
        "/data/{id}/out",
        "enrolment",
        [401, 401, 208, 401, 401, 403, 208],
    ),
    (
        "POST",
        "/data/{id}/out",
        "registration",
        [401, 401, 200, 200, 401, 403, 200],
    ),
    (
        "POST",
        "/data/{id}/out",
        "heartbeat",
        [401, 401, 403, 401, 401, 403, 200],
    ),
    (
        "POST",
        "/data/{id}/out",
        "(unknown)",
        [401, 401, 403, 401, 401, 403, 400],
    ),
    (
        "GET",
        "/data/{id}/in",
        "device",
        [401, 401, 403, 401, 401, 403, 200],
    ),
    (
        "GET",
        "/control/{id}/in",
        "-",
        [401, 401, 403, 401, 200, 403, 200],
    ),
    (
        "POST",
        "/control/{id}/out",
        "-",
        [401, 401, 403, 401, 401, 403, 200],
    ),
];

const TOKENS: [&str; 5] = ["no token", "bad token", "viewer", "operator", "admin"];

/// Expected management API statuses: (method, path) -> one status per token kind,
/// in the order of [`TOKENS`]. `{ns}`, `{plural}` and `{name}` stand for any
/// namespace, resource plural and object name.
const API_EXPECTED: [(&str, &str, [u16; 5]); 21] = [
    ("GET", "/healthz", [200, 200, 200, 200, 200]),
    ("GET", "/readyz", [200, 200, 200, 200, 200]),
    ("GET", "/metrics", [200, 200, 200, 200, 200]),
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
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.expect("CA PEM")).expect("CA root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots);
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(identity.certificate_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate");
            let key =
                PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
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
    let issued = ca.issue(&key.public_key_der(), &profile).expect("issue");
    ClientIdentity {
        certificate_pem: issued.pem(),
        key_pem: key.to_pem(),
    }
}

fn markdown_row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

fn edge_table(rows: &[(&str, &str, &str, [u16; 7])]) -> String {
    let mut header = vec![
        "method".to_owned(),
        "path".to_owned(),
        "directive".to_owned(),
    ];
    header.extend(IDENTITIES.iter().map(|s| (*s).to_owned()));
    let mut lines = vec![
        markdown_row(&header),
        markdown_row(&vec!["---".to_owned(); header.len()]),
    ];
    for (method, path, directive, codes) in rows {
        let mut cells = vec![
            (*method).to_owned(),
            format!("`{path}`"),
            (*directive).to_owned(),
        ];
        cells.extend(codes.iter().map(u16::to_string));
        lines.push(markdown_row(&cells));
    }
    lines.join("\n")
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
    identities: Vec<Option<ClientIdentity>>,
}

async fn edge_world(server: &TestServer, data_dir: &Path) -> EdgeWorld {
    let admin = server.running().admin_config().clone();
    let pki = flotta_server::app::load_or_create_pki(
        &data_dir.join("pki"),
        &[],
        OffsetDateTime::now_utc(),
    )
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
    let probe = edge_client(&admin.certificate_authority, Some(&revoked));
    let probe_url = edge_url(&admin.edge_server, &format!("/data/{DEVICE}/in"));
    let mut refused = false;
    for _ in 0..200 {
        let status = probe.get(&probe_url).send().await.expect("probe").status();
        if status == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused, "deleting the device revokes its certificate");
    let valid = register(()).await;
    let registration = ClientIdentity {
        certificate_pem: pki.registration_certificate_pem.clone(),
        key_pem: pki.registration_key_pem.clone(),
    };
    let now = OffsetDateTime::now_utc();
    EdgeWorld {
        edge_server: admin.edge_server.clone(),
        ca_pem: admin.certificate_authority.clone(),
        identities: vec![
            None,
            Some(foreign_identity(DEVICE)),
            Some(registration),
            Some(expired_identity(&pki.ca, DEVICE)),
            Some(revoked),
            Some(issue_device(
                &pki.ca,
                OTHER_DEVICE,
                NAMESPACE,
                now,
                time::Duration::days(1),
            )),
            Some(valid),
        ],
    }
}

/// One Edge request as `identity`; returns the status after checking that errors
/// come with a message.
async fn edge_request(
    world: &EdgeWorld,
    identity: Option<&ClientIdentity>,
    method: &str,
    path: &str,
    directive: &str,
) -> u16 {
    let client = edge_client(&world.ca_pem, identity);
    let url = edge_url(&world.edge_server, &path.replace("{id}", DEVICE));
    let request = match (method, directive) {
        ("GET", _) => client.get(&url),
        (_, "enrolment") => client.post(&url).json(&enrolment_message(NAMESPACE)),
        (_, "registration") => {
            let key = DeviceKey::generate().expect("key");
            let csr = key.csr(DEVICE).expect("csr").pem();
            client.post(&url).json(&registration_message(Some(&csr)))
        }
        (_, "heartbeat") => client.post(&url).json(&heartbeat_message("up")),
        (_, "(unknown)") => client.post(&url).json(&envelope("reboot-now", json!({}))),
        _ => client.post(&url).json(&envelope("ack", json!({}))),
    };
    let response = request.send().await.expect("edge request");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if status >= 400 {
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("{method} {path} {directive}: error body is not JSON ({e}): {body}")
        });
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path} {directive}: {body}"
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

    let mut edge_observed = Vec::new();
    for (method, path, directive, _) in EDGE_EXPECTED {
        let mut codes = [0u16; 7];
        for (code, identity) in codes.iter_mut().zip(&world.identities) {
            *code = edge_request(&world, identity.as_ref(), method, path, directive).await;
        }
        edge_observed.push((method, path, directive, codes));
    }

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

    let edge_markdown = edge_table(&edge_observed);
    let api_markdown = api_table(&api_observed);
    println!("{edge_markdown}\n\n{api_markdown}");

    let mut mismatches = Vec::new();
    for ((method, path, directive, want), (_, _, _, got)) in
        EDGE_EXPECTED.iter().zip(&edge_observed)
    {
        for ((who, want), got) in IDENTITIES.iter().zip(want).zip(got) {
            if want != got {
                mismatches.push(format!(
                    "{method} {path} {directive} as {who}: expected {want}, got {got}"
                ));
            }
        }
    }
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
