//! The management API's TLS listener: binding, the TLS configuration from the server
//! certificate, and serving HTTP/1.1 with handshake and header timeouts and a graceful
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::server_pki::{ServerPki, pki_files};
use crate::shutdown::stopping;
use crate::start_error::StartError;

/// Time a client has to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers, also the idle time after which
/// a kept-alive connection without a new request is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for open requests before closing connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The TLS configuration of a listener serving the server certificate (no client
/// certificates).
pub fn server_tls_config(
    pki: &ServerPki,
    listener: &'static str,
) -> Result<rustls::ServerConfig, StartError> {
    let certificate_path = pki.dir.join(pki_files::SERVER_CERT);
    let key_path = pki.dir.join(pki_files::SERVER_KEY);
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_certificate_pem.as_bytes())
            .filter_map(Result::ok)
            .collect();
    if chain.is_empty() {
        return Err(StartError::Pem {
            path: certificate_path,
            what: "certificate",
        });
    }
    chain.extend(
        pki.server_issuer_chain_der
            .iter()
            .map(|der| CertificateDer::from(der.clone())),
    );
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).map_err(|_| {
        StartError::Pem {
            path: key_path,
            what: "private key",
        }
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|source| StartError::Tls { listener, source })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds `addr` for the listener named `listener`.
pub async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

/// Accepts TLS connections and serves `router` over HTTP/1.1 until `shutdown`
/// turns true, then lets open connections finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve_tls(
    listener_name: &'static str,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = listener_name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopping(&mut shutdown) => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(listener = listener_name, %peer_addr, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = listener_name, %peer_addr, "TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(listener = listener_name, %peer_addr, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = listener_name,
            "connections still open after the shutdown grace period; closing them"
        );
    }
}
