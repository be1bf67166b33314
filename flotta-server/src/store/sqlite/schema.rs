//! The SQLite schema, its migrations, and opening connections.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::rows::sql_error;
use crate::store::{StoreError, StoreResult};

/// The schema version this code writes; see [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = 3;

/// Migrations in order; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 3] = [
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('resource_version', 0), ('compacted_resource_version', 0);
CREATE TABLE objects (
    kind             TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    name             TEXT NOT NULL,
    uid              TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    generation       INTEGER NOT NULL,
    deleting         INTEGER NOT NULL,
    body             TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE events (
    resource_version INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    name             TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    body             TEXT NOT NULL
);
CREATE TABLE last_seen (
    namespace  TEXT NOT NULL,
    device     TEXT NOT NULL,
    seen_at_us INTEGER NOT NULL,
    PRIMARY KEY (namespace, device)
) WITHOUT ROWID;
CREATE TABLE revoked_certificates (
    serial        TEXT PRIMARY KEY,
    namespace     TEXT NOT NULL,
    device        TEXT NOT NULL,
    revoked_at_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    token_hash    BLOB NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    description   TEXT NOT NULL,
    created_at_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // 2: the leader lease of fleet-wide work.
    r#"
CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at_us INTEGER NOT NULL) WITHOUT ROWID;
"#,
    // 3: named tokens (the user name RBAC binds), groups, expiry; a token's role
    // becomes optional ('' for none).
    r#"
ALTER TABLE api_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_tokens ADD COLUMN expires_at_us INTEGER;
UPDATE api_tokens SET name = 'token-' || substr(id, 1, 8);
"#,
];

pub(super) fn open_connection(
    path: &Path,
    flags: OpenFlags,
    busy: Duration,
) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, flags).map_err(sql_error("open"))?;
    conn.busy_timeout(busy).map_err(sql_error("open"))?;
    Ok(conn)
}

pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error("migrate"))?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(sql_error("migrate"))?;
    let current: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(sql_error("migrate"))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::CorruptRecord {
            key: "schema_version".into(),
            reason: format!(
                "database schema version {current} is newer than this server's {SCHEMA_VERSION}"
            ),
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate() {
        let to = i64::try_from(from).unwrap_or(i64::MAX).saturating_add(1);
        if to > current {
            tx.execute_batch(migration).map_err(sql_error("migrate"))?;
            tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [to])
                .map_err(sql_error("migrate"))?;
        }
    }
    tx.commit().map_err(sql_error("migrate"))
}
