//! The PostgreSQL test cluster named by `FLOTTA_TEST_POSTGRES_URL`.
//!
//! Tests that need it are marked `#[ignore = "needs PostgreSQL (FLOTTA_TEST_POSTGRES_URL)"]`,
//! so a plain `cargo test` reports them as ignored, never as passed. `scripts/test.sh`
//! starts a cluster and runs them with `--include-ignored`; run by hand, a test that
//! finds no cluster panics saying how to start one. On CI (`CI=true`), a missing
//! cluster is a failure: see [`require_in_ci`].

/// The environment variable naming the test cluster.
pub const URL_VARIABLE: &str = "FLOTTA_TEST_POSTGRES_URL";

/// What to do when no cluster is configured.
const HOW_TO: &str = "start one with `eval \"$(scripts/postgres.sh start)\"; \
     export FLOTTA_TEST_POSTGRES_URL` (scripts/test.sh does)";

/// The cluster's URL, if one is configured.
pub fn configured_url() -> Option<String> {
    std::env::var(URL_VARIABLE).ok().filter(|s| !s.is_empty())
}

/// Whether the tests run on CI (`CI=true`, as GitHub Actions and GitLab set it).
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The cluster's URL; panics with how to start one when none is configured.
pub fn postgres_url() -> String {
    match configured_url() {
        Some(url) => url,
        None if on_ci() => panic!(
            "CI=true but {URL_VARIABLE} is not set: the PostgreSQL tests cannot run; {HOW_TO}"
        ),
        None => panic!("{URL_VARIABLE} is not set: this test needs PostgreSQL; {HOW_TO}"),
    }
}

/// Fails on CI when no cluster is configured, so that the ignored PostgreSQL tests
/// cannot go unrun there unnoticed. Outside CI a missing cluster is allowed: those
/// tests then show as ignored.
pub fn require_in_ci() {
    if on_ci() && configured_url().is_none() {
        panic!(
            "CI=true but {URL_VARIABLE} is not set: the PostgreSQL tests would be skipped; {HOW_TO}"
        );
    }
}

/// Creates a database of its own in the test cluster and returns its URL.
pub async fn fresh_database() -> String {
    let base = postgres_url();
    let db = format!("flotta_test_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {URL_VARIABLE} ({base}): {e}"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create test database");
    drop(client);
    let _ = driver.await;
    with_database(&base, &db)
}

/// Replaces the database name of a `postgres://user@host:port/db` URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let base = match main[authority_start..].find('/') {
        Some(slash) => &main[..authority_start + slash],
        None => main,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}
