//! PostgreSQL restarted under load: the `flotta-server` binary runs on a cluster
//! of the test's own (`scripts/postgres.sh` with its own `FLOTTA_PG_DIR`, so the
//! shared test cluster is left alone), a fleet of real agents heartbeats and a
//! client keeps creating workloads; the database is stopped, left down, and started
//! again on the same data, twice: a clean stop, then a crash (`pg_ctl -m immediate`,
//! so the start replays the WAL). The server must recover by itself: heartbeats and
//! writes succeed again, `/readyz` is back to 200, and every write acknowledged
//! before, during or after the outage is stored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use crate::api_harness::{collection, lost_workloads};
use crate::fleet::{Fleet, timing};
use crate::server_crash::{spawn_server_with, wait_ready};

const NAMESPACE: &str = "pgrestart";
const DEVICES: usize = 10;
/// How long the database stays down.
const OUTAGE: Duration = Duration::from_secs(3);
/// The agents' retry backoff cap and heartbeat period.
const RETRY_MAX: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(1);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

/// A cluster of this test's own, removed when dropped.
struct Cluster {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Cluster {
    /// Runs `scripts/postgres.sh ARGS` on this cluster; returns its stdout.
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("bash")
            .arg(script())
            .args(args)
            .env("FLOTTA_PG_DIR", &self.dir)
            .output()
            .expect("scripts/postgres.sh runs");
        assert!(
            output.status.success(),
            "scripts/postgres.sh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("FLOTTA_PG_DIR", &self.dir)
            .output();
    }
}

/// Starts a cluster of our own; panics where PostgreSQL is not installed (the test
/// is ignored unless asked for, and `scripts/test.sh` installs it).
fn own_cluster() -> (Cluster, String) {
    let tools = Command::new("bash")
        .arg(script())
        .arg("tools")
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        tools,
        "this test needs PostgreSQL's server binaries: `scripts/postgres.sh start` installs them"
    );
    let parent = tempfile::tempdir().expect("tempdir");
    // The cluster runs as the postgres user when the tests run as root: it must be
    // able to reach its directory.
    std::fs::set_permissions(
        parent.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the cluster's parent directory");
    let cluster = Cluster {
        dir: parent.path().join("cluster"),
        _parent: parent,
    };
    let started = cluster.run(&["start"]);
    let url = started
        .lines()
        .find_map(|line| line.strip_prefix("FLOTTA_TEST_POSTGRES_URL="))
        .expect("the script prints the URL")
        .to_owned();
    (cluster, url)
}

/// The outcome of each create: when it was answered and whether it succeeded.
type Outcomes = Arc<Mutex<Vec<(Instant, String, bool)>>>;

fn workload(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": name},
        "spec": {"type": "pod", "deviceSelector": {"matchLabels": {"site": "nowhere"}},
            "pod": {"spec": {"containers": [{"name": "app", "image": "quay.io/test/app:1"}]}}},
    })
}

fn acknowledged(outcomes: &Outcomes) -> Vec<String> {
    outcomes
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, _, ok)| *ok)
        .map(|(_, name, _)| name.clone())
        .collect()
}

