//! The fleet CA changes under running agents: a rotation (`flotta_server::app::rotate_ca`
//! then `retire_ca`, the server restarted after each step) moves every agent to a
//! certificate of the new CA and to trusting it, without any agent losing contact;
//! and a fleet CA that is an intermediate under another root.

use std::path::Path;
use std::sync::Arc;

use flotta_agent_lib::{AgentEvent, MemoryRuntime, StateItem};
use flotta_core::model::EdgeDevice;
use flotta_core::pki::{BuiltinCa, CertificateAuthority, PeerVerifier};
use flotta_server::app::{pki_files, retire_ca, rotate_ca};
use flotta_testing::ClientIdentity;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use crate::harness::{
    RunningAgent, TestServer, eventually, one_second_heartbeats, quick_heartbeats, read,
};

/// The agent's certificate chain as persisted, DER, its own first.
fn persisted_chain(state: &Path) -> Vec<Vec<u8>> {
    let pem = read(state, StateItem::DeviceCertificate).expect("certificate persisted");
    CertificateDer::pem_slice_iter(&pem)
        .map(|der| der.expect("PEM certificate").to_vec())
        .collect()
}

/// Whether the agent's persisted certificate chains to `ca` alone.
fn signed_by(state: &Path, ca: &BuiltinCa) -> bool {
    let verifier = PeerVerifier::new(&[ca.certificate_der()]).expect("verifier");
    verifier.verify_peer(&persisted_chain(state)).is_ok()
}

/// An agent for `id` keeping its state in `state`, running, registered.
async fn registered_agent(server: &TestServer, id: &str, state: &Path) -> RunningAgent {
    let agent = server
        .agent_builder(id, Arc::new(MemoryRuntime::new()))
        .state_dir(state)
        .timing(quick_heartbeats())
        .build()
        .expect("agent builds");
    let mut agent = RunningAgent::spawn(agent);
    agent
        .wait_for("Registered", |e| matches!(e, AgentEvent::Registered))
        .await;
    agent
}

