//! OIDC sign-in against a real provider: Keycloak, started by `scripts/keycloak.sh`
//! on loopback over HTTPS (flotta-testing/src/keycloak.rs). Users get tokens from
//! Keycloak; the server accepts them, maps their groups to RBAC, refuses expired,
//! wrong-audience, wrong-issuer and tampered tokens with the reason, and follows a
//! rotation of Keycloak's signing keys.

use std::time::Duration;

use flotta_server::oidc::OidcIssuerConfig;
use flotta_testing::keycloak::{self, ALICE, BOB, Keycloak, Realm};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::api_harness::{TestServer, client_trusting, collection, expect_json, expect_status};
use crate::rbac::grant_team;

#[test]
fn keycloak_is_there_on_ci() {
    keycloak::require_in_ci();
}

/// The issuer settings docs/access-control.md shows: user names from
/// `preferred_username`, groups from `groups`, the CA of Keycloak's certificate.
fn issuer_config(realm: &Realm) -> OidcIssuerConfig {
    let mut config = OidcIssuerConfig::new(realm.issuer(), "flotta");
    config.policy.username_claim = "preferred_username".into();
    config.certificate_authority = Some(realm.keycloak().ca_file());
    // A rotation is followed at once (the default waits 10 s between fetches).
    config.keys_min_refresh = Duration::ZERO;
    config
}

async fn server_trusting(realm: &Realm) -> TestServer {
    TestServer::builder()
        .oidc(issuer_config(realm))
        .start()
        .await
}

async fn get(server: &TestServer, path: &str, token: &str) -> reqwest::Response {
    server
        .with_token(Method::GET, path, token)
        .send()
        .await
        .expect("request")
}

