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

mod conditions;
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

pub use conditions::DEFAULT_STATUS_SWEEP_PERIOD;
pub use configs::ConfigCacheStats;
pub(crate) use handlers::enrolment_decision;
pub use handlers::router;
pub use tls::{
    HEADER_READ_TIMEOUT, PeerCertificates, edge_connection_limits, serve, serve_with_limits,
    tls_server_config, tls_server_config_with,
};

/// Base path of every Edge API route (core's [`flotta_core::paths::EDGE_BASE_PATH`]).
pub use flotta_core::paths::EDGE_BASE_PATH as BASE_PATH;

/// Largest request body accepted, in bytes; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest long-poll a device may ask for with `?wait=SECONDS`.
pub const MAX_WAIT: Duration =
    Duration::from_secs(flotta_core::reconcile::MAX_LONG_POLL_SECONDS.unsigned_abs());

/// Annotation on an `EdgeDevice` listing the serials (lowercase hex, comma separated)
/// of the certificates issued to it, so that they can be revoked when it is deleted.
pub const CERTIFICATE_SERIALS_ANNOTATION: &str = "flotta-rs.io/certificate-serials";
/// Annotation on an `EdgeDevice` holding the end of validity (RFC 3339) of the
/// newest certificate issued to it, read by the certificate-expiry gauges.
pub const CERTIFICATE_NOT_AFTER_ANNOTATION: &str = "flotta-rs.io/certificate-not-after";
/// Annotation the server writes on a signed request when the registration
/// certificate was refused for the registered device: when, and why.
pub const REGISTRATION_REFUSED_ANNOTATION: &str = "flotta-rs.io/registration-refused";

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
    /// How long a device's previous certificate keeps working after a renewal
    /// (requests already under way, replicas that have not seen the renewal yet);
    /// it is refused from then on, so a device has at most two valid
    /// certificates, and one of them only for this long.
    pub superseded_grace: std::time::Duration,
    /// How many events are kept, and for how long.
    pub event_retention: flotta_core::events::EventRetention,
    /// CA certificates (DER) a rotation is retiring: certificates they signed are
    /// still accepted, and their devices are told to renew (control command
    /// `renew-certificate`).
    pub retiring_cas: Vec<Vec<u8>>,
    /// The CA certificates (PEM) a device should trust for this server, sent with
    /// each issued certificate (`caBundle` of the registration response) so that a
    /// device moves with a CA rotation; not sent when `None`.
    pub ca_bundle: Option<String>,
    /// How often the status of every device heard from is recomputed as time passes
    /// (a silent device turns offline, a change of what it is served shows in its
    /// conditions); see `docs/server.md`.
    pub status_sweep_period: std::time::Duration,
}

/// The certificate serials recorded on a stored `EdgeDevice` (annotation
/// [`CERTIFICATE_SERIALS_ANNOTATION`]), oldest first.
fn certificate_serials(device: &crate::store::StoredObject) -> Vec<String> {
    device
        .body
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CERTIFICATE_SERIALS_ANNOTATION))
        .and_then(serde_json::Value::as_str)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Default of [`EdgeOptions::superseded_grace`]: ten minutes.
