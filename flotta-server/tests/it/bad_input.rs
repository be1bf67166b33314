//! Bad input over the real listeners: refused with the right status and a message,
//! never a 5xx or a hang. Also replays the committed fuzz corpora of the parsers the
//! server and agent run on outside bytes (wire messages, manifests, agent.toml).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotta_core::manifest::parse_manifests;
use flotta_server::edge::{self, EdgeOptions};
use flotta_server::limits::ConnectionLimits;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api_harness::{TestServer, collection};
use crate::edge_support::{EdgeServer, heartbeat_message};

#[allow(dead_code)]
#[path = "../../../flotta-agent/src/config.rs"]
mod agent_config;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// Bodies the Edge API must refuse with 400 and a message that says why.
fn refused_bodies() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "duplicate key",
            br#"{"directive": "heartbeat", "directive": "enrolment", "content": {}}"#.to_vec(),
            "duplicate key \"directive\"",
        ),
        (
            "nested duplicate key",
            br#"{"directive": "heartbeat", "content": {"status": "up", "status": "down"}}"#
                .to_vec(),
            "duplicate key \"status\" in the object at $.content",
        ),
        (
            "deep nesting",
            format!(
                "{{\"directive\": \"heartbeat\", \"content\": {}1{}}}",
                "[".repeat(5_000),
                "]".repeat(5_000)
            )
            .into_bytes(),
            "nesting deeper than",
        ),
        (
            "invalid UTF-8",
            b"{\"directive\": \"heart\xff\xfebeat\"}".to_vec(),
            "malformed JSON",
        ),
        (
            "huge number",
            br#"{"directive": "heartbeat", "content": {"version": 1e999}}"#.to_vec(),
            "malformed JSON",
        ),
        (
            "number out of field range",
            br#"{"directive": "heartbeat", "content": {"hardware": {"cpu": {"count": 123456789012345678901234567890}}}}"#
                .to_vec(),
            "content.hardware",
        ),
        ("not JSON", b"heartbeat please".to_vec(), "malformed JSON"),
    ]
}

