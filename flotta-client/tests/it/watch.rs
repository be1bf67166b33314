//! Watch streams: events, resuming after a server restart, relisting after 410.

use std::time::Duration;

use flotta_client::{ClientResult, ListParams, WatchEvent};
use flotta_core::model::{EdgeDevice, Resource};
use futures::{Stream, StreamExt};

use crate::harness::device;
use flotta_testing::TestServer;

/// The next event that is not a transient error, within a deadline.
async fn next_event(
    events: &mut (impl Stream<Item = ClientResult<WatchEvent<EdgeDevice>>> + Unpin),
) -> WatchEvent<EdgeDevice> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.next().await {
                Some(Ok(event)) => return event,
                Some(Err(error)) if error.is_retryable() => continue,
                Some(Err(error)) => panic!("watch failed: {error}"),
                None => panic!("watch ended"),
            }
        }
    })
    .await
    .expect("an event within 20 s")
}

fn summary(event: &WatchEvent<EdgeDevice>) -> (String, String) {
    let name = match event {
        WatchEvent::Added(d) | WatchEvent::Modified(d) | WatchEvent::Deleted(d) => {
            d.metadata().name.clone().unwrap_or_default()
        }
        WatchEvent::Restarted(items) => items
            .iter()
            .map(|d| d.metadata().name.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(","),
    };
    (event.type_name().to_owned(), name)
}

fn pair(kind: &str, name: &str) -> (String, String) {
    (kind.to_owned(), name.to_owned())
}

#[tokio::test]
async fn a_watch_sees_existing_objects_then_changes_matching_its_selector() {
    let server = TestServer::start().await;
    let client = server.management_client();
    client
        .create("fleet", &device("old", &[("site", "lab")]))
        .await
        .expect("created");
    let mut events = Box::pin(
        client.watch::<EdgeDevice>(Some("fleet"), &ListParams::default().labels("site=lab")),
    );
    assert_eq!(
        summary(&next_event(&mut events).await),
        pair("ADDED", "old")
    );

    client
        .create("fleet", &device("elsewhere", &[("site", "plant")]))
        .await
        .expect("created");
    client
        .create("fleet", &device("new", &[("site", "lab")]))
        .await
        .expect("created");
    client
        .patch::<EdgeDevice>(
            "fleet",
            "new",
            &serde_json::json!({"metadata": {"annotations": {"a": "b"}}}),
        )
        .await
        .expect("patched");
    client
        .delete::<EdgeDevice>("fleet", "old")
        .await
        .expect("deleted");
    assert_eq!(
        summary(&next_event(&mut events).await),
        pair("ADDED", "new")
    );
    assert_eq!(
        summary(&next_event(&mut events).await),
        pair("MODIFIED", "new")
    );
    assert_eq!(
        summary(&next_event(&mut events).await),
        pair("DELETED", "old")
    );
}

#[tokio::test]
async fn a_watch_resumes_after_a_server_restart_without_replaying() {
    let mut server = TestServer::start().await;
    let client = server.management_client();
    client
        .create("fleet", &device("before", &[]))
        .await
        .expect("created");
    let mut events = Box::pin(client.watch::<EdgeDevice>(Some("fleet"), &ListParams::default()));
    assert_eq!(
        summary(&next_event(&mut events).await),
        pair("ADDED", "before")
    );

    server.stop_keeping_data().await;
    server.start_again().await;

    client
        .create("fleet", &device("after", &[]))
        .await
        .expect("created after restart");
    // Resumed from the last resource version: `before` is not sent again.
    assert_eq!(
        summary(&next_event(&mut events).await),
        pair("ADDED", "after")
    );
}

#[tokio::test]
async fn a_watch_relists_when_its_resource_version_is_compacted_away() {
    let mut server = TestServer::start().await;
    let client = server.management_client();
    client
        .create("fleet", &device("one", &[]))
        .await
        .expect("created");
    let mut events = Box::pin(client.watch::<EdgeDevice>(Some("fleet"), &ListParams::default()));
    assert_eq!(
        summary(&next_event(&mut events).await),
        pair("ADDED", "one")
    );

    server.stop_keeping_data().await;
    server.start_again().await;
    // While the watch reconnects, changes happen and the log is compacted past them.
    client
        .create("fleet", &device("two", &[]))
        .await
        .expect("created");
    let store = server.store();
    let now = store.current_resource_version().await.expect("version");
    store.compact(now).await.expect("compacted");

    let mut seen = Vec::new();
    loop {
        let event = next_event(&mut events).await;
        let done = matches!(event, WatchEvent::Restarted(_));
        seen.push(summary(&event));
        if done {
            break;
        }
    }
    assert_eq!(seen.last(), Some(&pair("RESTARTED", "one,two")), "{seen:?}");
}
