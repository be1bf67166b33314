//! Crash safety of the real binary: workloads are created through the management
//! API and a device sends heartbeats while the server is killed with SIGKILL; after
//! a restart on the same data directory every acknowledged workload is there, and
//! the device status is the one of its last acknowledged heartbeat (or of the one
//! in flight at the kill), and so is its last-seen time at least.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use crate::api_harness::{collection, expect_json, list_names, object_path};
use crate::app_edge_client::{device_client, edge_url, enrol_and_register};
use crate::edge_support::envelope;

const BINARY: &str = env!("CARGO_BIN_EXE_flotta-server");
/// Acknowledged creates before the kill.
const KILL_AFTER: usize = 60;
/// Acknowledged heartbeats before the kill.
const HEARTBEATS_BEFORE_KILL: usize = 10;
const NAMESPACE: &str = "crash";
const DEVICE: &str = "crash-device";

/// The server process, killed when dropped so that a failing test leaves none behind.
pub struct ServerProcess(Child);

impl ServerProcess {
    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the server");
        self.0.wait().expect("reap the server");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the binary on `data_dir` with OS-chosen loopback ports.
fn spawn_server(data_dir: &Path) -> ServerProcess {
    spawn_server_with(data_dir, "127.0.0.1:0", &[])
}

/// Starts the binary on `data_dir` with the Edge API on `edge_listen`, the
/// management API on an OS-chosen loopback port, and `extra` arguments.
pub fn spawn_server_with(data_dir: &Path, edge_listen: &str, extra: &[&str]) -> ServerProcess {
    let child = Command::new(BINARY)
        .args([
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--api-listen",
            "127.0.0.1:0",
            "--edge-listen",
            edge_listen,
        ])
        .args(extra)
        .env("FLOTTA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    ServerProcess(child)
}

pub use crate::api_harness::wait_ready;

/// A heartbeat whose one workload is named after its sequence number, so the
/// stored device status tells which heartbeat was written last.
fn numbered_heartbeat(sequence: usize) -> serde_json::Value {
    envelope(
        "heartbeat",
        json!({"status": "up", "version": "1", "events": [], "workloads": [
            {"name": format!("hb-{sequence:05}"), "status": "Running",
                "last_data_upload": "2026-01-01T00:00:00Z"}]}),
    )
}

fn workload(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"site": "lab"}},
            "pod": {"spec": {"containers": [{"name": "app", "image": "quay.io/test/app:1"}]}}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_workloads_survive_a_sigkill_of_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_server(dir.path());
    let (client, admin) = wait_ready(dir.path(), None).await;
    let url = format!("{}{}", admin.server, collection(NAMESPACE, "edgeworkloads"));

