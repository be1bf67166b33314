//! What an agent puts on the wire, measured from the bytes themselves: a TLS
//! server in this process that terminates the agent's mutual TLS (the Edge API's
//! own rustls set-up), records every request as received (request line, headers,
//! body) and the TLS bytes it arrived in, and answers like the Edge API would.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use flotta_agent_lib::{Agent, AgentTiming, MemoryRuntime, StateItem, StateStore};
use flotta_core::pki::{
    BuiltinCa, CertificateAuthority, CsrPolicy, DeviceIdentity, DeviceKey, IssuedKeyPair,
    issue_registration_certificate, issue_server_certificate,
};
use flotta_core::reconcile::ConfigVersion;
use flotta_core::wire::{DeviceConfiguration, DeviceConfigurationMessage, HeartbeatConfiguration};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A machine-id style device id (32 hex digits), as Flotta's agents use.
const DEVICE_ID: &str = "3f9c2a7e5b1d4c8f9a0e6b2d7c4f1a38";

/// The target of DESIGN.md: an unchanged heartbeat is at most this on the wire.
const HEARTBEAT_BUDGET: usize = 512;

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Captured {
    peer: SocketAddr,
    /// Request line and headers, up to and including the blank line.
    head: String,
    body: String,
    /// TLS bytes (records, as read from TCP) that carried this request; on a
    /// connection's first request they include the handshake.
    tls_bytes: usize,
    first_on_connection: bool,
}

impl Captured {
    fn http_bytes(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// A TCP stream that counts the bytes read from it.
struct Counting {
    inner: tokio::net::TcpStream,
    read: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.read.fetch_add(read, Ordering::Relaxed);
        result
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The configuration the capture server hands out: no workloads, heartbeats
/// every second; its version is the content hash, as the real server's.
fn configuration() -> (String, String) {
    let mut message = DeviceConfigurationMessage {
        device_id: Some(DEVICE_ID.into()),
        configuration: Some(DeviceConfiguration {
            heartbeat: Some(HeartbeatConfiguration {
                period_seconds: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        }),
        workloads: Some(Vec::new()),
        ..Default::default()
    };
    let version = ConfigVersion::of(&message)
        .expect("version")
        .as_str()
        .to_owned();
    message.version = Some(version.clone());
    let envelope = serde_json::json!({
        "type": "data", "message_id": "capture-1", "version": 1,
        "directive": "device", "content": message,
    });
    (version, envelope.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// Serves one connection: parses requests, records them, answers.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    captured: Arc<Mutex<Vec<Captured>>>,
) {
    let read = Arc::new(AtomicUsize::new(0));
    let Ok(mut tls) = acceptor
        .accept(Counting {
            inner: stream,
            read: read.clone(),
        })
        .await
    else {
        return;
    };
    let (version, config) = configuration();
    let mut buffer = Vec::new();
    let mut counted = 0;
    let mut first = true;
    loop {
        // One whole request: head, then `content-length` bytes of body.
        let (head, body) = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end + 4]).into_owned();
                let length: usize = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if buffer.len() >= end + 4 + length {
                    let body =
                        String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
                    buffer.drain(..end + 4 + length);
                    break (head, body);
                }
            }
            let mut chunk = [0u8; 4096];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let total = read.load(Ordering::Relaxed);
        let request = Captured {
            peer,
            head: head.clone(),
            body,
            tls_bytes: total - counted,
            first_on_connection: first,
        };
        counted = total;
        first = false;
        captured.lock().expect("captured").push(request);
        let response = if head.starts_with("POST ") {
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned()
        } else if head.contains("/control/") {
            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
        } else if header(&head, "if-none-match").is_some() {
            // An unchanged configuration: a long-poll that stays open.
            std::future::pending::<()>().await;
            return;
        } else {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\netag: \"{version}\"\r\ncontent-length: {}\r\n\r\n{config}",
                config.len()
            )
        };
        if tls.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

struct CaptureServer {
    url: String,
    ca_pem: String,
    registration: IssuedKeyPair,
    device_key_pem: String,
    device_certificate_pem: String,
    captured: Arc<Mutex<Vec<Captured>>>,
}

impl CaptureServer {
    async fn start() -> CaptureServer {
        let now = OffsetDateTime::now_utc();
        let ca = BuiltinCa::generate("capture CA", now).expect("CA");
        let server = issue_server_certificate(&ca, &["127.0.0.1"], now, time::Duration::days(1))
            .await
            .expect("server certificate");
        let registration = issue_registration_certificate(&ca, now, time::Duration::days(1))
            .await
            .expect("registration certificate");
        let key = DeviceKey::generate().expect("device key");
        let csr = key.csr(DEVICE_ID).expect("CSR");
        let device = CsrPolicy::default()
            .issue(
                &ca,
                csr.der(),
                &DeviceIdentity::new(DEVICE_ID, "default").expect("identity"),
                now,
            )
            .await
            .expect("device certificate");
        let mut tls = flotta_server::edge::tls_server_config(
            &ca,
            &server.certificate.pem(),
            server.key_pem(),
        )
        .expect("TLS configuration");
        // This server speaks HTTP/1.1 only, as Flotta's does: the agent falls back
        // to it, and its requests are the larger for it (HTTP/2 compresses the
        // headers a connection repeats).
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    acceptor.clone(),
                    sink.clone(),
                ));
            }
        });
        CaptureServer {
            url: format!("https://{addr}"),
            ca_pem: ca.chain_pem(),
            registration,
            device_key_pem: key.to_pem(),
            device_certificate_pem: device.pem(),
            captured,
        }
    }

    fn heartbeats(&self) -> Vec<Captured> {
        self.captured
            .lock()
            .expect("captured")
            .iter()
            .filter(|c| c.body.contains("\"directive\":\"heartbeat\""))
            .cloned()
            .collect()
    }
}

