//! `flotta login` against a real OIDC provider (Keycloak, from
//! `scripts/keycloak.sh`): the authorization-code flow with PKCE through the loopback
//! redirect, the token kept in the client configuration and used by later commands,
//! and its renewal with the refresh token.

use std::process::Stdio;
use std::time::Duration;

use flotta_core::client_config::ClientConfig;
use flotta_server::oidc::OidcIssuerConfig;
use flotta_testing::TestServer;
use flotta_testing::keycloak::{self, ALICE, BOB as BOB_USER, Keycloak};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};

#[test]
fn keycloak_is_there_on_ci() {
    keycloak::require_in_ci();
}

fn flotta_binary() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("flotta")
}

/// Runs `flotta ARGS` with `config`; its exit status, standard output and error.
async fn flotta(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(flotta_binary())
        .env_remove("FLOTTA_CONFIG")
        .env_remove("BROWSER")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .await
        .expect("flotta runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs Keycloak (scripts/keycloak.sh start; scripts/test.sh starts it)"]
async fn login_signs_in_through_the_browser_flow_and_renews_the_token() {
    let keycloak = Keycloak::get();
    let realm = keycloak.create_realm().await;
    let mut issuer = OidcIssuerConfig::new(realm.issuer(), "flotta");
    issuer.policy.username_claim = "preferred_username".into();
    issuer.certificate_authority = Some(keycloak.ca_file());
    let server = TestServer::builder().oidc(issuer).start().await;
    // Team A may read workloads in its namespace (the built-in viewer role there).
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "team-a-viewers", "namespace": "team-a"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flotta:viewer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-a"}],
    });
    let created = server
        .admin(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings",
        )
        .json(&binding)
        .send()
        .await
        .expect("binding");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("alice.yaml");
    let server_ca = dir.path().join("server-ca.pem");
    std::fs::write(&server_ca, server.ca_pem()).expect("CA file");

    let mut login = tokio::process::Command::new(flotta_binary())
        .env_remove("FLOTTA_CONFIG")
        .env_remove("BROWSER")
        .arg("--config")
        .arg(&config)
        .args(["login", "--server", &server.admin_config().server])
        .arg("--certificate-authority")
        .arg(&server_ca)
        .arg("--issuer-certificate-authority")
        .arg(keycloak.ca_file())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("flotta login starts");
    // The address to open is printed, indented, on a line of its own.
    let mut lines = BufReader::new(login.stderr.take().expect("stderr")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stderr line") {
            if let Some(url) = line.trim().strip_prefix("https://") {
                return format!("https://{url}");
            }
        }
        panic!("flotta login ended without printing the address");
    })
    .await
    .expect("the address within 30 s");
    assert!(url.contains("code_challenge_method=S256"), "{url}");

    // The user signs in at Keycloak; Keycloak sends the browser back to the CLI.
    let back = realm.sign_in(&url, ALICE).await.expect("signed in");
    assert!(back.starts_with("http://127.0.0.1:"), "{back}");
    let page = flotta_testing::client_trusting(&server.ca_pem())
        .get(&back)
        .send()
        .await
        .expect("the CLI answers")
        .text()
        .await
        .expect("page");
    assert!(page.contains("Signed in"), "{page}");
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.expect("stderr line") {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = login.wait().await.expect("flotta login ends");
    assert!(status.success(), "flotta login failed: {rest}");
    assert!(rest.contains("Signed in as alice"), "{rest}");

    // The configuration holds the ID token, the issuer and a refresh token; mode 0600.
    let saved =
        ClientConfig::from_yaml(&std::fs::read_to_string(&config).expect("config"), &config)
            .expect("client configuration");
    let oidc = saved.oidc.clone().expect("oidc section");
    assert_eq!(oidc.issuer, realm.issuer());
    assert!(oidc.refresh_token.is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&config)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Later commands use it: team-a's namespace is readable, team-b's is not.
    let (ok, _, stderr) = flotta(&config, &["get", "workloads", "-n", "team-a"]).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = flotta(&config, &["get", "workloads", "-n", "team-b"]).await;
    assert!(!ok && stderr.contains("User \"alice\" cannot"), "{stderr}");

    // A token past its expiry is renewed with the refresh token before the command.
    // The stand-in is not even signed: only the renewal can make the command pass.
    let expired = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
        base64_url(&json!({"iss": realm.issuer(), "exp": 1}).to_string())
    );
    let stale = ClientConfig {
        token: expired.clone(),
        ..saved
    };
    std::fs::write(&config, stale.to_yaml().expect("yaml")).expect("stale config");
    let (ok, _, stderr) = flotta(&config, &["get", "workloads", "-n", "team-a"]).await;
    assert!(ok, "{stderr}");
    let renewed =
        ClientConfig::from_yaml(&std::fs::read_to_string(&config).expect("config"), &config)
            .expect("client configuration");
    assert_ne!(renewed.token, expired, "the token was renewed and saved");
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
#[ignore = "needs Keycloak (scripts/keycloak.sh start; scripts/test.sh starts it)"]
async fn login_with_a_device_code_signs_in_once_the_user_approves_elsewhere() {
    let keycloak = Keycloak::get();
    let realm = keycloak.create_realm().await;
    let mut issuer = OidcIssuerConfig::new(realm.issuer(), "flotta");
    issuer.policy.username_claim = "preferred_username".into();
    issuer.certificate_authority = Some(keycloak.ca_file());
    let server = TestServer::builder().oidc(issuer).start().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("bob.yaml");
    let server_ca = dir.path().join("server-ca.pem");
    std::fs::write(&server_ca, server.ca_pem()).expect("CA file");

    let mut login = tokio::process::Command::new(flotta_binary())
        .env_remove("FLOTTA_CONFIG")
        .arg("--config")
        .arg(&config)
        .args([
            "login",
            "--device",
            "--server",
            &server.admin_config().server,
        ])
        .arg("--certificate-authority")
        .arg(&server_ca)
        .arg("--issuer-certificate-authority")
        .arg(keycloak.ca_file())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("flotta login starts");
    // "Open https://.../device?user_code=ABCD-EFGH on any device to sign in".
    let mut lines = BufReader::new(login.stderr.take().expect("stderr")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = String::new();
        while let Some(line) = lines.next_line().await.expect("stderr line") {
            if let Some(rest) = line.strip_prefix("Open https://") {
                let url = rest.split_whitespace().next().expect("address");
                return format!("https://{url}");
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        panic!("flotta login --device ended without printing where to sign in: {seen}");
    })
    .await
    .expect("the verification address within 30 s");
    assert!(url.contains("user_code="), "{url}");

    // Bob approves on "another device": Keycloak's login form and consent page
    // for that code; the CLI, polling, must then get the tokens and end.
    realm
        .approve_device(&url, BOB_USER)
        .await
        .expect("bob approves the device code");
    let (rest, status) = tokio::time::timeout(Duration::from_secs(60), async {
        let mut rest = String::new();
        while let Some(line) = lines.next_line().await.expect("stderr line") {
            rest.push_str(&line);
            rest.push('\n');
        }
        (rest, login.wait().await.expect("exit status"))
    })
    .await
    .expect("flotta login --device ends within 60 s of the approval");
    assert!(status.success(), "flotta login --device failed: {rest}");
    assert!(rest.contains("Signed in as bob"), "{rest}");
    let (ok, stdout, stderr) = flotta(
        &config,
        &["auth", "can-i", "list", "workloads", "-n", "team-b"],
    )
    .await;
    // Bob is authenticated (no binding yet, so the answer is no, not a 401).
    assert!(!ok && stdout == "no\n", "{stdout}{stderr}");
    assert!(!stderr.contains("401"), "{stderr}");
}