/// The status of a heartbeat sent over a fresh connection as `identity`, trusting
/// only `ca_pem` for the server.
async fn heartbeat_status(
    server: &TestServer,
    ca_pem: &str,
    identity: &ClientIdentity,
    device: &str,
) -> u16 {
    let client = flotta_testing::identity::tls_client(ca_pem, Some(identity));
    let body = serde_json::json!({
        "type": "data",
        "directive": "heartbeat",
        "message_id": "m-1",
        "version": 1,
        "content": {"status": "up", "version": "0"}
    });
    client
        .post(server.edge_url(&format!("/data/{device}/out")))
        .json(&body)
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

async fn delivered_after(agent: &mut RunningAgent, what: &str) {
    agent
        .wait_for(what, |e| matches!(e, AgentEvent::HeartbeatDelivered))
        .await;
}

/// Waits until the server has seen device `id` (a heartbeat or a configuration
/// poll: an idle agent's long-poll keeps it seen) after `since`.
async fn seen_after(server: &TestServer, id: &str, since: time::OffsetDateTime) {
    let client = server.management_client();
    eventually(&format!("{id} seen after {since}"), || async {
        let device: EdgeDevice = client.get("default", id).await.ok()?;
        let seen = device.status?.last_seen?.0.as_second();
        (seen > since.unix_timestamp()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_ca_rotation_moves_every_agent_to_the_new_ca_without_losing_contact() {
    let mut server = TestServer::start().await;
    let pki_dir = server.config().pki_dir();
    let old_ca = server.ca().clone();
    let old_registration = server.registration_identity();
    let old_device = server.device_identity("outsider", "default");

    let mut agents = Vec::new();
    for i in 0..3 {
        let id = format!("rot-{i}");
        let state = tempfile::tempdir().expect("state dir");
        let agent = registered_agent(&server, &id, state.path()).await;
        one_second_heartbeats(&server, &id, state.path()).await;
        assert!(signed_by(state.path(), &old_ca));
        agents.push((id, state, agent));
    }

    // Step 1: a new CA signs; the old one stays trusted.
    server.stop_keeping_data().await;
    let report = rotate_ca(&pki_dir, time::OffsetDateTime::now_utc())
        .await
        .expect("rotation starts");
    assert!(report.previous.is_some());
    server.start_again().await;
    let new_ca = server.ca().clone();
    assert_ne!(new_ca.certificate_der(), old_ca.certificate_der());
    let bundle = std::fs::read_to_string(pki_dir.join(pki_files::CA_BUNDLE)).expect("bundle");

    // Told to renew at their next control poll, every agent moves to the new CA
    // and keeps reporting.
    for (id, state, agent) in &mut agents {
        agent
            .wait_for("CertificateRenewed", |e| {
                matches!(e, AgentEvent::CertificateRenewed { .. })
            })
            .await;
        assert!(signed_by(state.path(), &new_ca), "{id} on the new CA");
        let trusted = read(state.path(), StateItem::ServerTrust).expect("trust saved");
        assert_eq!(
            String::from_utf8_lossy(&trusted),
            bundle,
            "{id} trusts both CAs"
        );
        // The renewal is reported at once, on the new certificate.
        delivered_after(agent, "a heartbeat on the new certificate").await;
    }
    // During the overlap the old registration certificate and old device
    // certificates still work.
    let old_trust = old_ca.chain_pem();
    assert_eq!(
        heartbeat_status(&server, &old_trust, &old_device, "outsider").await,
        404,
        "an old-CA certificate of an unknown device is authenticated (404, not 401)"
    );
    let enrolled = flotta_testing::identity::enrol_and_register(
        &server.edge_server(),
        &server.ca_pem(),
        &old_registration,
        "late-joiner",
    )
    .await;
    assert!(signed_by_pem(&enrolled.certificate_pem, &new_ca));

    // Step 2: the old CA is retired.
    server.stop_keeping_data().await;
    retire_ca(&pki_dir).expect("retired");
    let retired = time::OffsetDateTime::now_utc();
    server.start_again().await;
    for (id, _state, _agent) in &agents {
        seen_after(&server, id, retired).await;
    }
    // The server's certificate now chains to the new CA alone.
    let new_trust = new_ca.chain_pem();
    let renewed = ClientIdentity {
        certificate_pem: String::from_utf8(
            read(agents[0].1.path(), StateItem::DeviceCertificate).expect("certificate"),
        )
        .expect("PEM"),
        key_pem: String::from_utf8(read(agents[0].1.path(), StateItem::DeviceKey).expect("key"))
            .expect("PEM"),
    };
    assert_eq!(
        heartbeat_status(&server, &new_trust, &renewed, &agents[0].0).await,
        200
    );
    // Certificates of the retired CA are refused.
    assert_eq!(
        heartbeat_status(&server, &new_trust, &old_device, "outsider").await,
        401
    );
    assert_eq!(
        heartbeat_status(&server, &new_trust, &old_registration, "rot-0").await,
        401
    );

    for (_, _, agent) in agents {
        agent.stop().await;
    }
    server.stop().await;
}

fn signed_by_pem(pem: &str, ca: &BuiltinCa) -> bool {
    let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|der| der.expect("PEM certificate").to_vec())
        .collect();
    PeerVerifier::new(&[ca.certificate_der()])
        .expect("verifier")
        .verify_peer(&chain)
        .is_ok()
}

#[tokio::test]
async fn an_intermediate_fleet_ca_issues_chains_the_agents_present() {
    let now = time::OffsetDateTime::now_utc();
    let root = BuiltinCa::generate_root("operator root", now, 1).expect("root");
    let intermediate = root
        .generate_intermediate("fleet intermediate", now)
        .expect("intermediate");
    let data = tempfile::tempdir().expect("data dir");
    let pki = data.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    let (chain_pem, key_pem) = intermediate.to_pem();
    std::fs::write(pki.join(pki_files::CA_CERT), &chain_pem).expect("ca.crt");
    std::fs::write(pki.join(pki_files::CA_KEY), &key_pem).expect("ca.key");
    let server = TestServer::builder().data_dir(data.path()).start().await;

    let state = tempfile::tempdir().expect("state dir");
    let mut agent = registered_agent(&server, "chained", state.path()).await;
    delivered_after(&mut agent, "a heartbeat with the chained certificate").await;

    // The agent holds its certificate and the intermediate, and the chain leads to
    // the root alone.
    let chain = persisted_chain(state.path());
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], intermediate.certificate_der());
    let root_only = PeerVerifier::new(&[root.certificate_der()]).expect("verifier");
    assert!(root_only.verify_peer(&chain).is_ok());
    assert!(
        root_only.verify_peer(&chain[..1]).is_err(),
        "without the intermediate the root alone cannot vouch for the device"
    );
    eventually("the device stored", || async {
        server
            .management_client()
            .get::<EdgeDevice>("default", "chained")
            .await
            .ok()
    })
    .await;
    agent.stop().await;
    server.stop().await;
}
