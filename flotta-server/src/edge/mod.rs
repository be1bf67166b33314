//! The device-facing Edge API: Flotta's wire protocol over mutual TLS.
//!
//! Routes, under `/api/flotta-management/v1`:
//!
//! | method | path | what |
//! |---|---|---|
//! | `POST` | `/data/{device_id}/out` | directives `enrolment`, `registration`, `heartbeat` |
//! | `GET` | `/data/{device_id}/in` | the device's rendered configuration (directive `device`), with `ETag`, `If-None-Match` and `?wait=SECONDS` long-polling |
//! | `GET` | `/control/{device_id}/in` | control commands: `disconnect` for a deleted device |
//! | `POST` | `/control/{device_id}/out` | control messages from the device (acknowledged) |
//!
//! The pieces: [`tls_server_config`] builds the listener's TLS configuration (client
//! certificate optional, checked only for its chain at the handshake), [`serve`]
//! accepts connections and hands each request the peer's certificate chain as a
//! [`PeerCertificates`] extension, [`router`] answers the requests from an
//! [`EdgeState`]. Background work (config-change wake-ups, certificate revocation of
//! deleted devices) runs in [`EdgeState::spawn_background`], which also loads the
//! in-memory view config polls are answered from (see [`ConfigCacheStats`]). Heartbeat times are
//! written through a [`LastSeenRecorder`] before the heartbeat is answered.
//! See `docs/edge-api.md`.

mod configs;
mod device_cache;
mod handlers;
mod message;
mod notifier;
mod tls;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use flotta_core::pki::{CertificateAuthority, PeerVerifier, RevocationList, Serial};

use crate::store::{LastSeenRecorder, Store, StoreError};

pub use configs::ConfigCacheStats;
pub use handlers::router;
pub use tls::{
    HEADER_READ_TIMEOUT, PeerCertificates, edge_connection_limits, serve, serve_with_limits,
    tls_server_config,
};

/// Base path of every Edge API route.
pub const BASE_PATH: &str = "/api/flotta-management/v1";

/// Largest request body accepted, in bytes; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest long-poll a device may ask for with `?wait=SECONDS`.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Annotation on an `EdgeDevice` listing the serials (lowercase hex, comma separated)
/// of the certificates issued to it, so that they can be revoked when it is deleted.
pub const CERTIFICATE_SERIALS_ANNOTATION: &str = "flotta-rs.io/certificate-serials";

/// Most heartbeat times written in one last-seen transaction.
const LAST_SEEN_MAX_BATCH: usize = 1_000;

/// A certificate authority the Edge API can share between tasks.
pub type SharedCa = Arc<dyn CertificateAuthority + Send + Sync>;

/// How the Edge API behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EdgeOptions {
    /// Approve enrolment requests at once (`EdgeDeviceSignedRequest.spec.approved`
    /// set to true at creation) instead of waiting for an operator.
    pub auto_approve: bool,
    /// Lifetime of issued device certificates.
    pub certificate_lifetime: time::Duration,
    /// Namespace where enrolment requests (`EdgeDeviceSignedRequest`) are kept; a
    /// registering device only knows its id, so the requests live in one place.
    pub signed_request_namespace: String,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            auto_approve: false,
            certificate_lifetime: flotta_core::pki::DEFAULT_DEVICE_LIFETIME,
            signed_request_namespace: "default".to_owned(),
        }
    }
}

impl EdgeOptions {
    /// Sets [`EdgeOptions::auto_approve`].
    pub fn with_auto_approve(mut self, auto_approve: bool) -> Self {
        self.auto_approve = auto_approve;
        self
    }

    /// Sets [`EdgeOptions::certificate_lifetime`].
    pub fn with_certificate_lifetime(mut self, lifetime: time::Duration) -> Self {
        self.certificate_lifetime = lifetime;
        self
    }

    /// Sets [`EdgeOptions::signed_request_namespace`].
    pub fn with_signed_request_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.signed_request_namespace = namespace.into();
        self
    }
}

