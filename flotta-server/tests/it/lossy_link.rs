//! A fleet on a lossy link converges: two fleets of real agents run against one
//! `flotta-server` binary at the same time, one directly over loopback and one
//! through a link with 200 ms delay each way and 10 % loss; a workload is created
//! and then changed, and the time each device takes to run it is compared.
//!
//! The link is `tc netem` when the kernel has it (the test then runs again inside
//! a user and network namespace from `unshare -rn`, where it may change the
//! loopback's queueing, and netem delays only the lossy fleet's port); otherwise
//! it is [`FaultProxy`], a userspace model of the same faults. The test prints
//! which one ran.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::api_harness::{collection, expect_json, object_path};
use crate::fault_proxy::{FaultProxy, LinkFaults};
use crate::fleet::{Fleet, fleet_workload, quantile, timing};
use crate::server_crash::{spawn_server_with, wait_ready};

/// Agents per fleet.
const DEVICES: usize = 12;
/// Set in the re-run inside the network namespace.
const IN_NAMESPACE: &str = "FLOTTA_LOSSY_LINK_NETEM";
const TEST_NAME: &str = "lossy_link::a_fleet_converges_over_a_lossy_link";
/// The netem settings of the lossy link (on the loopback, so once each way).
const NETEM: &str = "delay 200ms loss 10%";

/// Shell commands putting netem on loopback traffic to and from `port` only: a
/// priority qdisc whose third band is netem, and filters sending the port's
/// packets there.
fn netem_commands(port: u16) -> String {
    format!(
        "tc qdisc add dev lo root handle 1: prio \
         && tc qdisc add dev lo parent 1:3 handle 30: netem {NETEM} \
         && tc filter add dev lo parent 1:0 protocol ip prio 1 u32 match ip dport {port} 0xffff flowid 1:3 \
         && tc filter add dev lo parent 1:0 protocol ip prio 1 u32 match ip sport {port} 0xffff flowid 1:3"
    )
}

