//! The mTLS listener: TLS configuration, the accept loop and the per-connection peer
//! certificate chain handed to request handlers.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flotta_core::pki::tls::ChainOnlyClientVerifier;
use flotta_core::pki::{CertificateAuthority, IdentityError, PeerVerifier, VerifiedPeer};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::EdgeError;
use crate::limits::{BodyProblem, ConnectionLimits, buffer_body};

/// The Edge API's error body (`{"code", "reason", "message"}`) for a body that was
/// refused, with the status core gives the failure.
fn body_problem_response(problem: &BodyProblem) -> axum::response::Response {
    use axum::response::IntoResponse;
    use flotta_core::enrolment::Failure;
    let failure = match problem {
        BodyProblem::TooLarge { .. } => Failure::BodyTooLarge,
        BodyProblem::TooSlow { .. } => Failure::BodyTooSlow,
        BodyProblem::Read(_) => Failure::BadContent,
    };
    let code = failure.status().code();
    let status = axum::http::StatusCode::from_u16(code)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({
        "code": code,
        "reason": failure.as_str(),
        "message": problem.to_string(),
    });
    (status, axum::Json(body)).into_response()
}

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time an Edge API client has to send a request's headers, and the longest a
/// kept-alive connection may sit idle: above the default 60-second heartbeat period.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(90);

/// Streams one HTTP/2 connection may have open at once: an agent needs a handful
/// (the long-poll, a heartbeat, a control poll, an upload), so more is a client
/// misbehaving.
const MAX_CONCURRENT_STREAMS: u32 = 32;

/// Largest header block an HTTP/2 request may carry (HTTP/1.1 has hyper's own
/// limit of the same order).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// How long an HTTP/2 connection may go without a frame from the client before the
/// server pings it, and how long the ping may go unanswered before the connection
/// is closed. Pings find dead peers; an agent's parked long-poll is answered well
/// within the interval, so a live agent is never pinged.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(300);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP/2 side of the Edge API's connections: bounded streams and headers, and
/// pings that close connections to peers that went away.
fn http2_builder() -> hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    builder
}

/// How long [`serve`] waits for open connections to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The certificate chain (DER, end entity first) the client presented on this
/// connection, empty when it presented none. [`serve`] puts it in every request's
/// extensions; only its chain to the fleet CA was checked at the handshake.
///
/// Clones share a per-connection cache of the CA signature check, so that the
/// requests of a keep-alive connection after the first only check time and
/// revocation.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates {
    chain: Arc<[Vec<u8>]>,
    verified: Arc<OnceLock<Option<VerifiedPeer>>>,
}

impl PeerCertificates {
    /// The certificates a client presented, DER, end entity first.
    pub fn new(chain: Vec<Vec<u8>>) -> Self {
        Self {
            chain: chain.into(),
            verified: Arc::default(),
        }
    }

    /// The chain, DER, end entity first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The time-independent verification of the chain (CA signature, subject),
    /// done once per connection; revocation and time are the caller's to check.
    pub(super) fn verified(
        &self,
        verifier: &PeerVerifier,
    ) -> Result<std::borrow::Cow<'_, VerifiedPeer>, IdentityError> {
        match self
            .verified
            .get_or_init(|| verifier.verify_peer(&self.chain).ok())
        {
            Some(verified) => Ok(std::borrow::Cow::Borrowed(verified)),
            // Failures are not cached with their reason; re-run to report it.
            None => verifier
                .verify_peer(&self.chain)
                .map(std::borrow::Cow::Owned),
        }
    }
}

/// [`ChainOnlyClientVerifier`] with the client certificate optional at the handshake,
/// so that a request without one reaches the handler and gets a 401 there.
#[derive(Debug)]
struct OptionalClientCertificate(Arc<ChainOnlyClientVerifier>);

