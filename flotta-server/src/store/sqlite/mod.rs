//! Embedded SQLite backend: one file, WAL journal, one writer thread committing
//! queued writes in shared transactions (group commit), and a small pool of reader
//! connections used on tokio's blocking pool.

mod rows;
mod schema;
mod versions;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt as _;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};

use self::rows::{
    SqliteWrite, compact_through, decode_token_row, events_after, meta_value, read_object,
    sql_error, token_from_row,
};
use self::schema::{migrate, open_connection};
use self::versions::VersionIndex;
use self::writer::{WRITE_QUEUE, WriteJob, queue_write, run_writer};
use super::object;
use super::watch::{self, ChangelogReader, FEED_CAPACITY};
use super::write::{self, ObjectWriter, Plan, write_object};
use super::{
    ApiToken, Deletion, IssuedToken, LastSeen, ListOptions, ObjectList, ResourceKind,
    RevokedCertificate, Store, StoreError, StoreResult, StoredObject, TokenHash, TokenSpec,
    WatchEvent, WatchStream, from_micros, now_micros, to_micros,
};

/// Tuning of a [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Reader connections kept open for reuse.
    pub readers: usize,
    /// How many resource versions of change log to keep for watches; older entries
    /// are compacted automatically.
    pub event_retention: u64,
    /// How long a connection waits for a lock held by another process.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            event_retention: 10_000,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    jobs: mpsc::Sender<WriteJob>,
    versions: Arc<Mutex<VersionIndex>>,
    readers: Mutex<Vec<Connection>>,
    feed: broadcast::Sender<Arc<WatchEvent>>,
}

/// The embedded SQLite [`Store`].
///
/// Durability: WAL journal with `synchronous=FULL`, so a write is on disk (WAL
/// fsynced) before the call returns, surviving process kills and power loss.
/// Writes go to one writer thread that commits whatever is queued in one
/// transaction, each write in its own savepoint (one write's failure leaves the
/// others alone), so concurrent writes share an fsync; each caller is answered
/// after the COMMIT. The store assumes it is the only writer of its file.
/// Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with default options,
    /// bringing its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the database file at `path`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            options.busy_timeout,
        )?;
        // WAL lets readers run beside the writer; FULL fsyncs the WAL at every
        // commit so an acknowledged write survives power loss, not only a kill.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql_error("open"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql_error("open"))?;
        migrate(&mut conn)?;
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let (jobs, queue) = mpsc::channel(WRITE_QUEUE);
        let versions = Arc::new(Mutex::new(VersionIndex::default()));
        let writer_versions = Arc::clone(&versions);
        let writer_feed = feed.clone();
        let retention = options.event_retention;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(conn, queue, writer_versions, writer_feed, retention))
            .map_err(|e| StoreError::backend("open", false, e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                options,
                jobs,
                versions,
                readers: Mutex::new(Vec::new()),
                feed,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the writer thread in its own savepoint of the next batch and
    /// waits for the batch's COMMIT.
    async fn write<T, F>(&self, operation: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut writer::Batch<'_>) -> StoreResult<T> + Send + 'static,
    {
        queue_write(&self.inner.jobs, operation, f).await
    }

    async fn read<T, F>(&self, operation: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .map_err(|_| StoreError::backend(operation, false, "reader pool lock poisoned"))?
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = open_connection(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                        inner.options.busy_timeout,
                    )?;
                    c.pragma_update(None, "query_only", true)
                        .map_err(sql_error(operation))?;
                    c
                }
            };
            let result = f(&conn);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < inner.options.readers
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::backend(operation, false, e))?
    }

    fn changelog_reader(&self, kind: ResourceKind, namespace: Option<String>) -> ChangelogReader {
        let store = self.clone();
        Arc::new(move |after| {
            let store = store.clone();
            let namespace = namespace.clone();
            Box::pin(async move {
                store
                    .read("watch", move |c| {
                        events_after(c, kind, namespace.as_deref(), after)
                    })
                    .await
            })
        })
    }
}

