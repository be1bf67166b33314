//! The PostgreSQL schema and its migrations, applied under an advisory lock so
//! replicas starting together migrate once.

use deadpool_postgres::Pool;

use super::rows::{MIGRATION_LOCK, pg_error, pool_error};
use crate::store::{StoreError, StoreResult};

/// The schema version this code writes.
const SCHEMA_VERSION: i32 = 3;

const MIGRATIONS: [&str; 3] = [
    r#"
CREATE SEQUENCE resource_version_seq;
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO meta (key, value) VALUES ('resource_version', 0), ('compacted_resource_version', 0);
CREATE TABLE objects (
    kind             text NOT NULL,
    namespace        text COLLATE "C" NOT NULL,
    name             text COLLATE "C" NOT NULL,
    uid              text NOT NULL,
    resource_version bigint NOT NULL,
    generation       bigint NOT NULL,
    deleting         boolean NOT NULL,
    body             text NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE events (
    resource_version bigint PRIMARY KEY,
    kind             text NOT NULL,
    namespace        text NOT NULL,
    name             text NOT NULL,
    event_type       text NOT NULL,
    body             text NOT NULL
);
CREATE TABLE last_seen (
    namespace  text COLLATE "C" NOT NULL,
    device     text COLLATE "C" NOT NULL,
    seen_at_us bigint NOT NULL,
    PRIMARY KEY (namespace, device)
);
CREATE TABLE revoked_certificates (
    serial        text COLLATE "C" PRIMARY KEY,
    namespace     text NOT NULL,
    device        text NOT NULL,
    revoked_at_us bigint NOT NULL
);
CREATE TABLE api_tokens (
    id            text COLLATE "C" PRIMARY KEY,
    token_hash    bytea NOT NULL UNIQUE,
    role          text NOT NULL,
    description   text NOT NULL,
    created_at_us bigint NOT NULL
);
CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
"#,
    // 2: the leader lease of fleet-wide work.
    r#"
CREATE TABLE leases (name text PRIMARY KEY, holder text NOT NULL, expires_at timestamptz NOT NULL);
"#,
    // 3: named tokens (the user name RBAC binds), groups, expiry; a token's role
    // becomes optional ('' for none).
    r#"
ALTER TABLE api_tokens ADD COLUMN name text NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN groups text NOT NULL DEFAULT '[]';
ALTER TABLE api_tokens ADD COLUMN expires_at_us bigint;
UPDATE api_tokens SET name = 'token-' || substr(id, 1, 8);
"#,
];

pub(super) async fn migrate(pool: &Pool) -> StoreResult<()> {
    let mut client = pool.get().await.map_err(pool_error("migrate"))?;
    let tx = client.transaction().await.map_err(pg_error("migrate"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error("migrate"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        .await
        .map_err(pg_error("migrate"))?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(pg_error("migrate"))?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::CorruptRecord {
            key: "schema_version".into(),
            reason: format!(
                "database schema version {current} is newer than this server's {SCHEMA_VERSION}"
            ),
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate() {
        let to = i32::try_from(from).unwrap_or(i32::MAX).saturating_add(1);
        if to > current {
            tx.batch_execute(migration)
                .await
                .map_err(pg_error("migrate"))?;
            tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&to])
                .await
                .map_err(pg_error("migrate"))?;
        }
    }
    tx.commit().await.map_err(pg_error("migrate"))
}
