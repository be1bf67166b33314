//! Gives member devices the labels and annotations of their set's
//! `template.metadata`, as [`flotta_core::reconcile::apply_template_metadata`]
//! decides.
//!
//! A background task follows the store's changes: a changed device is looked at
//! alone (against its namespace's sets, kept in memory), a changed set makes every
//! device of its namespace be looked at again. A device is written only when its
//! metadata changes, so the task's own writes settle at once; a write that loses a
//! race with another writer is redone on the device as it now is.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use flotta_core::model::{EdgeDevice, EdgeDeviceSet};
use flotta_core::reconcile::apply_template_metadata;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{
    ListOptions, ResourceKind, Store, StoreError, StoredObject, WatchEventType, WatchStream,
};

/// Sets per namespace, read when first needed and dropped when one changes.
type SetCache = HashMap<String, Vec<EdgeDeviceSet>>;

async fn sets_of<'a>(
    store: &dyn Store,
    cache: &'a mut SetCache,
    namespace: &str,
) -> Result<&'a [EdgeDeviceSet], StoreError> {
    if !cache.contains_key(namespace) {
        let sets = store
            .list(
                ResourceKind::EdgeDeviceSet,
                Some(namespace),
                &ListOptions::default(),
            )
            .await?
            .items
            .iter()
            .filter_map(|stored| stored.to_resource::<EdgeDeviceSet>().ok())
            .collect();
        cache.insert(namespace.to_owned(), sets);
    }
    Ok(cache.get(namespace).map(Vec::as_slice).unwrap_or_default())
}

/// Attempts when a device changes between its read and the write.
const ATTEMPTS: usize = 5;

/// Writes the template metadata of `stored`'s set on it, when that changes it;
/// read again and retried when the device changed meanwhile.
async fn give(
    store: &dyn Store,
    sets: &[EdgeDeviceSet],
    stored: &StoredObject,
) -> Result<(), StoreError> {
    let mut current = Some(stored.clone());
    for _attempt in 0..ATTEMPTS {
        let Some(stored) = current.take() else {
            return Ok(());
        };
        if stored.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Ok(device) = stored.to_resource::<EdgeDevice>() else {
            return Ok(());
        };
        let Some(updated) = apply_template_metadata(&device, sets) else {
            return Ok(());
        };
        let mut body = stored.body.clone();
        if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert(
                "labels".into(),
                serde_json::to_value(&updated.labels).unwrap_or(Value::Null),
            );
            metadata.insert(
                "annotations".into(),
                serde_json::to_value(&updated.annotations).unwrap_or(Value::Null),
            );
        }
        match store
            .update(
                ResourceKind::EdgeDevice,
                &stored.namespace,
                &stored.name,
                Some(stored.resource_version),
                body,
            )
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {
                current = store
                    .get(ResourceKind::EdgeDevice, &stored.namespace, &stored.name)
                    .await?;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

async fn refresh_namespace(
    store: &dyn Store,
    cache: &mut SetCache,
    namespace: &str,
) -> Result<(), StoreError> {
    let devices = store
        .list(
            ResourceKind::EdgeDevice,
            Some(namespace),
            &ListOptions::default(),
        )
        .await?
        .items;
    let sets = sets_of(store, cache, namespace).await?.to_vec();
    for device in &devices {
        give(store, &sets, device).await?;
    }
    Ok(())
}

async fn open_watches(store: &dyn Store) -> Result<WatchStream, StoreError> {
    let from = store.current_resource_version().await?;
    let devices = store.watch(ResourceKind::EdgeDevice, None, from).await?;
    let sets = store.watch(ResourceKind::EdgeDeviceSet, None, from).await?;
    Ok(crate::store::pumped(
        futures::stream::select_all([devices, sets]).boxed(),
    ))
}

async fn namespaces_with_sets(store: &dyn Store) -> Result<BTreeSet<String>, StoreError> {
    Ok(store
        .list(ResourceKind::EdgeDeviceSet, None, &ListOptions::default())
        .await?
        .items
        .into_iter()
        .map(|set| set.namespace)
        .collect())
}

/// Starts the task; it ends when `shutdown` turns true.
pub async fn spawn(
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StoreError> {
    let mut stream = open_watches(store.as_ref()).await?;
    Ok(tokio::spawn(async move {
        let store = store.as_ref();
        let mut cache = SetCache::new();
        // Devices changed while no server ran: every namespace with a set once.
        let mut everything = true;
        loop {
            if everything {
                cache.clear();
                match namespaces_with_sets(store).await {
                    Ok(namespaces) => {
                        for namespace in namespaces {
                            if let Err(error) =
                                refresh_namespace(store, &mut cache, &namespace).await
                            {
                                tracing::warn!(%namespace, error = %crate::api::error_chain(&error), "template metadata: pass failed");
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %crate::api::error_chain(&error), "template metadata: cannot list sets");
                    }
                }
                everything = false;
            }
            let event = tokio::select! {
                next = stream.next() => next,
                () = crate::shutdown::stopping(&mut shutdown) => return,
            };
            let result = match event {
                Some(Ok(event)) => match event.object.kind {
                    ResourceKind::EdgeDeviceSet => {
                        let namespace = event.object.namespace.clone();
                        cache.remove(&namespace);
                        refresh_namespace(store, &mut cache, &namespace).await
                    }
                    _ if event.event_type == WatchEventType::Deleted => Ok(()),
                    _ => match sets_of(store, &mut cache, &event.object.namespace).await {
                        Ok(sets) => {
                            let sets = sets.to_vec();
                            give(store, &sets, &event.object).await
                        }
                        Err(error) => Err(error),
                    },
                },
                Some(Err(_)) | None => {
                    // The watch ended (compaction, a store restart): reopen it and
                    // look at everything again.
                    match open_watches(store).await {
                        Ok(reopened) => stream = reopened,
                        Err(error) => {
                            tracing::warn!(error = %crate::api::error_chain(&error), "template metadata: cannot watch");
                            tokio::select! {
                                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                                () = crate::shutdown::stopping(&mut shutdown) => return,
                            }
                        }
                    }
                    everything = true;
                    Ok(())
                }
            };
            if let Err(error) = result {
                tracing::warn!(error = %crate::api::error_chain(&error), "template metadata: update failed");
            }
        }
    }))
}
