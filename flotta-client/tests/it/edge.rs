//! The Edge API client against the real Edge API over mutual TLS: enrolment,
//! registration, identity swap, configuration polls and heartbeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotta_client::{
    ConfigPoll, EdgeClient, EnrolmentOutcome, Identity, RegistrationOutcome, RetryPolicy,
};
use flotta_core::pki::{BuiltinCa, CertificateAuthority, DeviceKey};
use flotta_core::wire::{EnrolmentInfo, HardwareInfo, Heartbeat, RegistrationInfo};
use flotta_server::store::{ResourceKind, Store};
use flotta_testing::TestServer;
use time::OffsetDateTime;

/// An enrolment into `namespace`.
fn enrolment(namespace: &str) -> EnrolmentInfo {
    EnrolmentInfo {
        target_namespace: Some(namespace.to_owned()),
        ..Default::default()
    }
}

/// A registration with the CSR `pem`.
fn csr_info(pem: String) -> RegistrationInfo {
    RegistrationInfo {
        certificate_request: Some(pem),
        ..Default::default()
    }
}

/// The shared test server, seen from a device: its Edge API's URL and CA, and the
/// fleet registration identity.
struct EdgeServer {
    url: String,
    store: Arc<dyn Store>,
    ca_pem: String,
    registration: Identity,
    _server: TestServer,
}

impl EdgeServer {
    async fn start(auto_approve: bool) -> EdgeServer {
        let server = TestServer::builder()
            .auto_approve(auto_approve)
            .start()
            .await;
        let registration = server.registration_identity();
        EdgeServer {
            url: server.edge_server(),
            store: server.store(),
            ca_pem: server.ca_pem(),
            registration: Identity::from_pem(&registration.certificate_pem, &registration.key_pem)
                .expect("registration identity"),
            _server: server,
        }
    }

    fn client(&self) -> EdgeClient {
        EdgeClient::builder(self.url.clone())
            .ca_pem(self.ca_pem.clone())
            .identity(self.registration.clone())
            .retry_policy(RetryPolicy::never())
            .build()
            .expect("edge client")
    }
}

