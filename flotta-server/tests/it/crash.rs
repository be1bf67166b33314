//! Crash safety: a child process (this test binary, re-run on `child_writer`)
//! creates objects and prints each acknowledged one; it is killed with SIGKILL in
//! the middle of writing, and every acknowledged object must be in the reopened store.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotta_server::store::ResourceKind;
use serde_json::json;

use crate::store_harness::{Backend, open_locator};

/// Set in the child process: the store locator to write to.
const CHILD_ENV: &str = "FLOTTA_CRASH_TEST_STORE";
/// The child stops on its own after this many writes if never killed.
const CHILD_MAX_WRITES: usize = 100_000;
/// Acknowledgements the parent waits for before killing the child.
const KILL_AFTER: usize = 150;

/// The writing half, run only in the child process the crash tests start; a plain
/// test run (without the variable) has nothing to do here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    let Ok(locator) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = open_locator(&locator).await;
    let mut out = std::io::stdout().lock();
    for i in 0..CHILD_MAX_WRITES {
        let name = format!("obj-{i:06}");
        store
            .create(
                ResourceKind::EdgeDevice,
                "crash",
                &name,
                json!({"spec": {"n": i}}),
            )
            .await
            .expect("create");
        writeln!(out, "ack {name}").expect("stdout");
        out.flush().expect("stdout");
    }
}

/// The object name in an acknowledgement line. The test harness's own
/// "test crash::child_writer ... " may share the line with the first one.
fn acknowledged_name(line: &str) -> Option<String> {
    line.rsplit_once("ack ").map(|(_, name)| name.to_owned())
}

async fn acknowledged_writes_survive_kill(backend: Backend) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash::child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, backend.locator())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start child writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.len() < KILL_AFTER {
        assert!(Instant::now() < deadline, "child too slow");
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(name) = acknowledged_name(&line) {
                    acknowledged.push(name);
                }
            }
            _ => panic!("child ended before being killed"),
        }
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    // Acknowledgements already in the pipe count too.
    for line in lines.map_while(Result::ok) {
        if let Some(name) = acknowledged_name(&line) {
            acknowledged.push(name);
        }
    }

    println!(
        "child killed after {} acknowledged writes",
        acknowledged.len()
    );
    let store = backend.open().await;
    for name in &acknowledged {
        let found = store
            .get(ResourceKind::EdgeDevice, "crash", name)
            .await
            .expect("read after crash");
        assert!(found.is_some(), "acknowledged {name} lost");
    }
    let stored = store
        .list(ResourceKind::EdgeDevice, Some("crash"), &Default::default())
        .await
        .expect("list");
    // At most the one write in flight at the kill may be there unacknowledged.
    assert!(stored.items.len() <= acknowledged.len() + 1);
    assert!(acknowledged.len() >= KILL_AFTER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_kill() {
    acknowledged_writes_survive_kill(Backend::sqlite()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: FLOTTA_TEST_POSTGRES_URL (scripts/test.sh runs it)"]
async fn postgres_acknowledged_writes_survive_kill() {
    acknowledged_writes_survive_kill(Backend::postgres().await).await;
}
