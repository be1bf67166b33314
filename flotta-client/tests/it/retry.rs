//! The retry policy against a real server: transient failures are retried,
//! client errors are not.

use std::time::{Duration, Instant};

use flotta_client::{Backoff, ClientError, ListParams, ManagementClient, RetryPolicy};
use flotta_core::model::EdgeDevice;

use flotta_testing::TestServer;

fn client_for(server: &TestServer, policy: RetryPolicy) -> ManagementClient {
    let text = std::fs::read_to_string(server.admin_yaml()).expect("admin.yaml");
    let config =
        flotta_client::ClientConfig::from_yaml(&text, &server.admin_yaml()).expect("parses");
    ManagementClient::builder(config.server)
        .token(config.token)
        .ca_pem(config.certificate_authority)
        .retry_policy(policy)
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_get_is_retried_through_a_server_restart() {
    let mut server = TestServer::start().await;
    let client = client_for(
        &server,
        RetryPolicy {
            max_attempts: 40,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(100)),
        },
    );
    server.stop_keeping_data().await;

    // The server is down: the first attempts fail to connect; it comes back while
    // the client is still retrying.
    let request = tokio::spawn(async move {
        client
            .list::<EdgeDevice>(None, &ListParams::default())
            .await
    });
    // Time is what this test is about: the server stays down long enough for the
    // client to spend several attempts (50-100 ms apart) failing to connect.
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.start_again().await;
    let list = request
        .await
        .expect("task")
        .expect("retried until the server was back");
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn without_retries_a_down_server_is_a_connect_error() {
    let mut server = TestServer::start().await;
    let client = client_for(&server, RetryPolicy::never());
    server.stop_keeping_data().await;
    let error = client
        .list::<EdgeDevice>(None, &ListParams::default())
        .await
        .expect_err("down");
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let server = TestServer::start().await;
    // Any retry would wait at least a second.
    let client = client_for(
        &server,
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
        },
    );
    let started = Instant::now();
    let error = client
        .get::<EdgeDevice>("fleet", "missing")
        .await
        .expect_err("404");
    assert!(error.is_not_found());
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "took {:?}: the 404 was retried",
        started.elapsed()
    );
}