pub const DEFAULT_SUPERSEDED_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            auto_approve: false,
            certificate_lifetime: flotta_core::pki::DEFAULT_DEVICE_LIFETIME,
            signed_request_namespace: "default".to_owned(),
            superseded_grace: DEFAULT_SUPERSEDED_GRACE,
            event_retention: flotta_core::events::EventRetention::default(),
            retiring_cas: Vec::new(),
            ca_bundle: None,
            status_sweep_period: DEFAULT_STATUS_SWEEP_PERIOD,
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

    /// Sets [`EdgeOptions::superseded_grace`].
    pub fn with_superseded_grace(mut self, grace: std::time::Duration) -> Self {
        self.superseded_grace = grace;
        self
    }

    /// Sets [`EdgeOptions::event_retention`].
    pub fn with_event_retention(mut self, retention: flotta_core::events::EventRetention) -> Self {
        self.event_retention = retention;
        self
    }

    /// Sets [`EdgeOptions::retiring_cas`].
    pub fn with_retiring_cas(mut self, certificates_der: Vec<Vec<u8>>) -> Self {
        self.retiring_cas = certificates_der;
        self
    }

    /// Sets [`EdgeOptions::ca_bundle`].
    pub fn with_ca_bundle(mut self, pem: impl Into<String>) -> Self {
        self.ca_bundle = Some(pem.into());
        self
    }

    /// Sets [`EdgeOptions::status_sweep_period`].
    pub fn with_status_sweep_period(mut self, period: std::time::Duration) -> Self {
        self.status_sweep_period = period;
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
    events: crate::events::EventRecorder,
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
        let verifier = PeerVerifier::from_authority(ca.as_ref())
            .and_then(|verifier| verifier.with_retiring(&options.retiring_cas))
            .map_err(EdgeError::CaCertificate)?;
        let revoked = store
            .revoked_certificates()
            .await
            .map_err(|source| EdgeError::Store {
                operation: "revoked_certificates",
                source,
            })?;
        let mut revocations = RevocationList::new();
        for revocation in &revoked {
            if let Some(serial) = serial_from_hex(&revocation.serial) {
                revocations.revoke_from(serial, revocation.revoked_at);
            }
        }
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let store_for_last_seen = Arc::clone(&store);
        let events = crate::events::EventRecorder::new(Arc::clone(&store), options.event_retention);
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
                events,
                shutdown,
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The recorder of events (device and server-side), shared with the
    /// management API.
    pub fn events(&self) -> &crate::events::EventRecorder {
        &self.inner.events
    }

    /// The certificate authority signing device certificates.
    pub fn ca(&self) -> &SharedCa {
        &self.inner.ca
    }

    /// The verifier of client certificates: the CA's chain, and the CAs a rotation
    /// is retiring.
    pub fn verifier(&self) -> &PeerVerifier {
        &self.inner.verifier
    }

    /// The options the state was built with.
    pub fn options(&self) -> &EdgeOptions {
        &self.inner.options
    }

    /// Revokes one certificate now: recorded in the store, refused by this
    /// replica at once (other replicas at their next start).
    pub async fn revoke_certificate(
        &self,
        serial: &Serial,
        namespace: &str,
        device: &str,
    ) -> Result<(), StoreError> {
        let now = time::OffsetDateTime::now_utc();
        self.store()
            .revoke_certificate(&crate::store::RevokedCertificate {
                serial: serial.to_string(),
                namespace: namespace.to_owned(),
                device: device.to_owned(),
                revoked_at: now,
            })
            .await?;
        self.revoke_in_memory_from([serial.clone()], now);
        Ok(())
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.inner
            .revocations
            .read()
            .map(|list| list.is_revoked(serial))
            .unwrap_or(true)
    }

    /// What the server serves device `device` of `namespace` now, from the in-memory
    /// view (rendering it if needed); `None` when the view does not know the device.
    pub(crate) fn served_config(
        &self,
        namespace: &str,
        device: &str,
    ) -> Option<Arc<configs::CachedConfig>> {
        match self.inner.configs.config(namespace, device) {
            configs::Lookup::Config(config) => Some(config),
            configs::Lookup::NotLive | configs::Lookup::Unknown => None,
        }
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
    /// devices and revoke deleted devices' certificates, and the device-status sweep
    /// (see [`EdgeOptions::status_sweep_period`]). They run until
    /// [`EdgeState::shutdown`].
    ///
    /// Returns once the change watches are established, so that no change made after
    /// this call is missed.
    pub async fn spawn_background(&self) -> Result<tokio::task::JoinHandle<()>, EdgeError> {
        let watcher = notifier::spawn_watcher(self.clone()).await?;
        let sweep = conditions::spawn(self.clone(), self.inner.options.status_sweep_period);
        Ok(tokio::spawn(async move {
            let _ = watcher.await;
            let _ = sweep.await;
        }))
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

    /// Refuses `serials` from `at` on.
    fn revoke_in_memory_from(
        &self,
        serials: impl IntoIterator<Item = Serial>,
        at: time::OffsetDateTime,
    ) {
        if let Ok(mut list) = self.inner.revocations.write() {
            for serial in serials {
                list.revoke_from(serial, at);
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