#[tokio::test]
async fn edge_api_refuses_bad_bodies_with_400_and_a_reason() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    let device = server.enrol_and_register("bad-input-device").await;
    let client = server.client(Some(&device));
    let url = server.url("/data/bad-input-device/out");
    for (what, body, reason) in refused_bodies() {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        let error: Value = response.json().await.expect("JSON error");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{what}: {message}");
    }
    // Over the limit: 413, whether the length is declared or streamed.
    let response = client
        .post(&url)
        .body(vec![b' '; edge::MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let chunks = futures::stream::iter(
        (0..(edge::MAX_BODY_BYTES / 65_536 + 2))
            .map(|_| Ok::<_, std::io::Error>(vec![b' '; 65_536])),
    );
    let response = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // And the device still works.
    let response = server
        .post(
            Some(&device),
            "/data/bad-input-device/out",
            &heartbeat_message("up"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // The wire-message corpus: `invalid-*` gets 400, nothing gets a 5xx.
    for path in corpus("wire_message") {
        let body = std::fs::read(&path).expect("corpus file");
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        assert!(!status.is_server_error(), "{}: {status}", name_of(&path));
        if name_of(&path).starts_with("invalid-") {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}", name_of(&path));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn management_api_refuses_bad_bodies_with_400_and_413() {
    let server = TestServer::start().await;
    let url = collection("default", "edgedevices");
    for (what, body, reason) in refused_bodies() {
        // Valid JSON that only the Edge API's typed content refuses.
        if what == "number out of field range" {
            continue;
        }
        let response = server
            .admin(Method::POST, &url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        let status: Value = response.json().await.expect("Status");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{what}: {message}");
    }
    let response = server
        .admin(Method::POST, &url)
        .header("content-type", "application/json")
        .body(vec![b' '; flotta_server::api::MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let status: Value = response.json().await.expect("Status");
    assert_eq!(status["reason"], "RequestEntityTooLarge");
    server.stop().await;
}

/// An Edge listener with short limits, to watch slow clients being cut off.
async fn slow_listener(limits: ConnectionLimits) -> (std::net::SocketAddr, EdgeServer) {
    let server = EdgeServer::start(EdgeOptions::default()).await;
    let pair = flotta_core::pki::issue_server_certificate(
        server.ca.as_ref(),
        &["127.0.0.1"],
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
    .await
    .expect("server certificate");
    let tls = edge::tls_server_config(server.ca.as_ref(), &pair.certificate.pem(), pair.key_pem())
        .expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(edge::serve_with_limits(
        listener,
        Arc::new(tls),
        edge::router(server.state.clone()),
        std::future::pending(),
        limits,
    ));
    (addr, server)
}

/// A TLS connection to `addr` trusting `server`'s CA, without a client certificate.
async fn tls_connect(
    addr: std::net::SocketAddr,
    server: &EdgeServer,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for der in flotta_core::pki::CertificateAuthority::chain_der(server.ca.as_ref()) {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    connector.connect(name, tcp).await.expect("handshake")
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let header_timeout = Duration::from_secs(2);
    let body_timeout = Duration::from_secs(2);
    let (addr, server) = slow_listener(ConnectionLimits::new(
        header_timeout,
        body_timeout,
        edge::MAX_BODY_BYTES,
    ))
    .await;
    let path = format!("{}/data/slow/out", edge::BASE_PATH);

    // Headers dribbled a byte every 300 ms: the connection is closed without an answer
    // once the header time is up.
    let header_client = async {
        let mut stream = tls_connect(addr, &server).await;
        let request = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
        stream.write_all(request.as_bytes()).await.expect("write");
        let started = Instant::now();
        loop {
            if stream.write_all(b"a").await.is_err() || stream.flush().await.is_err() {
                break;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => {
                    // hyper may answer 408 before closing; either way the request is over.
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                    break;
                }
                Err(_) => {}
            }
            assert!(
                started.elapsed() < header_timeout * 5,
                "a client dribbling headers was not cut off"
            );
        }
        started.elapsed()
    };

    // A body dribbled a byte every 300 ms: 408 with a message once the body time is up.
    let body_client = async {
        let mut stream = tls_connect(addr, &server).await;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let started = Instant::now();
        let mut answer = Vec::new();
        loop {
            let _ = stream.write_all(b" ").await;
            let _ = stream.flush().await;
            let mut buf = [0u8; 4096];
            match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(_) => {}
            }
            assert!(
                started.elapsed() < body_timeout * 5,
                "a client dribbling its body was not cut off"
            );
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).to_string(),
        )
    };

    let (header_elapsed, (body_elapsed, body_answer)) = tokio::join!(header_client, body_client);
    println!(
        "slow clients: headers cut after {:.1} s (limit {} s), body answered after {:.1} s (limit {} s)",
        header_elapsed.as_secs_f64(),
        header_timeout.as_secs(),
        body_elapsed.as_secs_f64(),
        body_timeout.as_secs()
    );
    assert!(header_elapsed >= header_timeout - Duration::from_millis(500));
    assert!(
        body_answer.starts_with("HTTP/1.1 408"),
        "slow body answer: {body_answer}"
    );
    assert!(body_elapsed >= body_timeout - Duration::from_millis(500));
    server.stop().await;
}

#[test]
fn manifest_corpus_replays() {
    let mut accepted = 0;
    for path in corpus("manifest") {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let result = parse_manifests(&text);
        let name = name_of(&path);
        if name.starts_with("invalid-") {
            assert!(result.is_err(), "{name} was accepted");
        } else if name.starts_with("seed-") {
            let resources = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let yaml = flotta_core::manifest::to_yaml(&resources).expect("print");
            let again = parse_manifests(&yaml).expect("printed manifest parses");
            assert_eq!(again.len(), resources.len(), "{name}");
            accepted += 1;
        }
    }
    assert!(accepted > 0);
}

#[test]
fn agent_config_corpus_replays() {
    let mut accepted = 0;
    for path in corpus("agent_config") {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let name = name_of(&path);
        let result = agent_config::AgentFile::parse(&text, &path);
        if name.starts_with("invalid-") {
            let error = result
                .err()
                .unwrap_or_else(|| panic!("{name} was accepted"));
            assert!(error.to_string().contains(&name), "{name}: {error}");
        } else if name.starts_with("seed-") {
            let file = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(file.server.starts_with("https://"), "{name}");
            accepted += 1;
        }
    }
    assert!(accepted > 0);
}

#[test]
fn wire_message_corpus_replays_through_the_strict_parser() {
    for path in corpus("wire_message") {
        let bytes = std::fs::read(&path).expect("corpus file");
        let name = name_of(&path);
        let checked = flotta_core::strict_json::from_slice::<flotta_core::wire::Message>(&bytes);
        if name.starts_with("seed-") {
            let message = checked.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(message.directive.is_some(), "{name}");
        } else if name.starts_with("invalid-") && name != "invalid-out-of-range.json" {
            // The out-of-range count is valid JSON; the server refuses it at the
            // typed content, which the HTTP test above checks.
            assert!(checked.is_err(), "{name} was accepted");
        }
    }
}