/// Enrols and registers `id`; returns the device identity.
async fn register(edge: &EdgeClient, id: &str) -> Identity {
    let outcome = edge
        .enrol(id, &enrolment("default"))
        .await
        .expect("enrolment");
    assert!(
        matches!(
            outcome,
            EnrolmentOutcome::Pending | EnrolmentOutcome::AlreadyApproved
        ),
        "{outcome:?}"
    );
    let key = DeviceKey::generate().expect("key");
    let csr = key.csr(id).expect("CSR");
    match edge
        .register(
            id,
            &RegistrationInfo {
                certificate_request: Some(csr.pem()),
                hardware: Some(HardwareInfo {
                    hostname: Some("h".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("registration")
    {
        RegistrationOutcome::Registered {
            certificate_pem, ..
        } => Identity::from_pem(&certificate_pem, &key.to_pem()).expect("device identity"),
        RegistrationOutcome::NotApproved => panic!("auto-approved device was not approved"),
    }
}

#[tokio::test]
async fn after_registration_the_swapped_identity_is_used_by_every_handle() {
    let server = EdgeServer::start(true).await;
    let edge = server.client();
    let same_handle = edge.clone();

    // The registration certificate may not read configuration.
    let refused = edge
        .get_config("edge-01", None, None)
        .await
        .expect_err("registration certificate refused");
    assert_eq!(refused.status(), Some(403), "{refused}");
    assert!(!refused.is_retryable());

    let identity = register(&edge, "edge-01").await;
    same_handle
        .set_identity(identity)
        .expect("identity swapped");

    // The next call, on the other handle, presents the device certificate.
    let ConfigPoll::Config { etag, message } = edge
        .get_config("edge-01", None, None)
        .await
        .expect("configuration")
    else {
        panic!("first poll has no configuration");
    };
    assert!(!etag.is_empty());
    assert_eq!(message.directive.as_deref(), Some("device"));
    let configuration: flotta_core::wire::DeviceConfigurationMessage =
        message.content_as().expect("a device configuration");
    assert_eq!(configuration.device_id.as_deref(), Some("edge-01"));

    assert_eq!(
        edge.get_config("edge-01", Some(&etag), None)
            .await
            .expect("poll"),
        ConfigPoll::NotModified
    );
    let started = Instant::now();
    assert_eq!(
        edge.get_config("edge-01", Some(&etag), Some(Duration::from_secs(1)))
            .await
            .expect("long poll"),
        ConfigPoll::NotModified
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    edge.heartbeat(
        "edge-01",
        &Heartbeat {
            status: Some("up".into()),
            version: Some("1".into()),
            workloads: Some(Vec::new()),
            events: Some(Vec::new()),
            ..Default::default()
        },
    )
    .await
    .expect("heartbeat");

    assert_eq!(edge.control_in("edge-01").await.expect("control"), None);
    // Another device's path is refused with this certificate (checked while it is
    // valid: deleting the device revokes it, and a revoked certificate gets 401).
    let other = edge
        .get_config("edge-02", None, None)
        .await
        .expect_err("not this device");
    assert_eq!(other.status(), Some(403));
    // Once the device is deleted, the control channel tells it to disconnect.
    server
        .store
        .delete(ResourceKind::EdgeDevice, "default", "edge-01", None)
        .await
        .expect("deleted");
    let command = edge
        .control_in("edge-01")
        .await
        .expect("control")
        .expect("a command");
    assert_eq!(command.directive.as_deref(), Some("disconnect"));
}

#[tokio::test]
async fn without_approval_registration_waits() {
    let server = EdgeServer::start(false).await;
    let edge = server.client();
    assert_eq!(
        edge.enrol("edge-05", &enrolment("default"))
            .await
            .expect("enrolment"),
        EnrolmentOutcome::Pending
    );
    let key = DeviceKey::generate().expect("key");
    let csr = key.csr("edge-05").expect("CSR");
    assert_eq!(
        edge.register("edge-05", &csr_info(csr.pem()))
            .await
            .expect("registration answered"),
        RegistrationOutcome::NotApproved
    );
}

#[tokio::test]
async fn a_server_that_is_not_trusted_fails_the_handshake() {
    let server = EdgeServer::start(true).await;
    let other = BuiltinCa::generate("other", OffsetDateTime::now_utc()).expect("CA");
    let edge = EdgeClient::builder(server.url.clone())
        .ca_pem(other.chain_pem())
        .retry_policy(RetryPolicy::never())
        .build()
        .expect("client");
    let error = edge
        .enrol("edge-01", &EnrolmentInfo::default())
        .await
        .expect_err("untrusted");
    assert!(
        matches!(error, flotta_client::ClientError::Connect { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_operator_approval_through_the_management_api_lets_the_device_register() {
    let server = TestServer::builder().auto_approve(false).start().await;
    let pki = server.data_dir().join("pki");
    let read = |name: &str| std::fs::read_to_string(pki.join(name)).expect("PKI file");
    let edge = EdgeClient::builder(server.edge_server())
        .ca_pem(read("ca.crt"))
        .identity(
            Identity::from_pem(&read("register.crt"), &read("register.key")).expect("identity"),
        )
        .build()
        .expect("edge client");
    assert_eq!(
        edge.enrol("edge-21", &enrolment("default"))
            .await
            .expect("enrolment"),
        EnrolmentOutcome::Pending
    );
    let key = DeviceKey::generate().expect("key");
    let csr = csr_info(key.csr("edge-21").expect("CSR").pem());
    assert_eq!(
        edge.register("edge-21", &csr)
            .await
            .expect("registration answered"),
        RegistrationOutcome::NotApproved
    );

    let management = server.management_client();
    let approved = management
        .approve("default", "edge-21")
        .await
        .expect("approved");
    assert_eq!(approved.spec.approved, Some(true));

    let RegistrationOutcome::Registered {
        certificate_pem, ..
    } = edge.register("edge-21", &csr).await.expect("registration")
    else {
        panic!("still not approved after approval");
    };
    edge.set_identity(Identity::from_pem(&certificate_pem, &key.to_pem()).expect("identity"))
        .expect("swapped");
    assert!(matches!(
        edge.get_config("edge-21", None, None)
            .await
            .expect("configuration"),
        ConfigPoll::Config { .. }
    ));
    let device: flotta_core::model::EdgeDevice = management
        .get("default", "edge-21")
        .await
        .expect("device registered");
    assert_eq!(device.metadata.name.as_deref(), Some("edge-21"));
}

/// A TCP relay in front of `upstream` that records the peer address of every
/// connection it accepts.
async fn recording_relay(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = peers.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, peer)) = listener.accept().await {
            seen.lock().expect("peers").push(peer);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, peers)
}

#[tokio::test]
async fn connections_leave_from_the_local_address_the_builder_names() {
    let server = EdgeServer::start(true).await;
    let upstream: std::net::SocketAddr = server
        .url
        .trim_start_matches("https://")
        .parse()
        .expect("server address");
    let (relay, peers) = recording_relay(upstream).await;
    let build = |local: Option<std::net::IpAddr>| {
        let mut builder = EdgeClient::builder(format!("https://{relay}"))
            .ca_pem(server.ca_pem.clone())
            .identity(server.registration.clone())
            .retry_policy(RetryPolicy::never());
        if let Some(address) = local {
            builder = builder.local_address(address);
        }
        builder.build().expect("edge client")
    };

    let bound: std::net::IpAddr = "127.0.0.7".parse().expect("address");
    let outcome = build(Some(bound))
        .enrol("edge-bound", &enrolment("default"))
        .await
        .expect("enrolment through the bound address");
    assert!(matches!(
        outcome,
        EnrolmentOutcome::Pending | EnrolmentOutcome::AlreadyApproved
    ));
    assert_eq!(
        peers
            .lock()
            .expect("peers")
            .iter()
            .map(|p| p.ip())
            .collect::<Vec<_>>(),
        vec![bound]
    );

    // Without the option the operating system picks the address (127.0.0.1 on
    // loopback).
    build(None)
        .enrol("edge-unbound", &enrolment("default"))
        .await
        .expect("enrolment");
    let last = peers.lock().expect("peers").last().map(|p| p.ip());
    assert_eq!(last, Some("127.0.0.1".parse().expect("address")));
}