#[async_trait]
impl ObjectWriter for SqliteStore {
    /// Queues the write for the writer thread; it runs in the batch's transaction,
    /// in its own savepoint, and its event is published after COMMIT.
    async fn write_object(
        &self,
        operation: &'static str,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        plan: Plan,
    ) -> StoreResult<WatchEvent> {
        let namespace = namespace.to_owned();
        let name = name.to_owned();
        self.write(operation, move |batch| {
            let mut tx = SqliteWrite {
                conn: batch.conn,
                operation,
            };
            // The primitives are synchronous, so the future completes on its first poll.
            let event = write_object(&mut tx, kind, &namespace, &name, plan)
                .now_or_never()
                .unwrap_or_else(|| {
                    Err(StoreError::backend(
                        operation,
                        false,
                        "an SQLite write did not complete synchronously",
                    ))
                })?;
            // Published by the writer thread once the batch has committed.
            batch.events.push(Arc::new(event.clone()));
            Ok(event)
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<StoredObject>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        if kind != ResourceKind::EdgeDevice {
            return self
                .read("get", move |c| read_object(c, kind, &namespace, &name))
                .await;
        }
        let versions = Arc::clone(&self.inner.versions);
        self.read("get", move |c| {
            // One snapshot for the object and the global version it is current at.
            let tx = c.unchecked_transaction().map_err(sql_error("get"))?;
            let snapshot = meta_value(&tx, "resource_version")?;
            let object = read_object(&tx, kind, &namespace, &name)?;
            drop(tx);
            if let Some(object) = &object
                && let Ok(mut index) = versions.lock()
            {
                index.remember(snapshot, object);
            }
            Ok(object)
        })
        .await
    }

    fn cached_resource_version(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Option<u64> {
        if kind != ResourceKind::EdgeDevice {
            return None;
        }
        self.inner.versions.lock().ok()?.get(namespace, name)
    }

    async fn list(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> StoreResult<ObjectList> {
        let start = object::page_start(options.continue_token.as_deref())?;
        let namespace = namespace.map(str::to_owned);
        let limit = options.limit;
        self.read("list", move |c| {
            let tx = c.unchecked_transaction().map_err(sql_error("list"))?;
            let rv = match start.resource_version {
                Some(rv) => rv,
                None => meta_value(&tx, "resource_version")?,
            };
            let (after_ns, after_name) = match start.after {
                Some((ns, name)) => (Some(ns), Some(name)),
                None => (None, None),
            };
            let sql_limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX - 1) + 1);
            let mut stmt = tx
                .prepare_cached(
                    "SELECT body FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2) \
                     AND (?3 IS NULL OR (namespace, name) > (?3, ?4)) \
                     ORDER BY namespace, name LIMIT ?5",
                )
                .map_err(sql_error("list"))?;
            let rows = stmt
                .query_map(
                    params![kind.as_str(), namespace, after_ns, after_name, sql_limit],
                    |r| r.get::<_, String>(0),
                )
                .map_err(sql_error("list"))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(object::decode_text(kind, &row.map_err(sql_error("list"))?)?);
            }
            Ok(object::finish_page(items, limit, rv))
        })
        .await
    }

    async fn create(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        body: Value,
    ) -> StoreResult<StoredObject> {
        write::create(self, kind, namespace, name, body).await
    }

    async fn update(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
        body: Value,
    ) -> StoreResult<StoredObject> {
        write::update(self, kind, namespace, name, expected_resource_version, body).await
    }

    async fn update_status(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
        status: Value,
    ) -> StoreResult<StoredObject> {
        write::update_status(
            self,
            kind,
            namespace,
            name,
            expected_resource_version,
            status,
        )
        .await
    }

    async fn delete(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
    ) -> StoreResult<Deletion> {
        write::delete(self, kind, namespace, name, expected_resource_version).await
    }

    async fn record_event(
        &self,
        occurrence: &flotta_core::events::EventOccurrence,
        times: u32,
    ) -> StoreResult<StoredObject> {
        write::record_event(self, occurrence, times).await
    }

    async fn current_resource_version(&self) -> StoreResult<u64> {
        self.read("current_resource_version", |c| {
            meta_value(c, "resource_version")
        })
        .await
    }

    async fn watch(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        from_resource_version: u64,
    ) -> StoreResult<WatchStream> {
        let feed = self.inner.feed.subscribe();
        let compacted = self
            .read("watch", |c| meta_value(c, "compacted_resource_version"))
            .await?;
        if from_resource_version < compacted {
            return Err(StoreError::Gone {
                requested: from_resource_version,
                compacted,
            });
        }
        let namespace = namespace.map(str::to_owned);
        let reader = self.changelog_reader(kind, namespace.clone());
        Ok(watch::watch_stream(
            feed,
            kind,
            namespace,
            from_resource_version,
            reader,
        ))
    }

    async fn compact(&self, through_resource_version: u64) -> StoreResult<()> {
        self.write("compact", move |batch| {
            compact_through(batch.conn, through_resource_version)
        })
        .await
    }

    async fn record_last_seen(&self, batch: &[LastSeen]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let entries = batch.to_vec();
        self.write("record_last_seen", move |batch| {
            let tx = batch.conn;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO last_seen (namespace, device, seen_at_us) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (namespace, device) DO UPDATE \
                         SET seen_at_us = max(seen_at_us, excluded.seen_at_us)",
                    )
                    .map_err(sql_error("record_last_seen"))?;
                for seen in &entries {
                    stmt.execute(params![
                        seen.namespace,
                        seen.device,
                        to_micros(seen.seen_at)
                    ])
                    .map_err(sql_error("record_last_seen"))?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn last_seen(
        &self,
        namespace: &str,
        device: &str,
    ) -> StoreResult<Option<OffsetDateTime>> {
        let (namespace, device) = (namespace.to_owned(), device.to_owned());
        self.read("last_seen", move |c| {
            let micros: Option<i64> = c
                .query_row(
                    "SELECT seen_at_us FROM last_seen WHERE namespace = ?1 AND device = ?2",
                    params![namespace, device],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_error("last_seen"))?;
            micros
                .map(|m| from_micros(m, || format!("last_seen {namespace}/{device}")))
                .transpose()
        })
        .await
    }

    async fn last_seen_all(&self, namespace: Option<&str>) -> StoreResult<Vec<LastSeen>> {
        let namespace = namespace.map(str::to_owned);
        self.read("last_seen_all", move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT namespace, device, seen_at_us FROM last_seen \
                     WHERE ?1 IS NULL OR namespace = ?1 ORDER BY namespace, device",
                )
                .map_err(sql_error("last_seen_all"))?;
            let rows = stmt
                .query_map(params![namespace], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql_error("last_seen_all"))?;
            let mut out = Vec::new();
            for row in rows {
                let (namespace, device, micros) = row.map_err(sql_error("last_seen_all"))?;
                let seen_at = from_micros(micros, || format!("last_seen {namespace}/{device}"))?;
                out.push(LastSeen {
                    namespace,
                    device,
                    seen_at,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn revoke_certificate(&self, revoked: &RevokedCertificate) -> StoreResult<()> {
        let revoked = revoked.clone();
        self.write("revoke_certificate", move |batch| {
            batch
                .conn
                .execute(
                    "INSERT INTO revoked_certificates (serial, namespace, device, revoked_at_us) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (serial) DO UPDATE \
                     SET revoked_at_us = MIN(revoked_certificates.revoked_at_us, excluded.revoked_at_us)",
                    params![
                        revoked.serial,
                        revoked.namespace,
                        revoked.device,
                        to_micros(revoked.revoked_at)
                    ],
                )
                .map_err(sql_error("revoke_certificate"))?;
            Ok(())
        })
        .await
    }

    async fn revoked_certificates(&self) -> StoreResult<Vec<RevokedCertificate>> {
        self.read("revoked_certificates", |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT serial, namespace, device, revoked_at_us FROM revoked_certificates ORDER BY serial",
                )
                .map_err(sql_error("revoked_certificates"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(sql_error("revoked_certificates"))?;
            let mut out = Vec::new();
            for row in rows {
                let (serial, namespace, device, micros) =
                    row.map_err(sql_error("revoked_certificates"))?;
                let revoked_at = from_micros(micros, || format!("revoked_certificates {serial}"))?;
                out.push(RevokedCertificate {
                    serial,
                    namespace,
                    device,
                    revoked_at,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn issue_token(&self, spec: &TokenSpec) -> StoreResult<IssuedToken> {
        let (token, secret) = super::new_token(spec)?;
        let hash = TokenHash::of(&secret);
        let record = token.clone();
        self.write("create_token", move |batch| {
            batch
                .conn
                .execute(
                    "INSERT INTO api_tokens (id, token_hash, role, description, created_at_us, \
                     name, groups, expires_at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        record.id,
                        &hash.0[..],
                        super::role_column(record.role),
                        record.description,
                        to_micros(record.created_at),
                        record.name,
                        super::groups_column(&record.groups),
                        record.expires_at.map(to_micros),
                    ],
                )
                .map_err(sql_error("create_token"))?;
            Ok(())
        })
        .await?;
        Ok(IssuedToken { secret, token })
    }

    async fn find_token(&self, hash: &TokenHash) -> StoreResult<Option<ApiToken>> {
        let hash = *hash;
        self.read("find_token", move |c| {
            c.query_row(
                &format!(
                    "SELECT {} FROM api_tokens WHERE token_hash = ?1",
                    super::TOKEN_COLUMNS
                ),
                params![&hash.0[..]],
                decode_token_row,
            )
            .optional()
            .map_err(sql_error("find_token"))?
            .map(token_from_row)
            .transpose()
        })
        .await
    }

    async fn list_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        self.read("list_tokens", |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {} FROM api_tokens ORDER BY id",
                    super::TOKEN_COLUMNS
                ))
                .map_err(sql_error("list_tokens"))?;
            let rows = stmt
                .query_map([], decode_token_row)
                .map_err(sql_error("list_tokens"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(token_from_row(row.map_err(sql_error("list_tokens"))?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_token(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write("delete_token", move |batch| {
            let n = batch
                .conn
                .execute("DELETE FROM api_tokens WHERE id = ?1", [id])
                .map_err(sql_error("delete_token"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.read("setting", move |c| {
            c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_error("setting"))
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write("put_setting", move |batch| {
            batch
                .conn
                .execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key, value],
                )
                .map_err(sql_error("put_setting"))?;
            Ok(())
        })
        .await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let now = to_micros(now_micros());
        let expires = now.saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
        self.write("acquire_lease", move |batch| {
            // The conflict clause's WHERE leaves a live lease of another holder alone.
            let changed = batch
                .conn
                .execute(
                    "INSERT INTO leases (name, holder, expires_at_us) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE \
                     SET holder = excluded.holder, expires_at_us = excluded.expires_at_us \
                     WHERE leases.holder = excluded.holder OR leases.expires_at_us <= ?4",
                    params![name, holder, expires, now],
                )
                .map_err(sql_error("acquire_lease"))?;
            Ok(changed > 0)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write("release_lease", move |batch| {
            batch
                .conn
                .execute(
                    "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                    params![name, holder],
                )
                .map_err(sql_error("release_lease"))?;
            Ok(())
        })
        .await
    }
}
