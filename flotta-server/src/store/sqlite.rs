//! Embedded SQLite backend: one file, WAL journal, one writer thread committing
//! queued writes in shared transactions (group commit), and a small pool of reader
//! connections used on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::object::{self, Change, ObjectKey};
use super::watch::{self, ChangelogReader, FEED_CAPACITY};
use super::{
    ApiToken, Deletion, IssuedToken, LastSeen, ListOptions, ObjectList, ResourceKind,
    RevokedCertificate, Store, StoreError, StoreResult, StoredObject, TokenHash, TokenRole,
    WatchEvent, WatchEventType, WatchStream, from_micros, to_micros,
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

/// The schema version this code writes; see [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = 1;

/// Migrations in order; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 1] = [r#"
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
"#];

fn sql_error(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| {
        let retryable = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        StoreError::backend(operation, retryable, e)
    }
}

/// Most writes gathered into one transaction.
const MAX_WRITE_BATCH: usize = 512;

/// Writes that may wait for the writer thread before callers wait for room.
const WRITE_QUEUE: usize = 8_192;

/// Most devices whose resource version [`VersionIndex`] remembers.
const MAX_INDEXED_DEVICES: usize = 1 << 20;

/// How a batch's transaction ended: committed, or why not (retryable, message).
type CommitOutcome = Result<(), (bool, String)>;

/// What a write does once its batch's fate is known: answers its caller.
type Completion = Box<dyn FnOnce(&CommitOutcome) + Send>;

/// One write waiting for the writer thread. It runs inside the batch's transaction
/// (or is told why the transaction is unusable) and returns its completion.
type WriteJob = Box<dyn FnOnce(Result<&mut Batch<'_>, (bool, String)>) -> Completion + Send>;

/// The transaction several writes share, and what they produced for after COMMIT.
struct Batch<'c> {
    conn: &'c Connection,
    events: Vec<Arc<WatchEvent>>,
}

impl Batch<'_> {
    /// Runs `f` in its own savepoint, so that its failure undoes only its own
    /// changes and events.
    fn in_savepoint<T>(
        &mut self,
        operation: &'static str,
        f: impl FnOnce(&mut Self) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.conn
            .execute_batch("SAVEPOINT write")
            .map_err(sql_error(operation))?;
        let events_before = self.events.len();
        let result = f(self).and_then(|value| {
            self.conn
                .execute_batch("RELEASE write")
                .map_err(sql_error(operation))?;
            Ok(value)
        });
        if result.is_err() {
            self.events.truncate(events_before);
            // When even this fails the transaction is gone; the next write and the
            // commit see that and fail.
            let _checked_later = self.conn.execute_batch("ROLLBACK TO write; RELEASE write");
        }
        result
    }
}

/// Resource versions of recently read or written devices, as of the latest
/// committed write (see [`Store::cached_resource_version`]).
///
/// The writer thread updates it after each commit; a reader adds what it read only
/// when no write committed after its snapshot was applied since, so it never
/// brings back an older state.
#[derive(Default)]
struct VersionIndex {
    devices: std::collections::HashMap<String, std::collections::HashMap<String, u64>>,
    len: usize,
    /// The global resource version of the last write applied here.
    applied: u64,
}

impl VersionIndex {
    fn get(&self, namespace: &str, name: &str) -> Option<u64> {
        self.devices.get(namespace)?.get(name).copied()
    }