/// The message of a 401 answer.
async fn refusal(server: &TestServer, path: &str, token: &str) -> String {
    let status = expect_status(
        get(server, path, token).await,
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
    )
    .await;
    status["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
#[ignore = "needs Keycloak (scripts/keycloak.sh start; scripts/test.sh starts it)"]
async fn keycloak_users_are_mapped_to_their_teams() {
    let realm = Keycloak::get().create_realm().await;
    let server = server_trusting(&realm).await;
    grant_team(&server, "team-a", "team-a").await;
    grant_team(&server, "team-b", "team-b").await;
    let alice = realm
        .password_grant("flotta", ALICE)
        .await
        .expect("alice's tokens");
    let bob = realm
        .password_grant("flotta", BOB)
        .await
        .expect("bob's tokens");

    // Each sees their team's namespace, through the group claim.
    expect_json(
        get(
            &server,
            &collection("team-a", "edgeworkloads"),
            &alice.id_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    expect_json(
        get(
            &server,
            &collection("team-b", "edgeworkloads"),
            &bob.id_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    // And not the other's: the refusal names the user Keycloak vouched for.
    let refused = get(
        &server,
        &collection("team-b", "edgeworkloads"),
        &alice.id_token,
    )
    .await;
    let status = expect_status(refused, StatusCode::FORBIDDEN, "Forbidden").await;
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("User \"alice\" cannot")),
        "{status}"
    );

    // The server says who it saw: a SelfSubjectAccessReview for alice in team-a.
    let review = expect_json(
        server
            .with_token(
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                &alice.id_token,
            )
            .json(&serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": "team-a", "verb": "create",
                    "group": "management.project-flotta.io", "resource": "edgeworkloads"}}}))
            .send()
            .await
            .expect("review"),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(review["status"]["allowed"], Value::Bool(true), "{review}");

    // What clients are told about signing in: open, no token needed.
    let config: Value = client_trusting(&server.ca_pem())
        .get(format!("{}/auth/config", server.admin_config().server))
        .send()
        .await
        .expect("auth config")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        config["providers"][0]["issuer"],
        realm.issuer().as_str(),
        "{config}"
    );
    assert_eq!(config["providers"][0]["clientId"], "flotta", "{config}");

    // The server's own tokens keep working beside OIDC.
    expect_json(
        server
            .admin(Method::GET, &collection("team-b", "edgeworkloads"))
            .send()
            .await
            .expect("admin"),
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
#[ignore = "needs Keycloak (scripts/keycloak.sh start; scripts/test.sh starts it)"]
async fn tokens_the_policy_does_not_accept_are_refused_with_the_reason() {
    let keycloak = Keycloak::get();
    let realm = keycloak.create_realm().await;
    let server = server_trusting(&realm).await;
    let path = collection("default", "edgedevices");

    // Another client's token: its audience is not `flotta`.
    let other = realm
        .password_grant("other-app", ALICE)
        .await
        .expect("other-app tokens");
    let message = refusal(&server, &path, &other.id_token).await;
    assert!(
        message.contains("audience") && message.contains("other-app"),
        "{message}"
    );

    // A token of an issuer the server does not trust (another realm).
    let stranger = keycloak.create_realm().await;
    let foreign = stranger
        .password_grant("flotta", ALICE)
        .await
        .expect("foreign tokens");
    let message = refusal(&server, &path, &foreign.id_token).await;
    assert!(
        message.contains(&stranger.issuer()) && message.contains("not trusted"),
        "{message}"
    );

    // A tampered token: alice's payload with bob's name does not verify.
    let alice = realm
        .password_grant("flotta", ALICE)
        .await
        .expect("alice's tokens");
    let mut parts: Vec<&str> = alice.id_token.split('.').collect();
    let bob = realm
        .password_grant("flotta", BOB)
        .await
        .expect("bob's tokens");
    let bob_payload = bob.id_token.split('.').nth(1).expect("payload").to_owned();
    parts[1] = &bob_payload;
    let message = refusal(&server, &path, &parts.join(".")).await;
    assert!(message.contains("signature"), "{message}");

    // An expired one: `flotta-short` tokens live 3 s; the server allows 30 s of
    // skew by default, so this server allows none.
    let mut strict = issuer_config(&realm);
    strict.policy.clock_skew = Duration::ZERO;
    let strict = TestServer::builder().oidc(strict).start().await;
    let short = realm
        .password_grant("flotta-short", ALICE)
        .await
        .expect("short tokens");
    let claims = claims_of(&short.access_token);
    let exp = claims["exp"].as_i64().expect("exp");
    // Accepted while valid (the request is answered before exp)...
    let before = get(&strict, &path, &short.access_token).await.status();
    let answered = time::OffsetDateTime::now_utc().unix_timestamp();
    if answered <= exp {
        assert_ne!(
            before,
            StatusCode::UNAUTHORIZED,
            "refused before its expiry"
        );
    }
    // ... refused once expired, saying so.
    let message = flotta_testing::eventually_within(
        "the short token to expire",
        Duration::from_secs(20),
        || async {
            let response = get(&strict, &path, &short.access_token).await;
            if response.status() != StatusCode::UNAUTHORIZED {
                return None;
            }
            response.json::<Value>().await.ok()
        },
    )
    .await;
    assert!(
        time::OffsetDateTime::now_utc().unix_timestamp() > exp,
        "refused before exp"
    );
    assert!(
        message["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{message}"
    );
}

#[tokio::test]
#[ignore = "needs Keycloak (scripts/keycloak.sh start; scripts/test.sh starts it)"]
async fn es256_tokens_are_accepted_and_key_rotation_is_followed() {
    let realm = Keycloak::get().create_realm().await;
    let server = server_trusting(&realm).await;
    let path = collection("default", "edgedevices");

    // ES256 (the flotta-es256 client signs with an EC key; its access token's
    // audience includes flotta). Without a binding alice may not list, which
    // proves the token was accepted: 403, not 401.
    let es = realm
        .password_grant("flotta-es256", ALICE)
        .await
        .expect("ES256 tokens");
    let header = jsonwebtoken_alg(&es.access_token);
    assert_eq!(header, "ES256");
    expect_status(
        get(&server, &path, &es.access_token).await,
        StatusCode::FORBIDDEN,
        "Forbidden",
    )
    .await;

    // RS256, then a rotation: the new key signs, the server fetches the keys anew.
    let first = realm.password_grant("flotta", ALICE).await.expect("tokens");
    expect_status(
        get(&server, &path, &first.id_token).await,
        StatusCode::FORBIDDEN,
        "Forbidden",
    )
    .await;
    realm.rotate_keys().await;
    let second = realm
        .password_grant("flotta", ALICE)
        .await
        .expect("tokens after rotation");
    assert_ne!(
        keycloak::key_id(&first.id_token),
        keycloak::key_id(&second.id_token),
        "the rotation changed the signing key"
    );
    expect_status(
        get(&server, &path, &second.id_token).await,
        StatusCode::FORBIDDEN,
        "Forbidden",
    )
    .await;
    // The old key is still published, so tokens it signed stay valid until they expire.
    expect_status(
        get(&server, &path, &first.id_token).await,
        StatusCode::FORBIDDEN,
        "Forbidden",
    )
    .await;
}

fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn jsonwebtoken_alg(jwt: &str) -> String {
    use base64::Engine;
    let header = jwt.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: Value = serde_json::from_slice(&bytes).expect("JSON");
    header["alg"].as_str().expect("alg").to_owned()
}
