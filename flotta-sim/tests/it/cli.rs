use std::process::Command;

use serde_json::Value;

#[test]
fn ecdsa_baseline_writes_a_json_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("ecdsa.json");
    let output = Command::new(env!("CARGO_BIN_EXE_flotta-sim"))
        .args(["baseline-ecdsa", "--duration", "0.05", "--json"])
        .arg(&json)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("signatures/s"), "{table}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    assert_eq!(report["scenario"], "baseline-ecdsa");
    assert!(report["throughput_per_s"].as_f64().expect("rate") > 0.0);
    assert!(report["extra"]["verify_per_s"].as_f64().expect("verify") > 0.0);
}

#[test]
fn a_server_that_cannot_start_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_flotta-sim"))
        .args(["steady", "--devices", "1", "--no-progress", "--server-bin"])
        .arg("/nonexistent/flotta-server")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: starting /nonexistent/flotta-server"),
        "{stderr}"
    );
}
