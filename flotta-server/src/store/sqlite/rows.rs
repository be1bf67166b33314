//! Reading and writing rows: objects, the change log, meta counters, tokens, and the
//! primitives of an object write.

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::object;
use crate::store::write::WriteTransaction;
use crate::store::{
    ApiToken, ResourceKind, StoreError, StoreResult, StoredObject, WatchEvent, WatchEventType,
};

pub(super) fn sql_error(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| {
        let retryable = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        StoreError::backend(operation, retryable, e)
    }
}

pub(super) fn meta_value(conn: &Connection, key: &str) -> StoreResult<u64> {
    let v: i64 = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut statement| statement.query_row([key], |r| r.get(0)))
        .map_err(sql_error("read meta"))?;
    u64::try_from(v).map_err(|e| StoreError::CorruptRecord {
        key: format!("meta {key}"),
        reason: e.to_string(),
    })
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn read_object(
    conn: &Connection,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
) -> StoreResult<Option<StoredObject>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
        .and_then(|mut statement| {
            statement
                .query_row(params![kind.as_str(), namespace, name], |r| r.get(0))
                .optional()
        })
        .map_err(sql_error("get"))?;
    text.map(|t| object::decode_text(kind, &t)).transpose()
}

pub(super) fn events_after(
    conn: &Connection,
    kind: ResourceKind,
    namespace: Option<&str>,
    after: u64,
) -> StoreResult<Vec<WatchEvent>> {
    let tx = conn.unchecked_transaction().map_err(sql_error("watch"))?;
    let compacted = meta_value(&tx, "compacted_resource_version")?;
    if after < compacted {
        return Err(StoreError::Gone {
            requested: after,
            compacted,
        });
    }
    let mut stmt = tx
        .prepare_cached(
            "SELECT event_type, body FROM events WHERE resource_version > ?1 AND kind = ?2 \
             AND (?3 IS NULL OR namespace = ?3) ORDER BY resource_version",
        )
        .map_err(sql_error("watch"))?;
    let rows = stmt
        .query_map(params![to_i64(after), kind.as_str(), namespace], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sql_error("watch"))?;
    let mut events = Vec::new();
    for row in rows {
        let (event_type, body) = row.map_err(sql_error("watch"))?;
        let event_type =
            WatchEventType::parse(&event_type).ok_or_else(|| StoreError::CorruptRecord {
                key: "events.event_type".into(),
                reason: format!("unknown event type {event_type:?}"),
            })?;
        events.push(WatchEvent {
            event_type,
            object: object::decode_text(kind, &body)?,
        });
    }
    Ok(events)
}

pub(super) fn compact_through(conn: &Connection, through: u64) -> StoreResult<()> {
    let current = meta_value(conn, "resource_version")?;
    let through = to_i64(through.min(current));
    conn.execute("DELETE FROM events WHERE resource_version <= ?1", [through])
        .map_err(sql_error("compact"))?;
    conn.execute(
        "UPDATE meta SET value = max(value, ?1) WHERE key = 'compacted_resource_version'",
        [through],
    )
    .map_err(sql_error("compact"))?;
    Ok(())
}

/// One token row's columns, as selected by [`crate::store::TOKEN_COLUMNS`].
pub(super) type TokenRow = (String, String, String, String, String, i64, Option<i64>);

pub(super) fn decode_token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

pub(super) fn token_from_row(
    (id, name, role, groups, description, created, expires): TokenRow,
) -> StoreResult<ApiToken> {
    crate::store::token_from_columns(id, name, &role, &groups, description, created, expires)
}

/// One object write's primitives over the writer thread's connection, inside the
/// write's savepoint. Every step is synchronous: the futures are ready at once.
pub(super) struct SqliteWrite<'c> {
    pub(super) conn: &'c Connection,
    pub(super) operation: &'static str,
}

impl WriteTransaction for SqliteWrite<'_> {
    async fn read_object(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<StoredObject>> {
        read_object(self.conn, kind, namespace, name)
    }

    async fn next_resource_version(&mut self) -> StoreResult<u64> {
        let rv: i64 = self
            .conn
            .prepare_cached(
                "UPDATE meta SET value = value + 1 WHERE key = 'resource_version' RETURNING value",
            )
            .and_then(|mut statement| statement.query_row([], |r| r.get(0)))
            .map_err(sql_error(self.operation))?;
        Ok(u64::try_from(rv).unwrap_or_default())
    }

    async fn put_object(&mut self, object: &StoredObject, body: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO objects (kind, namespace, name, uid, resource_version, generation, deleting, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (kind, namespace, name) DO UPDATE SET uid = excluded.uid, \
                 resource_version = excluded.resource_version, generation = excluded.generation, \
                 deleting = excluded.deleting, body = excluded.body",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    object.kind.as_str(),
                    object.namespace,
                    object.name,
                    object.uid,
                    to_i64(object.resource_version),
                    to_i64(object.generation),
                    object.deletion_timestamp.is_some(),
                    body
                ])
            })
            .map_err(sql_error(self.operation))?;
        Ok(())
    }

    async fn remove_object(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
            .and_then(|mut statement| statement.execute(params![kind.as_str(), namespace, name]))
            .map_err(sql_error(self.operation))?;
        Ok(())
    }

    async fn remove_last_seen(&mut self, namespace: &str, device: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM last_seen WHERE namespace = ?1 AND device = ?2")
            .and_then(|mut statement| statement.execute(params![namespace, device]))
            .map_err(sql_error(self.operation))?;
        Ok(())
    }

    async fn append_event(
        &mut self,
        event_type: WatchEventType,
        object: &StoredObject,
        body: &str,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (resource_version, kind, namespace, name, event_type, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    to_i64(object.resource_version),
                    object.kind.as_str(),
                    object.namespace,
                    object.name,
                    event_type.as_str(),
                    body
                ])
            })
            .map_err(sql_error(self.operation))?;
        Ok(())
    }
}