    // Creates one workload after another until a request fails; a failure other
    // than the connection going away (an error status) is returned.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = tokio::spawn({
        let acknowledged = acknowledged.clone();
        let client = client.clone();
        let url = url.clone();
        let token = admin.token.clone();
        async move {
            for i in 0.. {
                let name = format!("w-{i:05}");
                let response = match client
                    .request(Method::POST, &url)
                    .bearer_auth(&token)
                    .json(&workload(&name))
                    .send()
                    .await
                {
                    Ok(response) => response,
                    Err(_) => return None,
                };
                let status = response.status();
                if !status.is_success() {
                    let body = response.text().await.unwrap_or_default();
                    return Some(format!("{name}: {status}: {body}"));
                }
                acknowledged.lock().expect("lock").push(name);
            }
            None
        }
    });

    // Sends heartbeats one after another until a request fails, recording the
    // sequence number of each acknowledged one.
    let device = enrol_and_register(
        &admin.edge_server,
        &admin.certificate_authority,
        dir.path(),
        DEVICE,
    )
    .await;
    // Sequence number of each acknowledged heartbeat and the time it was sent.
    let heartbeats = Arc::new(Mutex::new(Vec::<(usize, OffsetDateTime)>::new()));
    let beater = tokio::spawn({
        let heartbeats = heartbeats.clone();
        let client = device_client(&admin.certificate_authority, &device);
        let url = edge_url(&admin.edge_server, &format!("/data/{DEVICE}/out"));
        async move {
            for sequence in 0.. {
                let sent_at = OffsetDateTime::now_utc();
                let response = match client
                    .post(&url)
                    .json(&numbered_heartbeat(sequence))
                    .send()
                    .await
                {
                    Ok(response) => response,
                    Err(_) => return None,
                };
                let status = response.status();
                if status != StatusCode::OK {
                    let body = response.text().await.unwrap_or_default();
                    return Some(format!("heartbeat {sequence}: {status}: {body}"));
                }
                heartbeats.lock().expect("lock").push((sequence, sent_at));
            }
            None
        }
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().expect("lock").len() < KILL_AFTER
        || heartbeats.lock().expect("lock").len() < HEARTBEATS_BEFORE_KILL
    {
        assert!(Instant::now() < deadline, "creates or heartbeats too slow");
        assert!(!writer.is_finished(), "writer stopped before the kill");
        assert!(!beater.is_finished(), "heartbeats stopped before the kill");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill();
    let failure = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("writer ends after the kill")
        .expect("writer task");
    assert_eq!(failure, None, "only the kill may end the writer");
    let failure = tokio::time::timeout(Duration::from_secs(30), beater)
        .await
        .expect("heartbeats end after the kill")
        .expect("heartbeat task");
    assert_eq!(failure, None, "only the kill may end the heartbeats");
    let (last_heartbeat, last_sent_at) = *heartbeats
        .lock()
        .expect("lock")
        .last()
        .expect("heartbeats acknowledged");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= KILL_AFTER);
    println!(
        "server killed after {} acknowledged creates and {} heartbeats",
        acknowledged.len(),
        last_heartbeat + 1
    );

    let mut child = spawn_server(dir.path());
    let (client, admin) = wait_ready(dir.path(), Some(&admin.server)).await;
    let stored = list_names(
        &client,
        &admin.server,
        &admin.token,
        NAMESPACE,
        "edgeworkloads",
    )
    .await;
    for name in &acknowledged {
        assert!(stored.contains(name), "acknowledged {name} lost");
    }
    // Only the create in flight at the kill may be there unacknowledged.
    assert!(
        stored.len() <= acknowledged.len() + 1,
        "{} stored, {} acknowledged",
        stored.len(),
        acknowledged.len()
    );

    let stored_device = expect_json(
        client
            .get(format!(
                "{}{}",
                admin.server,
                object_path(crate::edge_support::NAMESPACE, "edgedevices", DEVICE)
            ))
            .bearer_auth(&admin.token)
            .send()
            .await
            .expect("device after restart"),
        StatusCode::OK,
    )
    .await;
    let reported = stored_device["status"]["workloads"][0]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("workload status stored: {stored_device}"));
    let in_flight = format!("hb-{:05}", last_heartbeat + 1);
    assert!(
        reported == format!("hb-{last_heartbeat:05}") || reported == in_flight,
        "status of heartbeat {reported} stored, {last_heartbeat} acknowledged last"
    );

    child.kill();
    // The last acknowledged heartbeat's last-seen time was committed before its 200.
    let store = flotta_server::store::SqliteStore::open(
        dir.path().join(flotta_server::config::SQLITE_FILE_NAME),
    )
    .expect("open the killed server's database");
    let seen =
        flotta_server::store::Store::last_seen(&store, crate::edge_support::NAMESPACE, DEVICE)
            .await
            .expect("read last seen")
            .expect("last seen of an acknowledged heartbeat survives the kill");
    // Stored in microseconds, so allow for the truncation.
    assert!(
        seen >= last_sent_at - time::Duration::milliseconds(1),
        "last seen {seen}, heartbeat {last_heartbeat} acknowledged after being sent at {last_sent_at}"
    );
}