/// Whether the netem setup works in a fresh user and network namespace.
fn netem_available() -> Result<(), String> {
    let output = Command::new("unshare")
        .args(["-rn", "sh", "-c"])
        .arg(format!("ip link set lo up && {}", netem_commands(9)))
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Runs `script` with `sh` (inside the namespace) and fails the test on an error.
fn shell(script: &str) {
    let output = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh runs");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_converges_over_a_lossy_link() {
    let in_namespace = std::env::var_os(IN_NAMESPACE).is_some();
    if !in_namespace {
        match netem_available() {
            Ok(()) => {
                // The namespace needs a process of its own: run this test again in it.
                let status = Command::new("unshare")
                    .arg("-rn")
                    .arg(std::env::current_exe().expect("test binary"))
                    .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
                    .env(IN_NAMESPACE, "1")
                    .status()
                    .expect("test runs in a network namespace");
                assert!(status.success(), "the test failed under netem");
                return;
            }
            Err(reason) => println!("tc netem unavailable ({reason}): using the userspace proxy"),
        }
    } else {
        shell("ip link set lo up");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let _server = spawn_server_with(dir.path(), "127.0.0.1:0", &[]);
    let (client, admin) = wait_ready(dir.path(), None).await;
    let edge: SocketAddr = admin
        .edge_server
        .trim_start_matches("https://")
        .parse()
        .expect("edge address");

    let faults = LinkFaults {
        delay: Duration::from_millis(200),
        loss: 0.10,
        rto: (Duration::from_millis(200), Duration::from_secs(1)),
        reset: 0.005,
    };
    // Under netem the proxy only relays, on the port netem delays.
    let proxy = FaultProxy::start(
        edge,
        if in_namespace {
            LinkFaults::none()
        } else {
            faults
        },
        12,
    )
    .await;
    let link = if in_namespace {
        shell(&netem_commands(proxy.addr.port()));
        format!("tc netem {NETEM} on the lossy fleet's port")
    } else {
        "userspace proxy: 200 ms each way, 10 % of segments retransmitted after an RTO of 200 ms to 1 s (doubling on repeated loss), 0.5 % of segments reset the connection".to_owned()
    };
    println!("lossy link: {link}");

    let agent_timing = timing(
        Duration::from_secs(2),
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let direct = Fleet::spawn(
        &admin.edge_server,
        &admin.certificate_authority,
        dir.path(),
        "direct",
        DEVICES,
        agent_timing,
    );
    let lossy = Fleet::spawn(
        &format!("https://{}", proxy.addr),
        &admin.certificate_authority,
        dir.path(),
        "lossy",
        DEVICES,
        agent_timing,
    );
    let started = Instant::now();
    direct.wait_registered(Duration::from_secs(60)).await;
    let direct_registered = started.elapsed();
    lossy.wait_registered(Duration::from_secs(120)).await;
    let lossy_registered = started.elapsed();

    let url = format!("{}{}", admin.server, collection("default", "edgeworkloads"));
    let mut direct_times = Vec::new();
    let mut lossy_times = Vec::new();
    for (round, image) in ["registry.test/lossy:first", "registry.test/lossy:second"]
        .into_iter()
        .enumerate()
    {
        let workload_path = format!(
            "{}{}",
            admin.server,
            object_path("default", "edgeworkloads", "lossy-app")
        );
        let mut changed = Instant::now();
        // An update names the resource version it read; the server's own status
        // writes move it, so a conflict is read again and retried, as any client of
        // an optimistic-concurrency API does.
        for attempt in 0.. {
            let mut body = fleet_workload("lossy-app", image);
            let request = if round == 0 {
                client.request(Method::POST, &url)
            } else {
                let current = expect_json(
                    client
                        .get(&workload_path)
                        .bearer_auth(&admin.token)
                        .send()
                        .await
                        .expect("get workload"),
                    StatusCode::OK,
                )
                .await;
                body["metadata"]["resourceVersion"] =
                    current["metadata"]["resourceVersion"].clone();
                client.request(Method::PUT, &workload_path)
            };
            changed = Instant::now();
            let response = request
                .bearer_auth(&admin.token)
                .json(&body)
                .send()
                .await
                .expect("workload write");
            if response.status() == StatusCode::CONFLICT && round > 0 && attempt < 10 {
                continue;
            }
            assert!(
                response.status().is_success(),
                "workload write: {}",
                response.status()
            );
            break;
        }
        let (d, l) = tokio::join!(
            direct.wait_converged("lossy-app", image, changed, Duration::from_secs(30)),
            lossy.wait_converged("lossy-app", image, changed, Duration::from_secs(60)),
        );
        direct_times.extend(d);
        lossy_times.extend(l);
    }

    let stats = &proxy.stats;
    println!(
        "proxy: {} connections, {} chunks, {} lost, {} resets",
        stats.connections.load(Ordering::Relaxed),
        stats.chunks.load(Ordering::Relaxed),
        stats.losses.load(Ordering::Relaxed),
        stats.resets.load(Ordering::Relaxed),
    );
    let ms = |d: Duration| d.as_millis();
    println!(
        "figure: lossy link ({}), {DEVICES} devices per fleet, 2 workload changes: converged p50 {} ms, max {} ms; same fleet direct: p50 {} ms, max {} ms; registered after {:.1} s (direct {:.1} s)",
        if in_namespace {
            "tc netem"
        } else {
            "userspace proxy"
        },
        ms(quantile(&lossy_times, 0.5)),
        ms(quantile(&lossy_times, 1.0)),
        ms(quantile(&direct_times, 0.5)),
        ms(quantile(&direct_times, 1.0)),
        lossy_registered.as_secs_f64(),
        direct_registered.as_secs_f64(),
    );
    if !in_namespace {
        assert!(
            stats.losses.load(Ordering::Relaxed) > 0,
            "the link lost nothing: the faults were not applied"
        );
    }
    // The faults must show: one round trip alone is 400 ms.
    assert!(
        quantile(&lossy_times, 0.5) > quantile(&direct_times, 0.5),
        "the lossy fleet was not slower"
    );
    direct.stop().await;
    lossy.stop().await;
}