fn failed(outcomes: &Outcomes) -> usize {
    outcomes
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, _, ok)| !ok)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server binaries (scripts/test.sh runs it)"]
async fn the_server_recovers_when_postgresql_restarts_under_load() {
    let (cluster, url) = own_cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let _server = spawn_server_with(dir.path(), "127.0.0.1:0", &["--database", &url]);
    let (client, admin) = wait_ready(dir.path(), None).await;
    let fleet = Fleet::spawn(
        &admin.edge_server,
        &admin.certificate_authority,
        dir.path(),
        "pg",
        DEVICES,
        timing(HEARTBEAT, RETRY_MAX, Duration::from_secs(10)),
    );
    fleet.wait_registered(Duration::from_secs(60)).await;
    fleet
        .set_heartbeat_period(&client, &admin.server, &admin.token, HEARTBEAT)
        .await;

    // Creates workloads one after another, every 20 ms, through the outage.
    let outcomes: Outcomes = Arc::default();
    let (stop_writer, mut writer_stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn({
        let outcomes = outcomes.clone();
        let client = client.clone();
        let url = format!("{}{}", admin.server, collection(NAMESPACE, "edgeworkloads"));
        let token = admin.token.clone();
        async move {
            for i in 0.. {
                if *writer_stopped.borrow_and_update() {
                    return;
                }
                let name = format!("w-{i:05}");
                let request = client
                    .request(Method::POST, &url)
                    .bearer_auth(&token)
                    .json(&workload(&name))
                    .send();
                let ok = match tokio::time::timeout(Duration::from_secs(10), request).await {
                    Ok(Ok(response)) => response.status() == StatusCode::CREATED,
                    _ => false,
                };
                outcomes
                    .lock()
                    .expect("lock")
                    .push((Instant::now(), name, ok));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let wait_for_writes = |count: usize, what: &'static str| {
        let outcomes = outcomes.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while acknowledged(&outcomes).len() < count {
                assert!(Instant::now() < deadline, "{what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for_writes(20, "no writes before the restart").await;

    // A clean stop (sessions ended, checkpoint), then a crash (WAL replay at start).
    for mode in ["fast", "immediate"] {
        let failed_before = failed(&outcomes);
        cluster.run(&["stop-db", mode]);
        let down = Instant::now();
        // The outage shows: /readyz fails and heartbeats fail while the database is
        // down.
        let mut readyz_down = None;
        while down.elapsed() < OUTAGE {
            if let Ok(response) = client.get(format!("{}/readyz", admin.server)).send().await {
                readyz_down.get_or_insert(response.status());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let failed_heartbeats = fleet
            .members
            .iter()
            .filter(|m| {
                matches!(
                    m.handle.status().last_heartbeat,
                    Some(flotta_agent_lib::HeartbeatResult::Failed { .. })
                )
            })
            .count();
        let acknowledged_before = acknowledged(&outcomes).len();
        cluster.run(&["start-db"]);
        let back = Instant::now();
        let back_at = OffsetDateTime::now_utc();
        let readyz = tokio::spawn({
            let client = client.clone();
            let url = format!("{}/readyz", admin.server);
            async move {
                loop {
                    if let Ok(response) = client.get(&url).send().await
                        && response.status() == StatusCode::OK
                    {
                        return back.elapsed();
                    }
                    assert!(back.elapsed() < Duration::from_secs(60), "/readyz not back");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });

        // Recovery, without restarting the server.
        let heartbeats_back = fleet
            .wait_heartbeating_since(back_at, back, Duration::from_secs(60))
            .await;
        wait_for_writes(acknowledged_before + 20, "writes did not resume").await;
        let write_back = outcomes
            .lock()
            .expect("lock")
            .iter()
            .find(|(at, _, ok)| *ok && *at > back)
            .map(|(at, _, _)| at.duration_since(back))
            .expect("a write succeeded after the restart");
        let readyz_back = readyz.await.expect("readyz task");
        let failed_writes = failed(&outcomes) - failed_before;
        println!(
            "postgres stopped ({mode}) for {:.1} s: /readyz answered {readyz_down:?}, {failed_heartbeats} of {DEVICES} agents saw a heartbeat fail, {failed_writes} creates failed",
            OUTAGE.as_secs_f64()
        );
        println!(
            "figure: PostgreSQL restarted under load (stop -m {mode}, {DEVICES} agents, creates every 20 ms): first acknowledged write {} ms after the database was back, all devices heartbeating after {} ms, /readyz 200 after {} ms; no server restart",
            write_back.as_millis(),
            heartbeats_back.as_millis(),
            readyz_back.as_millis(),
        );
        assert_eq!(
            readyz_down,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "/readyz while the database is down"
        );
        assert!(failed_writes > 0, "no write failed: was the database down?");
        // Each agent retries within its backoff cap; one period covers a heartbeat
        // that was not yet due.
        assert!(
            heartbeats_back <= RETRY_MAX * 2 + HEARTBEAT + Duration::from_secs(2),
            "devices took {heartbeats_back:?} to heartbeat again"
        );
    }
    stop_writer.send_replace(true);
    writer.await.expect("writer task");

    let acknowledged = acknowledged(&outcomes);
    let lost = lost_workloads(&client, &admin, NAMESPACE, &acknowledged).await;
    println!(
        "figure: PostgreSQL restarts: {} acknowledged writes, {} lost",
        acknowledged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    fleet.stop().await;
}