/// Why the Edge API could not be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// The CA certificate could not be read to check client certificates.
    #[error("the CA certificate cannot be used to check client certificates")]
    CaCertificate(#[source] flotta_core::pki::CertificateError),
    /// The server certificate or key could not be used for TLS.
    #[error("the server TLS certificate or key is unusable: {reason}")]
    ServerCertificate {
        /// What is wrong.
        reason: String,
    },
    /// The TLS configuration was refused by rustls.
    #[error("the TLS configuration is invalid")]
    Tls(#[source] rustls::Error),
    /// A store operation failed.
    #[error("store operation {operation} failed")]
    Store {
        /// Which operation.
        operation: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// Everything the Edge API handlers share: the store, the CA, the revocation list,
/// the policy and the config-change notifier. Cheap to clone.
#[derive(Clone)]
pub struct EdgeState {
    inner: Arc<EdgeInner>,
}

struct EdgeInner {
    store: Arc<dyn Store>,
    ca: SharedCa,
    verifier: PeerVerifier,
    revocations: RwLock<RevocationList>,
    options: EdgeOptions,
    notifier: notifier::ConfigNotifier,
    configs: configs::ConfigCache,
    last_seen: LastSeenRecorder,
    device_statuses: device_cache::DeviceStatusCache,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for EdgeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeState")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl EdgeState {
    /// Builds the state: trusts `ca` for client certificates, loads the revoked
    /// serials from `store` and starts the last-seen writer (a
    /// [`LastSeenRecorder`] on the current tokio runtime, stopped once every clone of
    /// the state is dropped).
    pub async fn new(
        store: Arc<dyn Store>,
        ca: SharedCa,
        options: EdgeOptions,
    ) -> Result<Self, EdgeError> {
        let verifier =
            PeerVerifier::from_authority(ca.as_ref()).map_err(EdgeError::CaCertificate)?;
        let revoked = store
            .revoked_certificates()
            .await
            .map_err(|source| EdgeError::Store {
                operation: "revoked_certificates",
                source,
            })?;
        let revocations = revoked
            .iter()
            .filter_map(|r| serial_from_hex(&r.serial))
            .collect();
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let store_for_last_seen = Arc::clone(&store);
        Ok(Self {
            inner: Arc::new(EdgeInner {
                store,
                ca,
                verifier,
                revocations: RwLock::new(revocations),
                options,
                notifier: notifier::ConfigNotifier::default(),
                configs: configs::ConfigCache::default(),
                last_seen: LastSeenRecorder::start(store_for_last_seen, LAST_SEEN_MAX_BATCH),
                device_statuses: device_cache::DeviceStatusCache::default(),
                shutdown,
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The certificate authority signing device certificates.
    pub fn ca(&self) -> &SharedCa {
        &self.inner.ca
    }

    /// The options the state was built with.
    pub fn options(&self) -> &EdgeOptions {
        &self.inner.options
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.inner
            .revocations
            .read()
            .map(|list| list.is_revoked(serial))
            .unwrap_or(true)
    }

    /// Number of devices with a long-poll in progress.
    pub fn waiting_devices(&self) -> usize {
        self.inner.notifier.waiting_devices()
    }

    /// Counters of the in-memory configuration view: renderings, polls answered
    /// from the cache or the store, devices known, long-poll channels held.
    pub fn config_cache_stats(&self) -> ConfigCacheStats {
        let mut stats = self.inner.configs.stats();
        stats.long_poll_channels = self.inner.notifier.channel_count() as u64;
        stats
    }

    /// Starts the background tasks: following store changes to wake long-polling
    /// devices and revoke deleted devices' certificates. They run until
    /// [`EdgeState::shutdown`].
    ///
    /// Returns once the change watches are established, so that no change made after
    /// this call is missed.
    pub async fn spawn_background(&self) -> Result<tokio::task::JoinHandle<()>, EdgeError> {
        notifier::spawn_watcher(self.clone()).await
    }

    /// Stops the background tasks started by [`EdgeState::spawn_background`] and ends
    /// long-polls in progress. Heartbeat times need no flush: each one is committed
    /// before its heartbeat is answered.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    fn revoke_in_memory(&self, serials: impl IntoIterator<Item = Serial>) {
        if let Ok(mut list) = self.inner.revocations.write() {
            for serial in serials {
                list.revoke(serial);
            }
        }
    }

    fn revocation_snapshot(&self) -> std::sync::RwLockReadGuard<'_, RevocationList> {
        match self.inner.revocations.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Completes once `shutdown` says the state is shut down (or its sender is gone).
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// A serial from the store's lowercase hexadecimal form.
fn serial_from_hex(hex: &str) -> Option<Serial> {
    if !hex.len().is_multiple_of(2) || hex.is_empty() {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    Some(Serial::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_round_trip_through_hex() {
        let serial = Serial::from_bytes(&[0x01, 0xab, 0xff]);
        assert_eq!(serial_from_hex(&serial.to_string()), Some(serial));
        assert_eq!(serial_from_hex("abc"), None);
        assert_eq!(serial_from_hex("zz"), None);
        assert_eq!(serial_from_hex(""), None);
    }
}