    fn set(&mut self, namespace: &str, name: &str, version: u64) {
        if let Some(names) = self.devices.get_mut(namespace)
            && let Some(slot) = names.get_mut(name)
        {
            *slot = version;
            return;
        }
        if self.len >= MAX_INDEXED_DEVICES {
            return;
        }
        self.devices
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned(), version);
        self.len += 1;
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        if let Some(names) = self.devices.get_mut(namespace)
            && names.remove(name).is_some()
        {
            self.len -= 1;
            if names.is_empty() {
                self.devices.remove(namespace);
            }
        }
    }

    /// Applies a committed change.
    fn apply(&mut self, event: &WatchEvent) {
        let object = &event.object;
        if object.kind == ResourceKind::EdgeDevice {
            match event.event_type {
                WatchEventType::Deleted => self.remove(&object.namespace, &object.name),
                WatchEventType::Added | WatchEventType::Modified => {
                    self.set(&object.namespace, &object.name, object.resource_version);
                }
            }
        }
        self.applied = self.applied.max(object.resource_version);
    }

    /// Adds what a reader saw in a snapshot taken at global version `snapshot`.
    fn remember(&mut self, snapshot: u64, object: &StoredObject) {
        if snapshot >= self.applied {
            self.set(&object.namespace, &object.name, object.resource_version);
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

/// The writer thread: owns the writer connection and commits queued writes in
/// batches, each write in a savepoint, so that concurrent writes share one fsync.
/// Callers are answered only after COMMIT. Ends when every store clone is gone.
fn run_writer(
    conn: Connection,
    mut jobs: mpsc::Receiver<WriteJob>,
    versions: Arc<Mutex<VersionIndex>>,
    feed: broadcast::Sender<Arc<WatchEvent>>,
    event_retention: u64,
) {
    let mut writes_since_compaction = 0u64;
    let mut queued = Vec::with_capacity(MAX_WRITE_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        queued.push(first);
        while queued.len() < MAX_WRITE_BATCH {
            match jobs.try_recv() {
                Ok(job) => queued.push(job),
                Err(_) => break,
            }
        }
        let mut batch = Batch {
            conn: &conn,
            events: Vec::new(),
        };
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| outcome_error(&e));
        let mut completions: Vec<Completion> = Vec::with_capacity(queued.len());
        for job in queued.drain(..) {
            let usable = match &begun {
                Err(e) => Err(e.clone()),
                Ok(()) if conn.is_autocommit() => Err((
                    true,
                    "the shared transaction was rolled back by an earlier failure".to_owned(),
                )),
                Ok(()) => Ok(&mut batch),
            };
            // A panicking write answers its caller by dropping its channel.
            if let Ok(completion) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(usable)))
            {
                completions.push(completion);
            }
        }
        let outcome: CommitOutcome = match begun {
            Err(e) => Err(e),
            Ok(()) if conn.is_autocommit() => Err((
                true,
                "the shared transaction was rolled back by an earlier failure".to_owned(),
            )),
            Ok(()) => conn.execute_batch("COMMIT").map_err(|e| {
                let _already_rolled_back = conn.execute_batch("ROLLBACK");
                outcome_error(&e)
            }),
        };
        let events = std::mem::take(&mut batch.events);
        if outcome.is_ok() {
            if let Ok(mut index) = versions.lock() {
                for event in &events {
                    index.apply(event);
                }
            }
            // One thread publishes, so the feed is in resource-version order.
            for event in &events {
                let _no_watchers = feed.send(Arc::clone(event));
            }
        }
        for completion in completions {
            completion(&outcome);
        }
        if outcome.is_ok() {
            writes_since_compaction += events.len() as u64;
            let latest = events.last().map_or(0, |e| e.object.resource_version);
            if writes_since_compaction >= super::compaction_interval(event_retention)
                && latest > event_retention
            {
                writes_since_compaction = 0;
                // A failed compaction is retried after the next interval.
                let _retry_later = compact_through(&conn, latest - event_retention);
            }
        }
    }
}

fn outcome_error(error: &rusqlite::Error) -> (bool, String) {
    let retryable = matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    (retryable, error.to_string())
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

fn open_connection(path: &Path, flags: OpenFlags, busy: Duration) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, flags).map_err(sql_error("open"))?;
    conn.busy_timeout(busy).map_err(sql_error("open"))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
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

