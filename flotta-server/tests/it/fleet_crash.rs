//! The fleet version of `server_crash`: a fleet of real agents heartbeats against
//! the `flotta-server` binary while a client creates workloads; the server is
//! killed with SIGKILL and restarted on the same data directory and address. Every
//! acknowledged create is there after the restart, and every device heartbeats
//! again (its `status.lastSeen` after the restart) within a bound set by the
//! agents' retry backoff cap and heartbeat period.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api_harness::{collection, expect_json, lost_workloads};
use crate::fleet::{Fleet, timing};
use crate::server_crash::{spawn_server_with, wait_ready};

const NAMESPACE: &str = "fleetcrash";
const DEVICES: usize = 50;
/// The agents' retry backoff cap and heartbeat period.
const RETRY_MAX: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_secs(2);

fn workload(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"site": "nowhere"}},
            "pod": {"spec": {"containers": [{"name": "app", "image": "quay.io/test/app:1"}]}}},
    })
}

/// A loopback address nobody listens on right now, for a server that must come
/// back on the same address.
fn free_address() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe binds");
    probe.local_addr().expect("probe address").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_heartbeats_again_after_a_sigkill_of_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let edge_listen = free_address();
    let mut server = spawn_server_with(dir.path(), &edge_listen, &[]);
    let (client, admin) = wait_ready(dir.path(), None).await;
    let fleet = Fleet::spawn(
        &admin.edge_server,
        &admin.certificate_authority,
        dir.path(),
        "crash",
        DEVICES,
        timing(HEARTBEAT, RETRY_MAX, Duration::from_secs(10)),
    );
    let started = Instant::now();
    fleet.wait_registered(Duration::from_secs(120)).await;
    fleet
        .set_heartbeat_period(&client, &admin.server, &admin.token, HEARTBEAT)
        .await;
    let registered = started.elapsed();

    // Creates workloads one after another until the kill ends a request.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = tokio::spawn({
        let acknowledged = acknowledged.clone();
        let client = client.clone();
        let url = format!("{}{}", admin.server, collection(NAMESPACE, "edgeworkloads"));
        let token = admin.token.clone();
        async move {
            for i in 0.. {
                let name = format!("w-{i:05}");
                let Ok(response) = client
                    .request(Method::POST, &url)
                    .bearer_auth(&token)
                    .json(&workload(&name))
                    .send()
                    .await
                else {
                    return None;
                };
                if response.status() != StatusCode::CREATED {
                    return Some(format!("{name}: {}", response.status()));
                }
                acknowledged.lock().expect("lock").push(name);
            }
            None
        }
    });
    // Heartbeats under load for two periods.
    let load_since = OffsetDateTime::now_utc();
    tokio::time::sleep(HEARTBEAT * 2).await;
    fleet
        .wait_heartbeating_since(load_since, Instant::now(), Duration::from_secs(30))
        .await;
    assert!(!writer.is_finished(), "the writer stopped before the kill");
    server.kill();
    let killed = Instant::now();
    let failure = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("writer ends after the kill")
        .expect("writer task");
    assert_eq!(failure, None, "only the kill may end the writer");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 10, "too few creates before the kill");

    let _server = spawn_server_with(dir.path(), &edge_listen, &[]);
    let (client, admin) = wait_ready(dir.path(), Some(&admin.server)).await;
    let ready = Instant::now();
    let ready_at = OffsetDateTime::now_utc();
    let back = fleet
        .wait_heartbeating_since(ready_at, ready, Duration::from_secs(60))
        .await;

    let list = |plural: &'static str, namespace: &'static str| {
        let client = client.clone();
        let url = format!("{}{}", admin.server, collection(namespace, plural));
        let token = admin.token.clone();
        async move {
            expect_json(
                client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("list"),
                StatusCode::OK,
            )
            .await
        }
    };
    let lost = lost_workloads(&client, &admin, NAMESPACE, &acknowledged).await;
    // The server's own record agrees: every device's last-seen time is after the
    // restart.
    let devices = list("edgedevices", "default").await;
    let seen_again = devices["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|device| {
            device["status"]["lastSeen"]
                .as_str()
                .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
                .is_some_and(|seen| seen >= ready_at - time::Duration::seconds(1))
        })
        .count();
    let bound = RETRY_MAX * 2 + HEARTBEAT;
    println!(
        "figure: server SIGKILLed under the heartbeats of {DEVICES} agents (registered in {:.1} s) and a create loop: back up {} ms after the kill, every device heartbeating {} ms after the server was ready (bound {} ms = 2 x retry cap {} s + heartbeat period {} s); {} acknowledged creates, {} lost",
        registered.as_secs_f64(),
        ready.duration_since(killed).as_millis(),
        back.as_millis(),
        bound.as_millis(),
        RETRY_MAX.as_secs(),
        HEARTBEAT.as_secs(),
        acknowledged.len(),
        lost.len(),
    );
    assert!(lost.is_empty(), "acknowledged creates lost: {lost:?}");
    assert_eq!(
        seen_again, DEVICES,
        "devices with lastSeen after the restart"
    );
    assert!(back <= bound, "devices took {back:?} to heartbeat again");
    fleet.stop().await;
}
