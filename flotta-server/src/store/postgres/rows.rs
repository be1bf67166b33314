//! Rows and their SQL: errors, counters, change-log entries, tokens, and the
//! primitives of an object write.

use crate::store::object;
use crate::store::write::WriteTransaction;
use crate::store::{
    ApiToken, ResourceKind, StoreError, StoreResult, StoredObject, WatchEvent, WatchEventType,
};

/// The notification channel announcing committed changes.
pub(super) const CHANNEL: &str = "flotta_changes";
/// Advisory lock key serialising object writes ("flotta" in ASCII).
pub(super) const WRITE_LOCK: i64 = 0x0000_666c_6f74_7461;
/// Advisory lock key serialising schema migrations.
pub(super) const MIGRATION_LOCK: i64 = WRITE_LOCK + 1;
pub(super) fn pg_error(
    operation: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| {
        let transient_state = e.code().is_some_and(|c| {
            let code = c.code();
            // serialization failure, deadlock, connection exceptions, shutdown,
            // too many connections, lock not available
            code == "40001"
                || code == "40P01"
                || code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code == "55P03"
        });
        let retryable = e.is_closed() || transient_state;
        StoreError::backend(operation, retryable, e)
    }
}

pub(super) fn pool_error(
    operation: &'static str,
) -> impl FnOnce(deadpool_postgres::PoolError) -> StoreError {
    move |e| StoreError::backend(operation, true, e)
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(v: i64, key: &str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|e| StoreError::CorruptRecord {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

pub(super) async fn meta_value(
    client: &impl deadpool_postgres::GenericClient,
    key: &str,
) -> StoreResult<u64> {
    let row = client
        .query_one("SELECT value FROM meta WHERE key = $1", &[&key])
        .await
        .map_err(pg_error("read meta"))?;
    to_u64(row.get(0), key)
}

pub(super) fn parse_event(
    kind: ResourceKind,
    event_type: &str,
    body: &str,
) -> StoreResult<WatchEvent> {
    let event_type =
        WatchEventType::parse(event_type).ok_or_else(|| StoreError::CorruptRecord {
            key: "events.event_type".into(),
            reason: format!("unknown event type {event_type:?}"),
        })?;
    Ok(WatchEvent {
        event_type,
        object: object::decode_text(kind, body)?,
    })
}

/// A token from a row selected with [`crate::store::TOKEN_COLUMNS`].
pub(super) fn token_from_row(row: &tokio_postgres::Row) -> StoreResult<ApiToken> {
    let role: &str = row.get(2);
    let groups: &str = row.get(3);
    crate::store::token_from_columns(
        row.get(0),
        row.get(1),
        role,
        groups,
        row.get(4),
        row.get(5),
        row.get(6),
    )
}

/// One object write's primitives over a PostgreSQL transaction.
pub(super) struct PgWrite<'a, 't> {
    pub(super) tx: &'a deadpool_postgres::Transaction<'t>,
    pub(super) operation: &'static str,
}

impl WriteTransaction for PgWrite<'_, '_> {
    async fn read_object(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<StoredObject>> {
        self.tx
            .query_opt(
                "SELECT body FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3",
                &[&kind.as_str(), &namespace, &name],
            )
            .await
            .map_err(pg_error(self.operation))?
            .map(|row| object::decode_text(kind, row.get(0)))
            .transpose()
    }

    async fn next_resource_version(&mut self) -> StoreResult<u64> {
        let rv: i64 = self
            .tx
            .query_one("SELECT nextval('resource_version_seq')", &[])
            .await
            .map_err(pg_error(self.operation))?
            .get(0);
        to_u64(rv, "resource_version_seq")
    }

    async fn put_object(&mut self, object: &StoredObject, body: &str) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO objects (kind, namespace, name, uid, resource_version, generation, deleting, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (kind, namespace, name) DO UPDATE SET uid = excluded.uid, \
                 resource_version = excluded.resource_version, generation = excluded.generation, \
                 deleting = excluded.deleting, body = excluded.body",
                &[
                    &object.kind.as_str(),
                    &object.namespace,
                    &object.name,
                    &object.uid,
                    &to_i64(object.resource_version),
                    &to_i64(object.generation),
                    &object.deletion_timestamp.is_some(),
                    &body,
                ],
            )
            .await
            .map_err(pg_error(self.operation))?;
        Ok(())
    }

    async fn remove_object(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<()> {
        self.tx
            .execute(
                "DELETE FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3",
                &[&kind.as_str(), &namespace, &name],
            )
            .await
            .map_err(pg_error(self.operation))?;
        Ok(())
    }

    async fn remove_last_seen(&mut self, namespace: &str, device: &str) -> StoreResult<()> {
        self.tx
            .execute(
                "DELETE FROM last_seen WHERE namespace = $1 AND device = $2",
                &[&namespace, &device],
            )
            .await
            .map_err(pg_error(self.operation))?;
        Ok(())
    }

    async fn append_event(
        &mut self,
        event_type: WatchEventType,
        object: &StoredObject,
        body: &str,
    ) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO events (resource_version, kind, namespace, name, event_type, body) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &to_i64(object.resource_version),
                    &object.kind.as_str(),
                    &object.namespace,
                    &object.name,
                    &event_type.as_str(),
                    &body,
                ],
            )
            .await
            .map_err(pg_error(self.operation))?;
        Ok(())
    }
}
