//! Dry runs (`?dryRun=All`): what a write would store, decided by the same plans
//! as the write itself ([`object`](super::object)), without writing anything or
//! taking a resource version.

use serde_json::Value;
use time::OffsetDateTime;

use super::object::{self, Change, ObjectKey};
use super::{ResourceKind, Store, StoreResult};

/// A write to try without storing it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DryRunWrite {
    /// [`Store::create`] of this body.
    Create(Value),
    /// [`Store::update`] with this expected resource version and body.
    Update(Option<u64>, Value),
    /// [`Store::update_status`] with this expected resource version and status.
    UpdateStatus(Option<u64>, Value),
    /// [`Store::delete`] with this expected resource version.
    Delete(Option<u64>),
}

/// The body `write` would leave stored (for a delete: the object's last state),
/// or the error the write would give (not found, already exists, conflict). The
/// resource version is the current one: nothing was written.
pub async fn dry_run(
    store: &dyn Store,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    write: DryRunWrite,
) -> StoreResult<Value> {
    let key = ObjectKey {
        kind,
        namespace,
        name,
    };
    let current = store.get(kind, namespace, name).await?;
    let now = OffsetDateTime::now_utc();
    let change = match (write, current) {
        (DryRunWrite::Create(_), Some(_)) => return Err(key.already_exists()),
        (DryRunWrite::Create(body), None) => object::plan_create(&key, body, now)?,
        (_, None) => return Err(key.not_found()),
        (DryRunWrite::Update(expected, body), Some(current)) => {
            let mut change = object::plan_update(&key, &current, expected, body)?;
            change.stamp(current.resource_version);
            change
        }
        (DryRunWrite::UpdateStatus(expected, status), Some(current)) => {
            let mut change = object::plan_status(&key, &current, expected, status)?;
            change.stamp(current.resource_version);
            change
        }
        (DryRunWrite::Delete(expected), Some(current)) => {
            let mut change = object::plan_delete(&key, &current, expected, now)?;
            change.stamp(current.resource_version);
            change
        }
    };
    Ok(match change {
        Change::Put(body, _) | Change::Remove(body) => body,
    })
}
