//! The RBAC snapshot the management API authorizes against: every Role,
//! RoleBinding, ClusterRole and ClusterRoleBinding read from the store once, kept in
//! memory, and dropped when any of them changes.
//!
//! Changes are seen two ways: this server's own writes drop the snapshot at once
//! ([`Authorizer::invalidate`], so a binding applies to the very next request), and
//! a watch on the four kinds sees every replica's writes. A snapshot is only kept
//! while that watch runs; without it every check reads the store afresh.
//!
//! The decision itself is core's ([`flotta_core::rbac::authorize`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use flotta_core::model::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use flotta_core::rbac::RbacSnapshot;
use futures::StreamExt as _;
use tokio::sync::watch;

use super::status::error_chain;
use crate::store::{ListOptions, ResourceKind, Store, StoreError, StoredObject};

/// Wait before a failed watch of the RBAC kinds is opened again.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// Holds the current [`RbacSnapshot`] of one server.
pub struct Authorizer {
    store: Arc<dyn Store>,
    shutdown: watch::Receiver<bool>,
    /// Bumped by every change seen; a snapshot is valid for one generation.
    generation: AtomicU64,
    /// Whether the watch of the RBAC kinds is running (only then is a snapshot kept).
    watching: AtomicBool,
    cached: Mutex<Option<(u64, Arc<RbacSnapshot>)>>,
    started: Once,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .field("watching", &self.watching.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// An authorizer over `store`; its watch ends when `shutdown` turns true.
    pub fn new(store: Arc<dyn Store>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            store,
            shutdown,
            generation: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            cached: Mutex::new(None),
            started: Once::new(),
        }
    }

    /// Drops the snapshot: the next check reads the store.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The current snapshot, read from the store when none is valid.
    pub async fn snapshot(self: &Arc<Self>) -> Result<Arc<RbacSnapshot>, StoreError> {
        self.start_watch();
        let generation = self.generation.load(Ordering::SeqCst);
        let watching = self.watching.load(Ordering::SeqCst);
        if watching
            && let Ok(cached) = self.cached.lock()
            && let Some((at, snapshot)) = cached.as_ref()
            && *at == generation
        {
            return Ok(snapshot.clone());
        }
        let snapshot = Arc::new(read_snapshot(self.store.as_ref()).await?);
        // Kept only when nothing changed while it was read.
        if watching
            && self.generation.load(Ordering::SeqCst) == generation
            && let Ok(mut cached) = self.cached.lock()
        {
            *cached = Some((generation, snapshot.clone()));
        }
        Ok(snapshot)
    }

    fn start_watch(self: &Arc<Self>) {
        self.started.call_once(|| {
            let this = Arc::downgrade(self);
            let shutdown = self.shutdown.clone();
            tokio::spawn(watch_rbac_kinds(this, shutdown));
        });
    }
}

/// Follows the four RBAC kinds, dropping the snapshot at every change, until the
/// server stops or the authorizer is gone.
async fn watch_rbac_kinds(
    authorizer: std::sync::Weak<Authorizer>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let Some(this) = authorizer.upgrade() else {
            return;
        };
        match open_watches(this.store.as_ref()).await {
            Ok(mut changes) => {
                // Changes since `from` are replayed, so nothing between the read of
                // the version and now is missed.
                this.invalidate();
                this.watching.store(true, Ordering::SeqCst);
                drop(this);
                loop {
                    let next = tokio::select! {
                        next = changes.next() => next,
                        () = crate::shutdown::stopping(&mut shutdown) => return,
                    };
                    let Some(this) = authorizer.upgrade() else {
                        return;
                    };
                    match next {
                        Some(Ok(_)) => this.invalidate(),
                        Some(Err(error)) => {
                            tracing::warn!(error = %error_chain(&error), "RBAC watch ended; watching again");
                            this.watching.store(false, Ordering::SeqCst);
                            this.invalidate();
                            break;
                        }
                        None => {
                            this.watching.store(false, Ordering::SeqCst);
                            this.invalidate();
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "cannot watch RBAC objects; retrying");
                drop(this);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(REWATCH_DELAY) => {}
            () = crate::shutdown::stopping(&mut shutdown) => return,
        }
    }
}

async fn open_watches(store: &dyn Store) -> Result<crate::store::WatchStream, StoreError> {
    let from = store.current_resource_version().await?;
    let mut streams = Vec::new();
    for kind in ResourceKind::RBAC {
        streams.push(store.watch(kind, None, from).await?);
    }
    Ok(crate::store::pumped(
        futures::stream::select_all(streams).boxed(),
    ))
}

async fn list_kind<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    kind: ResourceKind,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    let mut options = ListOptions::default();
    loop {
        let page = store.list(kind, None, &options).await?;
        for object in &page.items {
            match object.to_resource::<T>() {
                Ok(typed) => out.push(typed),
                // Admission checked it; a body that no longer reads grants nothing.
                Err(error) => tracing::warn!(error = %error_chain(&error), "RBAC object skipped"),
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => return Ok(out),
        }
    }
}

/// Reads every RBAC object and indexes them with the built-in ones.
pub async fn read_snapshot(store: &dyn Store) -> Result<RbacSnapshot, StoreError> {
    let roles: Vec<Role> = list_kind(store, ResourceKind::Role).await?;
    let bindings: Vec<RoleBinding> = list_kind(store, ResourceKind::RoleBinding).await?;
    let cluster_roles: Vec<ClusterRole> = list_kind(store, ResourceKind::ClusterRole).await?;
    let cluster_bindings: Vec<ClusterRoleBinding> =
        list_kind(store, ResourceKind::ClusterRoleBinding).await?;
    Ok(RbacSnapshot::new(
        &roles,
        &bindings,
        &cluster_roles,
        &cluster_bindings,
    ))
}

/// The built-in objects of a cluster-scoped RBAC kind, as the API serves them.
pub(crate) fn builtin_objects(kind: ResourceKind) -> Vec<StoredObject> {
    let bodies: Vec<serde_json::Value> = match kind {
        ResourceKind::ClusterRole => flotta_core::rbac::builtin::cluster_roles()
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect(),
        ResourceKind::ClusterRoleBinding => flotta_core::rbac::builtin::cluster_role_bindings()
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect(),
        _ => Vec::new(),
    };
    bodies
        .into_iter()
        .map(|mut body| {
            let name = body
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(object) = body.as_object_mut() {
                object.insert("apiVersion".into(), kind.api_version().into());
                object.insert("kind".into(), kind.as_str().into());
            }
            StoredObject {
                kind,
                namespace: String::new(),
                uid: format!("builtin-{name}"),
                name,
                resource_version: 0,
                generation: 1,
                labels: body
                    .pointer("/metadata/labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default(),
                creation_timestamp: time::OffsetDateTime::UNIX_EPOCH,
                deletion_timestamp: None,
                body,
            }
        })
        .collect()
}

/// The built-in object of `kind` named `name`, if there is one.
pub(crate) fn builtin_object(kind: ResourceKind, name: &str) -> Option<StoredObject> {
    builtin_objects(kind).into_iter().find(|o| o.name == name)
}