/// Waits until `count` heartbeats arrived, or panics after `timeout`.
async fn wait_for_heartbeats(server: &CaptureServer, count: usize, timeout: Duration) {
    flotta_testing::eventually_within(&format!("{count} heartbeats"), timeout, || async {
        (server.heartbeats().len() >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unchanged_heartbeat_fits_in_512_bytes_and_leaves_from_the_bound_address() {
    let server = CaptureServer::start().await;
    let dir = tempfile::tempdir().expect("state directory");
    let state = Arc::new(flotta_agent_lib::FileStateStore::new(dir.path()));
    // A device that registered before: the agent resumes with its identity.
    state
        .save(StateItem::DeviceKey, server.device_key_pem.as_bytes())
        .await
        .expect("key");
    state
        .save(
            StateItem::DeviceCertificate,
            server.device_certificate_pem.as_bytes(),
        )
        .await
        .expect("certificate");
    let bound: IpAddr = "127.0.0.9".parse().expect("address");
    let agent = Agent::builder()
        .server(server.url.clone())
        .ca_pem(server.ca_pem.clone())
        .registration_identity(
            server.registration.certificate.pem(),
            server.registration.key_pem().to_owned(),
        )
        .device_id(DEVICE_ID)
        .state_store(state)
        .runtime(Arc::new(MemoryRuntime::new()))
        .local_address(bound)
        .timing(AgentTiming::default().with_config_wait(Duration::from_secs(60)))
        .build()
        .expect("agent");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        agent
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    // The first heartbeats carry the events of the start (configuration
    // applied); the ones after report nothing new.
    wait_for_heartbeats(&server, 4, Duration::from_secs(30)).await;
    let _ = stop.send(());
    running.await.expect("agent task").expect("agent run");

    let (version, _) = configuration();
    let heartbeats = server.heartbeats();
    let unchanged: Vec<&Captured> = heartbeats
        .iter()
        .filter(|h| !h.first_on_connection && !h.body.contains("\"events\""))
        .collect();
    assert!(
        unchanged.len() >= 2,
        "no unchanged heartbeat on an open connection: {heartbeats:#?}"
    );
    for heartbeat in &unchanged {
        let body: serde_json::Value = serde_json::from_str(&heartbeat.body).expect("JSON body");
        assert_eq!(body["content"]["version"], version.as_str(), "{body}");
        assert_eq!(body["content"]["status"], "up", "{body}");
        assert_eq!(
            body["content"]["workloads"],
            serde_json::json!([]),
            "{body}"
        );
        assert!(
            heartbeat.head.starts_with(&format!(
                "POST /api/flotta-management/v1/data/{DEVICE_ID}/out HTTP/1.1\r\n"
            )),
            "{}",
            heartbeat.head
        );
        println!(
            "unchanged heartbeat: {} bytes of HTTP ({} request line and headers, {} body), {} bytes of TLS records\n{}{}",
            heartbeat.http_bytes(),
            heartbeat.head.len(),
            heartbeat.body.len(),
            heartbeat.tls_bytes,
            heartbeat.head,
            heartbeat.body
        );
        assert!(
            heartbeat.http_bytes() <= HEARTBEAT_BUDGET,
            "an unchanged heartbeat is {} bytes:\n{}{}",
            heartbeat.http_bytes(),
            heartbeat.head,
            heartbeat.body
        );
    }
    // Every connection the agent opened left from the bound address.
    let peers: Vec<IpAddr> = server
        .captured
        .lock()
        .expect("captured")
        .iter()
        .map(|c| c.peer.ip())
        .collect();
    assert!(!peers.is_empty());
    assert!(peers.iter().all(|p| *p == bound), "{peers:?}");
}
