//! The watch stream both backends share: replay from the change log, then follow
//! the in-process feed of committed changes, re-reading the log when it falls behind.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::broadcast;

use super::{ResourceKind, StoreResult, WatchEvent, WatchStream};

/// Capacity of the in-process change feed; a watcher further behind re-reads the log.
pub(crate) const FEED_CAPACITY: usize = 1024;

/// Reads change-log events after a resource version, in order, for one kind and
/// optionally one namespace; fails with `Gone` when the log was compacted past it.
pub(crate) type ChangelogReader =
    Arc<dyn Fn(u64) -> BoxFuture<'static, StoreResult<Vec<WatchEvent>>> + Send + Sync>;

struct WatchState {
    feed: broadcast::Receiver<Arc<WatchEvent>>,
    kind: ResourceKind,
    namespace: Option<String>,
    last: u64,
    pending: VecDeque<WatchEvent>,
    must_read_log: bool,
    finished: bool,
    read_log: ChangelogReader,
}

impl WatchState {
    fn wants(&self, event: &WatchEvent) -> bool {
        event.object.kind == self.kind
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == event.object.namespace)
    }
}

/// Builds a watch stream. `feed` must be subscribed before this is called and
/// before the change log is read, so that no change falls between the two.
pub(crate) fn watch_stream(
    feed: broadcast::Receiver<Arc<WatchEvent>>,
    kind: ResourceKind,
    namespace: Option<String>,
    from_resource_version: u64,
    read_log: ChangelogReader,
) -> WatchStream {
    let state = WatchState {
        feed,
        kind,
        namespace,
        last: from_resource_version,
        pending: VecDeque::new(),
        must_read_log: true,
        finished: false,
        read_log,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.finished {
                return None;
            }
            if let Some(event) = st.pending.pop_front() {
                st.last = st.last.max(event.object.resource_version);
                return Some((Ok(event), st));
            }
            if st.must_read_log {
                st.must_read_log = false;
                match (st.read_log)(st.last).await {
                    Ok(events) => {
                        let last = st.last;
                        st.pending = events
                            .into_iter()
                            .filter(|e| e.object.resource_version > last)
                            .collect();
                    }
                    Err(e) => {
                        st.finished = true;
                        return Some((Err(e), st));
                    }
                }
                continue;
            }
            match st.feed.recv().await {
                Ok(event) => {
                    if event.object.resource_version <= st.last {
                        continue;
                    }
                    // The feed is in resource-version order, so everything up to here
                    // has been seen, wanted or not.
                    st.last = event.object.resource_version;
                    if st.wants(&event) {
                        return Some((Ok(WatchEvent::clone(&event)), st));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => st.must_read_log = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}