fn meta_value(conn: &Connection, key: &str) -> StoreResult<u64> {
    let v: i64 = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut statement| statement.query_row([key], |r| r.get(0)))
        .map_err(sql_error("read meta"))?;
    u64::try_from(v).map_err(|e| StoreError::CorruptRecord {
        key: format!("meta {key}"),
        reason: e.to_string(),
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn read_object(
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

fn events_after(
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

fn compact_through(conn: &Connection, through: u64) -> StoreResult<()> {
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

    /// Queues a write for the writer thread and waits until the transaction holding
    /// it has committed (or failed). `f` runs in its own savepoint.
    async fn write<T, F>(&self, operation: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        let job: WriteJob = Box::new(move |batch| -> Completion {
            let result = match batch {
                Ok(batch) => batch.in_savepoint(operation, f),
                Err((retryable, message)) => {
                    Err(StoreError::backend(operation, retryable, message))
                }
            };
            match result {
                Ok(value) => Box::new(move |outcome: &CommitOutcome| {
                    let answer_now = match outcome {
                        Ok(()) => Ok(value),
                        Err((retryable, message)) => Err(StoreError::backend(
                            operation,
                            *retryable,
                            format!("commit failed: {message}"),
                        )),
                    };
                    // A caller that stopped waiting needs no answer.
                    let _gone = answer.send(answer_now);
                }),
                Err(error) => Box::new(move |_: &CommitOutcome| {
                    let _gone = answer.send(Err(error));
                }),
            }
        });
        let stopped = || StoreError::backend(operation, false, "the SQLite writer thread stopped");
        self.inner.jobs.send(job).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
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

    /// Runs one object write: reads the current row, lets `plan` decide the change,
    /// gives it the next resource version, writes row and change log, commits, then
    /// publishes the event.
    async fn mutate<P>(
        &self,
        operation: &'static str,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        plan: P,
    ) -> StoreResult<WatchEvent>
    where
        P: FnOnce(&ObjectKey<'_>, Option<StoredObject>) -> StoreResult<Change> + Send + 'static,
    {
        let namespace = namespace.to_owned();
        let name = name.to_owned();
        self.write(operation, move |batch| {
            let key = ObjectKey {
                kind,
                namespace: &namespace,
                name: &name,
            };
            let tx = batch.conn;
            let current = read_object(tx, kind, &namespace, &name)?;
            let mut change = plan(&key, current)?;
            let rv: i64 = tx
                .prepare_cached(
                    "UPDATE meta SET value = value + 1 WHERE key = 'resource_version' RETURNING value",
                )
                .and_then(|mut statement| statement.query_row([], |r| r.get(0)))
                .map_err(sql_error(operation))?;
            change.stamp(u64::try_from(rv).unwrap_or_default());
            let body_text = change.body().to_string();
            let stored = object::decode(kind, change.body().clone())?;
            match &change {
                Change::Put(..) => {
                    tx.prepare_cached(
                        "INSERT INTO objects (kind, namespace, name, uid, resource_version, generation, deleting, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                         ON CONFLICT (kind, namespace, name) DO UPDATE SET uid = excluded.uid, \
                         resource_version = excluded.resource_version, generation = excluded.generation, \
                         deleting = excluded.deleting, body = excluded.body",
                    )
                    .and_then(|mut statement| statement.execute(params![
                            kind.as_str(),
                            namespace,
                            name,
                            stored.uid,
                            rv,
                            to_i64(stored.generation),
                            stored.deletion_timestamp.is_some(),
                            body_text
                        ]))
                    .map_err(sql_error(operation))?;
                }
                Change::Remove(_) => {
                    tx.prepare_cached(
                        "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    )
                    .and_then(|mut statement| statement.execute(params![kind.as_str(), namespace, name]))
                    .map_err(sql_error(operation))?;
                    if kind == ResourceKind::EdgeDevice {
                        tx.prepare_cached(
                            "DELETE FROM last_seen WHERE namespace = ?1 AND device = ?2",
                        )
                        .and_then(|mut statement| statement.execute(params![namespace, name]))
                        .map_err(sql_error(operation))?;
                    }
                }
            }
            tx.prepare_cached(
                "INSERT INTO events (resource_version, kind, namespace, name, event_type, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut statement| statement.execute(params![
                    rv,
                    kind.as_str(),
                    namespace,
                    name,
                    change.event_type().as_str(),
                    body_text
                ]))
            .map_err(sql_error(operation))?;
            let event = WatchEvent {
                event_type: change.event_type(),
                object: stored,
            };
            // Published by the writer thread once the batch has committed.
            batch.events.push(Arc::new(event.clone()));
            Ok(event)
        })
        .await
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

fn decode_token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn token_from_row(
    (id, role, description, created): (String, String, String, i64),
) -> StoreResult<ApiToken> {
    let role = role
        .parse::<TokenRole>()
        .map_err(|e| StoreError::CorruptRecord {
            key: format!("api_tokens {id}"),
            reason: e.to_string(),
        })?;
    let created_at = from_micros(created, || format!("api_tokens {id}"))?;
    Ok(ApiToken {
        id,
        role,
        description,
        created_at,
    })
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
        let now = OffsetDateTime::now_utc();
        self.mutate("create", kind, namespace, name, move |key, current| {
            if current.is_some() {
                return Err(key.already_exists());
            }
            object::plan_create(key, body, now)
        })
        .await
        .map(|e| e.object)
    }

    async fn update(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
        body: Value,
    ) -> StoreResult<StoredObject> {
        self.mutate("update", kind, namespace, name, move |key, current| {
            let current = current.ok_or_else(|| key.not_found())?;
            object::plan_update(key, &current, expected_resource_version, body)
        })
        .await
        .map(|e| e.object)
    }

    async fn update_status(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
        status: Value,
    ) -> StoreResult<StoredObject> {
        self.mutate(
            "update_status",
            kind,
            namespace,
            name,
            move |key, current| {
                let current = current.ok_or_else(|| key.not_found())?;
                object::plan_status(key, &current, expected_resource_version, status)
            },
        )
        .await
        .map(|e| e.object)
    }

    async fn delete(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
    ) -> StoreResult<Deletion> {
        let now = OffsetDateTime::now_utc();
        let event = self
            .mutate("delete", kind, namespace, name, move |key, current| {
                let current = current.ok_or_else(|| key.not_found())?;
                object::plan_delete(key, &current, expected_resource_version, now)
            })
            .await?;
        Ok(match event.event_type {
            WatchEventType::Deleted => Deletion::Removed(event.object),
            _ => Deletion::Pending(event.object),
        })
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
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (serial) DO NOTHING",
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

    async fn create_token(&self, role: TokenRole, description: &str) -> StoreResult<IssuedToken> {
        let (id, secret) = super::new_token_secret()?;
        let hash = TokenHash::of(&secret);
        let token = ApiToken {
            id,
            role,
            description: description.to_owned(),
            created_at: super::now_micros(),
        };
        let record = token.clone();
        self.write("create_token", move |batch| {
            batch
                .conn
                .execute(
                    "INSERT INTO api_tokens (id, token_hash, role, description, created_at_us) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        record.id,
                        &hash.0[..],
                        record.role.as_str(),
                        record.description,
                        to_micros(record.created_at)
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
                "SELECT id, role, description, created_at_us FROM api_tokens WHERE token_hash = ?1",
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
                .prepare_cached(
                    "SELECT id, role, description, created_at_us FROM api_tokens ORDER BY id",
                )
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, resource_version: u64) -> StoredObject {
        StoredObject {
            kind: ResourceKind::EdgeDevice,
            namespace: "ns".into(),
            name: name.into(),
            uid: "u".into(),
            resource_version,
            generation: 1,
            labels: Default::default(),
            creation_timestamp: OffsetDateTime::UNIX_EPOCH,
            deletion_timestamp: None,
            body: Value::Null,
        }
    }

    fn event(event_type: WatchEventType, object: StoredObject) -> WatchEvent {
        WatchEvent { event_type, object }
    }

    #[test]
    fn readers_never_bring_back_an_older_state() {
        let mut index = VersionIndex::default();
        index.apply(&event(WatchEventType::Added, device("d", 5)));
        assert_eq!(index.get("ns", "d"), Some(5));
        // Read from a snapshot before the write that was applied: ignored.
        index.remember(4, &device("d", 3));
        assert_eq!(index.get("ns", "d"), Some(5));
        // Read from a snapshot at least as new: kept.
        index.remember(5, &device("e", 2));
        assert_eq!(index.get("ns", "e"), Some(2));
        index.apply(&event(WatchEventType::Deleted, device("d", 6)));
        assert_eq!(index.get("ns", "d"), None);
        // A reader that saw the device before its deletion cannot re-add it.
        index.remember(5, &device("d", 5));
        assert_eq!(index.get("ns", "d"), None);
        // Other kinds only move the applied version.
        let mut workload = device("d", 7);
        workload.kind = ResourceKind::EdgeWorkload;
        index.apply(&event(WatchEventType::Added, workload));
        assert_eq!(index.get("ns", "d"), None);
        index.remember(6, &device("d", 6));
        assert_eq!(index.get("ns", "d"), None, "snapshot 6 is older than 7");
        index.remember(7, &device("f", 1));
        assert_eq!(index.get("ns", "f"), Some(1));
        assert_eq!(index.len, 2);
    }
}
