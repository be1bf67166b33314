//! An in-process Edge API server on a random port with a fresh CA, SQLite store, and
//! client identities made at test time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flotta_core::pki::{
    BuiltinCa, CertificateAuthority, CertificateProfile, CsrPolicy, DeviceIdentity, DeviceKey,
    IssuedCertificate, PeerCertificate, issue_registration_certificate, issue_server_certificate,
};
use flotta_server::edge::{self, EdgeOptions, EdgeState};
use flotta_server::store::{ResourceKind, SqliteStore, Store};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Namespace devices land in by default.
pub const NAMESPACE: &str = "default";

/// A client certificate and its key, PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl ClientIdentity {
    fn from_issued(certificate: &IssuedCertificate, key: &DeviceKey) -> Self {
        Self {
            certificate_pem: certificate.pem(),
            key_pem: key.to_pem(),
        }
    }
}

pub struct EdgeServer {
    pub addr: SocketAddr,
    pub state: EdgeState,
    pub store: Arc<dyn Store>,
    pub ca: Arc<BuiltinCa>,
    registration: ClientIdentity,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    background: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl EdgeServer {
    pub async fn start(options: EdgeOptions) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("flotta.db")).expect("open store"));
        let now = OffsetDateTime::now_utc();
        let ca = Arc::new(BuiltinCa::generate("edge test CA", now).expect("CA"));
        let server_pair =
            issue_server_certificate(ca.as_ref(), &["127.0.0.1"], now, time::Duration::days(1))
                .expect("server certificate");
        let registration_pair =
            issue_registration_certificate(ca.as_ref(), now, time::Duration::days(1))
                .expect("registration certificate");
        let registration = ClientIdentity {
            certificate_pem: registration_pair.certificate.pem(),
            key_pem: registration_pair.key_pem().to_owned(),
        };
        let state = EdgeState::new(store.clone(), ca.clone(), options)
            .await
            .expect("edge state");
        let background = state.spawn_background().await.expect("background tasks");
        let tls = edge::tls_server_config(
            ca.as_ref(),
            &server_pair.certificate.pem(),
            server_pair.key_pem(),
        )
        .expect("tls config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(edge::serve(
            listener,
            Arc::new(tls),
            edge::router(state.clone()),
            async move {
                let _ = stop.await;
            },
        ));
        Self {
            addr,
            state,
            store,
            ca,
            registration,
            shutdown: Some(shutdown),
            server: Some(server),
            background: Some(background),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("serve");
        }
        self.state.shutdown();
        if let Some(background) = self.background.take() {
            background.await.expect("background task");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{}{}", self.addr, edge::BASE_PATH, path)
    }

    /// A client presenting `identity`, or no certificate.
    pub fn client(&self, identity: Option<&ClientIdentity>) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        for der in self.ca.chain_der() {
            roots.add(CertificateDer::from(der)).expect("CA root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let config = match identity {
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
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    }

    pub fn registration_identity(&self) -> ClientIdentity {
        self.registration.clone()
    }

    /// A valid device certificate for `id` in `namespace`, issued directly by the CA.
    pub fn device_identity(&self, id: &str, namespace: &str) -> ClientIdentity {
        issue_device(
            self.ca.as_ref(),
            id,
            namespace,
            OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )
    }

    /// A device certificate for `id` that expired a day ago.
    pub fn expired_device_identity(&self, id: &str, namespace: &str) -> ClientIdentity {
        let key = DeviceKey::generate().expect("device key");
        let device = DeviceIdentity::new(id, namespace).expect("device identity");
        let now = OffsetDateTime::now_utc();
        let profile = CertificateProfile::device(
            &device,
            now - time::Duration::days(3),
            now - time::Duration::days(1),
        )
        .expect("profile");
        let spki = key.public_key_der();
        let issued = self.ca.issue(&spki, &profile).expect("issue");
        ClientIdentity::from_issued(&issued, &key)
    }

    pub async fn post(
        &self,
        identity: Option<&ClientIdentity>,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client(identity)
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, identity: Option<&ClientIdentity>, path: &str) -> reqwest::Response {
        self.client(identity)
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Enrols and registers `id` with the registration certificate (the server must
    /// auto-approve) and returns the device identity it was issued.
    pub async fn enrol_and_register(&self, id: &str) -> ClientIdentity {
        let registration = self.registration_identity();
        let response = self
            .post(
                Some(&registration),
                &format!("/data/{id}/out"),
                &enrolment_message(NAMESPACE),
            )
            .await;
        assert!(
            response.status() == 200 || response.status() == 208,
            "enrolment: {}",
            response.status()
        );
        let key = DeviceKey::generate().expect("device key");
        let csr = key.csr(id).expect("csr").pem();
        let response = self
            .post(
                Some(&registration),
                &format!("/data/{id}/out"),
                &registration_message(Some(&csr)),
            )
            .await;
        assert_eq!(response.status(), 200, "registration");
        let body: Value = response.json().await.expect("registration response");
        let certificate_pem = body["content"]["certificate"]
            .as_str()
            .expect("certificate in the response")
            .to_owned();
        ClientIdentity {
            certificate_pem,
            key_pem: key.to_pem(),
        }
    }

    pub async fn device(&self, id: &str) -> Option<flotta_server::store::StoredObject> {
        self.store
            .get(ResourceKind::EdgeDevice, NAMESPACE, id)
            .await
            .expect("get device")
    }
}

/// Issues a device certificate through the CSR policy, valid from `now` for `lifetime`.
pub fn issue_device(
    ca: &BuiltinCa,
    id: &str,
    namespace: &str,
    now: OffsetDateTime,
    lifetime: time::Duration,
) -> ClientIdentity {
    let key = DeviceKey::generate().expect("device key");
    let csr = key.csr(id).expect("csr");
    let device = DeviceIdentity::new(id, namespace).expect("device identity");
    let policy = CsrPolicy {
        device_lifetime: lifetime,
        ..CsrPolicy::default()
    };
    let issued = policy
        .issue(ca, csr.pem().as_bytes(), &device, now)
        .expect("issue");
    ClientIdentity::from_issued(&issued, &key)
}

/// A device certificate from a CA the server does not trust.
pub fn foreign_identity(id: &str) -> ClientIdentity {
    let ca = BuiltinCa::generate("foreign CA", OffsetDateTime::now_utc()).expect("CA");
    issue_device(
        &ca,
        id,
        NAMESPACE,
        OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
}

pub fn common_name(identity: &ClientIdentity) -> (Option<String>, Option<String>) {
    let cert = PeerCertificate::parse(identity.certificate_pem.as_bytes()).expect("certificate");
    (cert.common_name, cert.organizational_unit)
}

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

pub fn enrolment_message(namespace: &str) -> Value {
    envelope(
        "enrolment",
        json!({"target_namespace": namespace,
            "features": {"modelName": "test-board", "hardware": {"hostname": "enrolling"}}}),
    )
}

pub fn registration_message(csr: Option<&str>) -> Value {
    let mut content = json!({"hardware": {"hostname": "edge-host",
        "cpu": {"architecture": "aarch64", "count": 4, "frequency": 1500}}});
    if let Some(csr) = csr {
        content["certificate_request"] = Value::String(csr.to_owned());
    }
    envelope("registration", content)
}

pub fn heartbeat_message(status: &str) -> Value {
    envelope(
        "heartbeat",
        json!({"status": status, "version": "1", "workloads": [
            {"name": "w1", "status": "Running", "last_data_upload": "2026-01-01T00:00:00Z"}],
            "events": []}),
    )
}
