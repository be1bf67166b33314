//! Object writes, once for every backend: `create`, `update`, `update_status` and
//! `delete` decide their change with the plans in [`object`](super::object), and
//! [`write_object`] carries a change out over a backend's [`WriteTransaction`]
//! (read the row, take the next resource version, write the row, append the change
//! log entry). A backend only provides those primitives and the transaction around
//! them: SQLite runs them in the writer thread's batch, PostgreSQL under its advisory
//! lock.

use async_trait::async_trait;
use flotta_core::events::EventOccurrence;
use serde_json::Value;
use time::OffsetDateTime;

use super::object::{self, Change, ObjectKey};
use super::{Deletion, ResourceKind, StoreResult, StoredObject, WatchEvent, WatchEventType};

/// Decides a write's change from the object's current state (`None`: no such object).
pub(crate) type Plan =
    Box<dyn FnOnce(&ObjectKey<'_>, Option<StoredObject>) -> StoreResult<Change> + Send>;

/// The primitives of one object write, all inside one backend transaction.
///
/// Native `async fn`s rather than `async_trait`: SQLite's connection is not `Sync`,
/// so its primitives' futures are not `Send`, while PostgreSQL's must be; each
/// backend's future is as `Send` as its own types.
pub(crate) trait WriteTransaction {
    /// The object's current row, if any.
    async fn read_object(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<StoredObject>>;

    /// Takes the next value of the global resource version counter.
    async fn next_resource_version(&mut self) -> StoreResult<u64>;

    /// Inserts or overwrites the object's row; `body` is `object.body` as text.
    async fn put_object(&mut self, object: &StoredObject, body: &str) -> StoreResult<()>;

    /// Removes the object's row.
    async fn remove_object(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<()>;

    /// Removes the last-seen time of a removed device.
    async fn remove_last_seen(&mut self, namespace: &str, device: &str) -> StoreResult<()>;

    /// Appends the change to the change log; `body` is the object's body as text.
    async fn append_event(
        &mut self,
        event_type: WatchEventType,
        object: &StoredObject,
        body: &str,
    ) -> StoreResult<()>;
}

/// Carries out one object write inside `tx`: reads the current object, lets `plan`
/// decide the change, stamps it with the next resource version, writes the row and
/// the change log entry. Returns the event to publish once the transaction commits.
pub(crate) async fn write_object(
    tx: &mut impl WriteTransaction,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    plan: Plan,
) -> StoreResult<WatchEvent> {
    let key = ObjectKey {
        kind,
        namespace,
        name,
    };
    let current = tx.read_object(kind, namespace, name).await?;
    let mut change = plan(&key, current)?;
    // The version is taken only once the plan accepted the write, so refused writes
    // leave no gap in the counter.
    let resource_version = tx.next_resource_version().await?;
    change.stamp(resource_version);
    let body = change.body().to_string();
    let stored = object::decode(kind, change.body().clone())?;
    match &change {
        Change::Put(..) => tx.put_object(&stored, &body).await?,
        Change::Remove(_) => {
            tx.remove_object(kind, namespace, name).await?;
            if kind == ResourceKind::EdgeDevice {
                tx.remove_last_seen(namespace, name).await?;
            }
        }
    }
    tx.append_event(change.event_type(), &stored, &body).await?;
    Ok(WatchEvent {
        event_type: change.event_type(),
        object: stored,
    })
}

/// A backend that runs [`write_object`] in a transaction of its own and publishes
/// the event once committed.
#[async_trait]
pub(crate) trait ObjectWriter: Send + Sync {
    /// Runs one object write (`operation` names it in errors).
    async fn write_object(
        &self,
        operation: &'static str,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        plan: Plan,
    ) -> StoreResult<WatchEvent>;
}

/// [`Store::create`](super::Store::create).
pub(crate) async fn create(
    store: &impl ObjectWriter,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    body: Value,
) -> StoreResult<StoredObject> {
    let now = OffsetDateTime::now_utc();
    let plan: Plan = Box::new(move |key, current| {
        if current.is_some() {
            return Err(key.already_exists());
        }
        object::plan_create(key, body, now)
    });
    Ok(store
        .write_object("create", kind, namespace, name, plan)
        .await?
        .object)
}

/// [`Store::update`](super::Store::update).
pub(crate) async fn update(
    store: &impl ObjectWriter,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    expected_resource_version: Option<u64>,
    body: Value,
) -> StoreResult<StoredObject> {
    let plan: Plan = Box::new(move |key, current| {
        let current = current.ok_or_else(|| key.not_found())?;
        object::plan_update(key, &current, expected_resource_version, body)
    });
    Ok(store
        .write_object("update", kind, namespace, name, plan)
        .await?
        .object)
}

/// [`Store::update_status`](super::Store::update_status).
pub(crate) async fn update_status(
    store: &impl ObjectWriter,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    expected_resource_version: Option<u64>,
    status: Value,
) -> StoreResult<StoredObject> {
    let plan: Plan = Box::new(move |key, current| {
        let current = current.ok_or_else(|| key.not_found())?;
        object::plan_status(key, &current, expected_resource_version, status)
    });
    Ok(store
        .write_object("update_status", kind, namespace, name, plan)
        .await?
        .object)
}

/// [`Store::record_event`](super::Store::record_event): core folds the occurrence
/// into the stored event of the same name, read in the same transaction, so
/// concurrent repetitions all count.
pub(crate) async fn record_event(
    store: &impl ObjectWriter,
    occurrence: &EventOccurrence,
    times: u32,
) -> StoreResult<StoredObject> {
    let now = OffsetDateTime::now_utc();
    let name = occurrence.object_name();
    let namespace = occurrence.namespace().to_owned();
    let occurrence = occurrence.clone();
    let plan: Plan = Box::new(move |key, current| {
        // A stored event that no longer reads as one is replaced, not kept.
        let existing = current
            .as_ref()
            .and_then(|c| c.to_resource::<flotta_core::model::Event>().ok());
        let event = occurrence.fold_times_into(existing, times, now);
        let body = serde_json::to_value(&event).map_err(|e| key.invalid(e.to_string()))?;
        match current {
            None => object::plan_create(key, body, now),
            Some(current) => object::plan_update(key, &current, None, body),
        }
    });
    Ok(store
        .write_object("record_event", ResourceKind::Event, &namespace, &name, plan)
        .await?
        .object)
}

/// [`Store::delete`](super::Store::delete).
pub(crate) async fn delete(
    store: &impl ObjectWriter,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    expected_resource_version: Option<u64>,
) -> StoreResult<Deletion> {
    let now = OffsetDateTime::now_utc();
    let plan: Plan = Box::new(move |key, current| {
        let current = current.ok_or_else(|| key.not_found())?;
        object::plan_delete(key, &current, expected_resource_version, now)
    });
    let event = store
        .write_object("delete", kind, namespace, name, plan)
        .await?;
    Ok(match event.event_type {
        WatchEventType::Deleted => Deletion::Removed(event.object),
        _ => Deletion::Pending(event.object),
    })
}