impl ClientCertVerifier for OptionalClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.0.verify_client_cert(end_entity, intermediates, now) {
            // A certificate from another CA is let through so that the request gets a
            // clear 401 instead of an opaque TLS alert; the per-request identity check
            // refuses it (it always checks the issuer). The handshake still proves the
            // client holds the certificate's key.
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// TLS 1.3 server configuration for the Edge API listener.
///
/// The server presents `server_certificate_pem` (one or more PEM certificates, its
/// own first) with `server_key_pem`. A client certificate is asked for but optional.
/// When given, it is checked with [`ChainOnlyClientVerifier`], which ignores validity
/// time so that an expired device certificate still reaches the `registration`
/// handler; a well-formed certificate of another CA is let through too, so that its
/// request is answered 401 rather than cut off with a TLS alert. Issuer, time,
/// revocation and purpose are checked on every request by the handlers.
pub fn tls_server_config(
    ca: &(impl CertificateAuthority + ?Sized),
    server_certificate_pem: &str,
    server_key_pem: &str,
) -> Result<rustls::ServerConfig, EdgeError> {
    let verifier = PeerVerifier::from_authority(ca).map_err(EdgeError::CaCertificate)?;
    tls_server_config_with(verifier, server_certificate_pem, server_key_pem)
}

/// [`tls_server_config`] trusting the CAs of `verifier` (the active CA and those a
/// rotation is retiring, see [`EdgeState::verifier`](super::EdgeState::verifier)).
pub fn tls_server_config_with(
    verifier: PeerVerifier,
    server_certificate_pem: &str,
    server_key_pem: &str,
) -> Result<rustls::ServerConfig, EdgeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client_verifier = Arc::new(OptionalClientCertificate(ChainOnlyClientVerifier::new(
        verifier, &provider,
    )));
    let chain = CertificateDer::pem_slice_iter(server_certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EdgeError::ServerCertificate {
            reason: format!("certificate PEM: {e}"),
        })?;
    if chain.is_empty() {
        return Err(EdgeError::ServerCertificate {
            reason: "no certificate in the certificate PEM".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(server_key_pem.as_bytes()).map_err(|e| {
        EdgeError::ServerCertificate {
            reason: format!("key PEM: {e}"),
        }
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(EdgeError::Tls)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(EdgeError::Tls)?;
    // HTTP/2 first, so that an agent's heartbeats, polls and long-poll share one
    // connection; HTTP/1.1 for clients that do not offer `h2` (Flotta's agents).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TLS connections on `listener` and serves `router` on each, over HTTP/2
/// when the client chose `h2` by ALPN and HTTP/1.1 with keep-alive otherwise, until
/// `shutdown` completes; then stops accepting and gives open connections a few
/// seconds to finish.
///
/// Every request carries the connection's [`PeerCertificates`] as an extension.
/// Failed handshakes and broken connections are dropped silently: they concern one
/// client, not the server.
pub async fn serve(
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with_limits(
        listener,
        tls_config,
        router,
        shutdown,
        edge_connection_limits(),
    )
    .await
}

/// The Edge API's connection limits: headers within [`HEADER_READ_TIMEOUT`] (longer
/// than the default heartbeat period, so that an agent's kept-alive connection
/// survives between heartbeats), bodies within
/// [`BODY_READ_TIMEOUT`](crate::limits::BODY_READ_TIMEOUT) and
/// [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
pub fn edge_connection_limits() -> ConnectionLimits {
    ConnectionLimits::new(
        HEADER_READ_TIMEOUT,
        crate::limits::BODY_READ_TIMEOUT,
        super::MAX_BODY_BYTES,
    )
}

/// [`serve`] with explicit connection limits: a client slower than `limits` allow
/// has its connection closed (headers) or gets 408 (body); a body over the limit
/// gets 413 before any handler runs.
pub async fn serve_with_limits(
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Running out of file descriptors and similar: back off and go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let chain: Vec<Vec<u8>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
                .unwrap_or_default();
            let peer = PeerCertificates::new(chain);
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(peer.clone());
                    let router = router.clone();
                    async move {
                        let request = request.map(axum::body::Body::new);
                        match buffer_body(request, limits.max_body_bytes, limits.body_read_timeout)
                            .await
                        {
                            Ok(request) => router.oneshot(request).await,
                            Err(problem) => Ok(body_problem_response(&problem)),
                        }
                    }
                });
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let connection = http2_builder().serve_connection(TokioIo::new(tls), service);
                let _ = watcher.watch(connection).await;
            } else {
                let connection = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .serve_connection(TokioIo::new(tls), service);
                let _ = watcher.watch(connection).await;
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}
