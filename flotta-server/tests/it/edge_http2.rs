//! HTTP/2 on the Edge API: a flotta-rs client's parked long-poll and its heartbeat
//! share one connection; a client that offers only HTTP/1.1 (Flotta's agents) is
//! served over HTTP/1.1 and needs a second connection for the same two calls.

use std::sync::atomic::Ordering;
use std::time::Duration;

use flotta_client::{ConfigPoll, EdgeClient, Identity};
use flotta_core::wire::Heartbeat;
use flotta_server::edge::EdgeOptions;
use flotta_testing::eventually;

use crate::edge_support::EdgeServer;
use crate::fault_proxy::{FaultProxy, LinkFaults};

/// Connections a device's client opened (counted by a relay in front of the Edge
/// API) to hold a parked long-poll and send a heartbeat while it waits.
async fn connections_for_poll_and_heartbeat(
    server: &EdgeServer,
    device: &str,
    http1_only: bool,
) -> u64 {
    let identity = server.enrol_and_register(device).await;
    let relay = FaultProxy::start(server.edge_addr(), LinkFaults::none(), 7).await;
    let mut builder = EdgeClient::builder(format!("https://{}", relay.addr))
        .ca_pem(server.ca_pem())
        .identity(
            Identity::from_pem(&identity.certificate_pem, &identity.key_pem).expect("identity"),
        );
    if http1_only {
        builder = builder.http1_only();
    }
    let client = builder.build().expect("client");
    let ConfigPoll::Config { etag, .. } = client
        .get_config(device, None, None)
        .await
        .expect("first poll")
    else {
        panic!("a new device got no configuration");
    };
    let poll = tokio::spawn({
        let (client, device) = (client.clone(), device.to_owned());
        async move {
            client
                .get_config(&device, Some(&etag), Some(Duration::from_secs(60)))
                .await
        }
    });
    eventually("the long-poll parked", || async {
        (server.state.waiting_devices() == 1).then_some(())
    })
    .await;
    let heartbeat = Heartbeat {
        status: Some("up".to_owned()),
        workloads: Some(Vec::new()),
        ..Default::default()
    };
    client
        .heartbeat(device, &heartbeat)
        .await
        .expect("a heartbeat while the long-poll is parked");
    assert!(
        !poll.is_finished(),
        "the long-poll was answered before the heartbeat: {:?}",
        poll.await
    );
    poll.abort();
    relay.stats.connections.load(Ordering::SeqCst)
}

#[tokio::test]
async fn an_agent_s_long_poll_and_heartbeat_share_one_http2_connection() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    assert_eq!(
        connections_for_poll_and_heartbeat(&server, "h2-device", false).await,
        1,
        "HTTP/2 carries the heartbeat beside the parked long-poll"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_http1_client_is_served_and_needs_a_connection_per_call_in_flight() {
    let server = EdgeServer::start(EdgeOptions::default().with_auto_approve(true)).await;
    assert_eq!(
        connections_for_poll_and_heartbeat(&server, "h1-device", true).await,
        2,
        "over HTTP/1.1 the parked long-poll holds its connection"
    );
    // A client that offers no protocol by ALPN (Flotta's agents, the test
    // clients) gets HTTP/1.1.
    let identity = server.enrol_and_register("plain-device").await;
    let response = server
        .client(Some(&identity))
        .get(server.url("/data/plain-device/in"))
        .send()
        .await
        .expect("poll");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    server.stop().await;
}
