//! Start-up: the files the server creates and reuses, admin.yaml, the binary's
//! error messages, `token create`, and SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::api_harness::{
    Database, TestServer, client_from_admin_yaml, collection, expect_json, expect_status,
    test_config,
};

const BINARY: &str = env!("CARGO_BIN_EXE_flotta-server");
const PKI_FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "register.crt",
    "register.key",
];

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn read_pki(dir: &Path) -> Vec<Vec<u8>> {
    PKI_FILES
        .iter()
        .map(|name| std::fs::read(dir.join("pki").join(name)).expect("PKI file exists"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_private_pki_files_and_admin_yaml_that_work_and_are_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(test_config(dir.path(), &Database::Sqlite)).await;
    let first = read_pki(dir.path());
    #[cfg(unix)]
    {
        for key in ["ca.key", "server.key", "register.key"] {
            assert_eq!(mode(&dir.path().join("pki").join(key)), 0o600, "{key}");
        }
        assert_eq!(mode(&dir.path().join("admin.yaml")), 0o600);
    }

    // admin.yaml alone is enough to talk to the management API.
    let (client, admin) = client_from_admin_yaml(&dir.path().join("admin.yaml"));
    assert_eq!(admin.kind, "FlottaClientConfig");
    assert_eq!(admin.server, server.base);
    let listed = client
        .get(format!(
            "{}{}",
            admin.server,
            collection("fleet", "edgedevices")
        ))
        .bearer_auth(&admin.token)
        .send()
        .await
        .expect("list with admin.yaml");
    let list = expect_json(listed, StatusCode::OK).await;
    assert_eq!(list["kind"], "EdgeDeviceList");
    server.stop().await;

    let again = TestServer::start_with(test_config(dir.path(), &Database::Sqlite)).await;
    assert_eq!(read_pki(dir.path()), first, "PKI files are reused");
    let (_, admin_again) = client_from_admin_yaml(&dir.path().join("admin.yaml"));
    assert_eq!(admin_again.token, admin.token);
    assert_eq!(
        admin_again.certificate_authority,
        admin.certificate_authority
    );
    let status = again
        .admin(Method::GET, "/readyz")
        .send()
        .await
        .expect("readyz");
    assert_eq!(status.status(), StatusCode::OK);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_answer_with_status_objects() {
    let server = TestServer::start().await;
    let missing = server
        .admin(Method::GET, "/no/such/path")
        .send()
        .await
        .expect("request");
    expect_status(missing, StatusCode::NOT_FOUND, "NotFound").await;
    let wrong_method = server
        .admin(Method::DELETE, &collection("fleet", "edgedevices"))
        .send()
        .await
        .expect("request");
    expect_status(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
    )
    .await;
    let metrics = server
        .admin(Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .contains("flotta_http_requests_total{listener=\"api\",method=\"GET\",code=\"404\"} 1"),
        "{metrics}"
    );
    let openapi = expect_json(
        server
            .client
            .get(format!("{}/openapi.json", server.base))
            .send()
            .await
            .expect("openapi"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(
        openapi["paths"]
            .get("/apis/management.project-flotta.io/v1alpha1/namespaces/{namespace}/edgedevicesignedrequests/{name}")
            .is_some()
    );
    server.stop().await;
}

fn run_binary(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(BINARY)
        .args(args)
        .env("FLOTTA_LOG", "warn")
        .output()
        .expect("binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn binary_failures_are_one_line_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let (code, _, stderr) = run_binary(&[
        "--data-dir",
        data,
        "--api-listen",
        &taken_addr,
        "--edge-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "{stderr}");
    assert!(
        line.starts_with("error: cannot listen for the management API on"),
        "{stderr}"
    );
    assert!(line.contains("in use"), "{stderr}");

    if cfg!(feature = "postgres") {
        let (code, _, stderr) = run_binary(&[
            "--data-dir",
            data,
            "--api-listen",
            "127.0.0.1:0",
            "--edge-listen",
            "127.0.0.1:0",
            "--database",
            "postgres://flotta:secret@127.0.0.1:1/flotta",
        ]);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("cannot open database postgres://flotta:***@127.0.0.1:1/flotta"),
            "{stderr}"
        );
        assert!(!stderr.contains("secret"));
    }

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("file");
    let (code, _, stderr) = run_binary(&["--data-dir", file.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("error: data directory"), "{stderr}");

    let (code, _, stderr) = run_binary(&["--auto-approve", "sometimes"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--auto-approve"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_prints_tokens_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    let mut child = Command::new(BINARY)
        .args([
            "--data-dir",
            &data,
            "--api-listen",
            "127.0.0.1:0",
            "--edge-listen",
            "127.0.0.1:0",
        ])
        .env("FLOTTA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");

    let (client, admin) = crate::api_harness::wait_ready(dir.path(), None).await;

    let (code, stdout, stderr) =
        run_binary(&["token", "create", "--role", "viewer", "--data-dir", &data]);
    assert_eq!(code, Some(0), "{stderr}");
    let viewer = stdout.trim().to_owned();
    assert!(viewer.starts_with("flt_"), "{stdout}");
    let path = collection("fleet", "edgedevicesets");
    let read = client
        .get(format!("{}{path}", admin.server))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("viewer read");
    assert_eq!(read.status(), StatusCode::OK);
    let write = client
        .post(format!("{}{path}", admin.server))
        .bearer_auth(&viewer)
        .json(&serde_json::json!({"metadata": {"name": "s"}, "spec": {}}))
        .send()
        .await
        .expect("viewer write");
    expect_status(write, StatusCode::FORBIDDEN, "Forbidden").await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut exited = None;
    for _ in 0..150 {
        if let Some(status) = child.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = exited.expect("server stops within 15 s of SIGTERM");
    assert!(exited.success(), "{exited:?}");
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read as _;
        stderr.read_to_string(&mut log).expect("log");
    }
    for expected in [
        "management API listening",
        "Edge API listening",
        "register.crt",
        "enrol a device",
        "admin.yaml",
    ] {
        assert!(log.contains(expected), "log mentions {expected:?}: {log}");
    }
}

/// A client of the Edge listener presenting `pki/register.crt`.
fn registration_client(data_dir: &Path, ca_pem: &str) -> reqwest::Client {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.expect("CA PEM")).expect("CA root");
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(data_dir.join("pki/register.crt"))
            .expect("register.crt")
            .map(|c| c.expect("certificate"))
            .collect();
    let key = PrivateKeyDer::from_pem_file(data_dir.join("pki/register.key")).expect("key");
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_enrols_on_the_edge_listener_and_an_operator_approves_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path(), &Database::Sqlite);
    config.auto_approve = false;
    let server = TestServer::start_with(config).await;
    let admin = server.running().admin_config().clone();
    let edge = registration_client(dir.path(), &admin.certificate_authority);
    let enrolment = serde_json::json!({
        "type": "data",
        "message_id": "5f0c6c1e-0000-4000-8000-000000000001",
        "version": 1,
        "sent": "2026-01-01T00:00:00Z",
        "directive": "enrolment",
        "content": {"target_namespace": "fleet", "features": {"modelName": "board"}},
    });
    let response = edge
        .post(format!(
            "{}/api/flotta-management/v1/data/device-7/out",
            admin.edge_server
        ))
        .json(&enrolment)
        .send()
        .await
        .expect("enrolment over mTLS");
    assert_eq!(response.status(), StatusCode::OK, "pending approval");

    let requests = expect_json(
        server
            .admin(
                Method::GET,
                "/apis/management.project-flotta.io/v1alpha1/edgedevicesignedrequests",
            )
            .send()
            .await
            .expect("list"),
        StatusCode::OK,
    )
    .await;
    let request = &requests["items"][0];
    assert_eq!(request["metadata"]["name"], "device-7");
    assert_ne!(request["spec"]["approved"], true);
    assert_eq!(request["spec"]["targetNamespace"], "fleet");
    // Requests are kept in the server's own namespace, whatever the target.
    let request_namespace = request["metadata"]["namespace"]
        .as_str()
        .expect("namespace")
        .to_owned();

    let approved = expect_json(
        server
            .admin(
                Method::PATCH,
                &format!(
                    "{}/device-7",
                    collection(&request_namespace, "edgedevicesignedrequests")
                ),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/merge-patch+json",
            )
            .body(r#"{"spec":{"approved":true}}"#)
            .send()
            .await
            .expect("approve"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(approved["spec"]["approved"], true);
    let again = edge
        .post(format!(
            "{}/api/flotta-management/v1/data/device-7/out",
            admin.edge_server
        ))
        .json(&enrolment)
        .send()
        .await
        .expect("enrolment again");
    assert_eq!(
        again.status(),
        StatusCode::ALREADY_REPORTED,
        "approved: 208"
    );
    server.stop().await;
}
