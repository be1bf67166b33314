//! PostgreSQL backend for several server replicas sharing one database.
//!
//! Object writes are serialised by a transaction-scoped advisory lock, so resource
//! versions (from a sequence) commit in increasing order and "every change after
//! version N" is a plain range read. Each write sends `NOTIFY flotta_changes`; every
//! store keeps one `LISTEN` connection and, on notification, reads the new change
//! log entries once and fans them out to its watchers through a broadcast channel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls};

use super::object::{self, Change, ObjectKey};
use super::watch::{self, ChangelogReader, FEED_CAPACITY};
use super::{
    ApiToken, Deletion, IssuedToken, LastSeen, ListOptions, ObjectList, ResourceKind,
    RevokedCertificate, Store, StoreError, StoreResult, StoredObject, TokenHash, TokenRole,
    WatchEvent, WatchEventType, WatchStream, from_micros, to_micros,
};

/// Tuning of a [`PostgresStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Maximum pooled connections (besides the one `LISTEN` connection).
    pub pool_size: usize,
    /// How many resource versions of change log to keep for watches.
    pub event_retention: u64,
    /// How often the change log is polled even without notifications, as a safety
    /// net for notifications lost while the `LISTEN` connection was down.
    pub poll_interval: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 8,
            event_retention: 10_000,
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// The notification channel announcing committed changes.
const CHANNEL: &str = "flotta_changes";
/// Advisory lock key serialising object writes ("flotta" in ASCII).
const WRITE_LOCK: i64 = 0x0000_666c_6f74_7461;
/// Advisory lock key serialising schema migrations.
const MIGRATION_LOCK: i64 = WRITE_LOCK + 1;
/// Change-log entries read per query by the notification listener.
const CATCH_UP_BATCH: i64 = 1_000;
/// The schema version this code writes.
const SCHEMA_VERSION: i32 = 1;

const MIGRATIONS: [&str; 1] = [r#"
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
"#];

fn pg_error(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
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

fn pool_error(operation: &'static str) -> impl FnOnce(deadpool_postgres::PoolError) -> StoreError {
    move |e| StoreError::backend(operation, true, e)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64, key: &str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|e| StoreError::CorruptRecord {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

struct Inner {
    pool: Pool,
    options: PostgresOptions,
    feed: broadcast::Sender<Arc<WatchEvent>>,
    writes_since_compaction: AtomicU64,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The PostgreSQL [`Store`]; any number of stores (server replicas) may share
/// one database. Cloning is cheap and shares the pool.
///
/// Durability is PostgreSQL's: a write is acknowledged after its commit, which
/// with the default `synchronous_commit = on` is flushed to the WAL.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

async fn migrate(pool: &Pool) -> StoreResult<()> {
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

async fn meta_value(client: &impl deadpool_postgres::GenericClient, key: &str) -> StoreResult<u64> {
    let row = client
        .query_one("SELECT value FROM meta WHERE key = $1", &[&key])
        .await
        .map_err(pg_error("read meta"))?;
    to_u64(row.get(0), key)
}

fn parse_event(kind: ResourceKind, event_type: &str, body: &str) -> StoreResult<WatchEvent> {
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

/// Reads new change-log entries of every kind and publishes them in order.
async fn catch_up(
    pool: &Pool,
    feed: &broadcast::Sender<Arc<WatchEvent>>,
    last: &mut u64,
) -> StoreResult<()> {
    let client = pool.get().await.map_err(pool_error("watch"))?;
    loop {
        let rows = client
            .query(
                "SELECT resource_version, kind, event_type, body FROM events \
                 WHERE resource_version > $1 ORDER BY resource_version LIMIT $2",
                &[&to_i64(*last), &CATCH_UP_BATCH],
            )
            .await
            .map_err(pg_error("watch"))?;
        let count = rows.len();
        for row in rows {
            let rv = to_u64(row.get(0), "events.resource_version")?;
            let kind_text: &str = row.get(1);
            let kind =
                kind_text
                    .parse::<ResourceKind>()
                    .map_err(|e| StoreError::CorruptRecord {
                        key: format!("events {rv}"),
                        reason: e.to_string(),
                    })?;
            let event = parse_event(kind, row.get(2), row.get(3))?;
            *last = rv;
            let _no_watchers = feed.send(Arc::new(event));
        }
        if i64::try_from(count).unwrap_or(i64::MAX) < CATCH_UP_BATCH {
            return Ok(());
        }
    }
}

/// Keeps one `LISTEN` connection open (reconnecting after failures) and publishes
/// change-log entries when notified, and every `poll_interval` regardless.
async fn listen_for_changes(
    config: tokio_postgres::Config,
    pool: Pool,
    feed: broadcast::Sender<Arc<WatchEvent>>,
    mut last: u64,
    poll_interval: Duration,
) {
    loop {
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let (notified_tx, mut notified) = mpsc::unbounded_channel::<()>();
            let driver = tokio::spawn(async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if matches!(message, AsyncMessage::Notification(_))
                        && notified_tx.send(()).is_err()
                    {
                        break;
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                // Whatever committed while no LISTEN was active is read now.
                let _retry_on_next_wake = catch_up(&pool, &feed, &mut last).await;
                loop {
                    tokio::select! {
                        wake = notified.recv() => {
                            if wake.is_none() {
                                break;
                            }
                            while notified.try_recv().is_ok() {}
                        }
                        () = tokio::time::sleep(poll_interval) => {}
                    }
                    let _retry_on_next_wake = catch_up(&pool, &feed, &mut last).await;
                }
            }
            driver.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`) with
    /// default options and brings its schema up to date. TLS to the database is
    /// not supported yet: use a local socket or a trusted network.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::backend("connect", false, e))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| StoreError::backend("connect", false, e))?;
        migrate(&pool).await?;
        let start = {
            let client = pool.get().await.map_err(pool_error("connect"))?;
            meta_value(&client, "resource_version").await?
        };
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let listener = tokio::spawn(listen_for_changes(
            config,
            pool.clone(),
            feed.clone(),
            start,
            options.poll_interval,
        ));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                options,
                feed,
                writes_since_compaction: AtomicU64::new(0),
                listener,
            }),
        })
    }

    async fn client(&self, operation: &'static str) -> StoreResult<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(pool_error(operation))
    }

    async fn mutate<P>(
        &self,
        operation: &'static str,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        plan: P,
    ) -> StoreResult<WatchEvent>
    where
        P: FnOnce(&ObjectKey<'_>, Option<StoredObject>) -> StoreResult<Change> + Send,
    {
        let key = ObjectKey {
            kind,
            namespace,
            name,
        };
        let mut client = self.client(operation).await?;
        let tx = client.transaction().await.map_err(pg_error(operation))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await
            .map_err(pg_error(operation))?;
        let current = tx
            .query_opt(
                "SELECT body FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3",
                &[&kind.as_str(), &namespace, &name],
            )
            .await
            .map_err(pg_error(operation))?
            .map(|row| object::decode_text(kind, row.get(0)))
            .transpose()?;
        let mut change = plan(&key, current)?;
        let rv: i64 = tx
            .query_one("SELECT nextval('resource_version_seq')", &[])
            .await
            .map_err(pg_error(operation))?
            .get(0);
        change.stamp(to_u64(rv, "resource_version_seq")?);
        let body_text = change.body().to_string();
        let stored = object::decode(kind, change.body().clone())?;
        match &change {
            Change::Put(..) => {
                tx.execute(
                    "INSERT INTO objects (kind, namespace, name, uid, resource_version, generation, deleting, body) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (kind, namespace, name) DO UPDATE SET uid = excluded.uid, \
                     resource_version = excluded.resource_version, generation = excluded.generation, \
                     deleting = excluded.deleting, body = excluded.body",
                    &[
                        &kind.as_str(),
                        &namespace,
                        &name,
                        &stored.uid,
                        &rv,
                        &to_i64(stored.generation),
                        &stored.deletion_timestamp.is_some(),
                        &body_text,
                    ],
                )
                .await
                .map_err(pg_error(operation))?;
            }
            Change::Remove(_) => {
                tx.execute(
                    "DELETE FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3",
                    &[&kind.as_str(), &namespace, &name],
                )
                .await
                .map_err(pg_error(operation))?;
                if kind == ResourceKind::EdgeDevice {
                    tx.execute(
                        "DELETE FROM last_seen WHERE namespace = $1 AND device = $2",
                        &[&namespace, &name],
                    )
                    .await
                    .map_err(pg_error(operation))?;
                }
            }
        }
        tx.execute(
            "INSERT INTO events (resource_version, kind, namespace, name, event_type, body) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &rv,
                &kind.as_str(),
                &namespace,
                &name,
                &change.event_type().as_str(),
                &body_text,
            ],
        )
        .await
        .map_err(pg_error(operation))?;
        tx.execute(
            "UPDATE meta SET value = $1 WHERE key = 'resource_version'",
            &[&rv],
        )
        .await
        .map_err(pg_error(operation))?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &rv.to_string()])
            .await
            .map_err(pg_error(operation))?;
        tx.commit().await.map_err(pg_error(operation))?;
        drop(client);

        let writes = self
            .inner
            .writes_since_compaction
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let rv = to_u64(rv, "resource_version_seq")?;
        if writes.is_multiple_of(super::compaction_interval(
            self.inner.options.event_retention,
        )) && rv > self.inner.options.event_retention
        {
            // The write is committed; a failed compaction is simply tried again later.
            let _retry_later = self.compact(rv - self.inner.options.event_retention).await;
        }
        Ok(WatchEvent {
            event_type: change.event_type(),
            object: stored,
        })
    }

    fn changelog_reader(&self, kind: ResourceKind, namespace: Option<String>) -> ChangelogReader {
        let store = self.clone();
        Arc::new(move |after| {
            let store = store.clone();
            let namespace = namespace.clone();
            Box::pin(async move { store.events_after(kind, namespace.as_deref(), after).await })
        })
    }

    async fn events_after(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        after: u64,
    ) -> StoreResult<Vec<WatchEvent>> {
        let mut client = self.client("watch").await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error("watch"))?;
        let compacted = to_u64(
            tx.query_one(
                "SELECT value FROM meta WHERE key = 'compacted_resource_version'",
                &[],
            )
            .await
            .map_err(pg_error("watch"))?
            .get(0),
            "compacted_resource_version",
        )?;
        if after < compacted {
            return Err(StoreError::Gone {
                requested: after,
                compacted,
            });
        }
        let rows = tx
            .query(
                "SELECT event_type, body FROM events WHERE resource_version > $1 AND kind = $2 \
                 AND ($3::text IS NULL OR namespace = $3) ORDER BY resource_version",
                &[&to_i64(after), &kind.as_str(), &namespace],
            )
            .await
            .map_err(pg_error("watch"))?;
        rows.iter()
            .map(|row| parse_event(kind, row.get(0), row.get(1)))
            .collect()
    }
}

fn token_from_row(row: &tokio_postgres::Row) -> StoreResult<ApiToken> {
    let id: String = row.get(0);
    let role: &str = row.get(1);
    let role = role
        .parse::<TokenRole>()
        .map_err(|e| StoreError::CorruptRecord {
            key: format!("api_tokens {id}"),
            reason: e.to_string(),
        })?;
    let created_at = from_micros(row.get(3), || format!("api_tokens {id}"))?;
    Ok(ApiToken {
        role,
        description: row.get(2),
        created_at,
        id,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<StoredObject>> {
        let client = self.client("get").await?;
        client
            .query_opt(
                "SELECT body FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3",
                &[&kind.as_str(), &namespace, &name],
            )
            .await
            .map_err(pg_error("get"))?
            .map(|row| object::decode_text(kind, row.get(0)))
            .transpose()
    }

    async fn list(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> StoreResult<ObjectList> {
        let start = object::page_start(options.continue_token.as_deref())?;
        let mut client = self.client("list").await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error("list"))?;
        let rv = match start.resource_version {
            Some(rv) => rv,
            None => to_u64(
                tx.query_one("SELECT value FROM meta WHERE key = 'resource_version'", &[])
                    .await
                    .map_err(pg_error("list"))?
                    .get(0),
                "resource_version",
            )?,
        };
        let (after_ns, after_name) = match start.after {
            Some((ns, name)) => (Some(ns), Some(name)),
            None => (None, None),
        };
        let sql_limit: Option<i64> = options
            .limit
            .map(|l| i64::try_from(l).unwrap_or(i64::MAX - 1) + 1);
        let rows = tx
            .query(
                "SELECT body FROM objects WHERE kind = $1 AND ($2::text IS NULL OR namespace = $2) \
                 AND ($3::text IS NULL OR (namespace, name) > ($3::text, $4::text)) \
                 ORDER BY namespace, name LIMIT $5",
                &[
                    &kind.as_str(),
                    &namespace,
                    &after_ns,
                    &after_name,
                    &sql_limit,
                ],
            )
            .await
            .map_err(pg_error("list"))?;
        let items = rows
            .iter()
            .map(|row| object::decode_text(kind, row.get(0)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(object::finish_page(items, options.limit, rv))
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
        let client = self.client("current_resource_version").await?;
        meta_value(&client, "resource_version").await
    }

    async fn watch(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        from_resource_version: u64,
    ) -> StoreResult<WatchStream> {
        let feed = self.inner.feed.subscribe();
        let compacted = {
            let client = self.client("watch").await?;
            meta_value(&client, "compacted_resource_version").await?
        };
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
        let mut client = self.client("compact").await?;
        let tx = client.transaction().await.map_err(pg_error("compact"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await
            .map_err(pg_error("compact"))?;
        let current = meta_value(&tx, "resource_version").await?;
        let through = to_i64(through_resource_version.min(current));
        tx.execute(
            "DELETE FROM events WHERE resource_version <= $1",
            &[&through],
        )
        .await
        .map_err(pg_error("compact"))?;
        tx.execute(
            "UPDATE meta SET value = greatest(value, $1) WHERE key = 'compacted_resource_version'",
            &[&through],
        )
        .await
        .map_err(pg_error("compact"))?;
        tx.commit().await.map_err(pg_error("compact"))
    }

    async fn record_last_seen(&self, batch: &[LastSeen]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // One statement per batch; a key may appear once per INSERT .. ON CONFLICT,
        // so duplicates are folded to their latest time first.
        let mut latest: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for seen in batch {
            let t = to_micros(seen.seen_at);
            latest
                .entry((seen.namespace.as_str(), seen.device.as_str()))
                .and_modify(|cur| *cur = (*cur).max(t))
                .or_insert(t);
        }
        let mut namespaces = Vec::with_capacity(latest.len());
        let mut devices = Vec::with_capacity(latest.len());
        let mut times = Vec::with_capacity(latest.len());
        for ((ns, device), t) in latest {
            namespaces.push(ns);
            devices.push(device);
            times.push(t);
        }
        let client = self.client("record_last_seen").await?;
        client
            .execute(
                "INSERT INTO last_seen (namespace, device, seen_at_us) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                 ON CONFLICT (namespace, device) DO UPDATE \
                 SET seen_at_us = greatest(last_seen.seen_at_us, excluded.seen_at_us)",
                &[&namespaces, &devices, &times],
            )
            .await
            .map_err(pg_error("record_last_seen"))?;
        Ok(())
    }

    async fn last_seen(
        &self,
        namespace: &str,
        device: &str,
    ) -> StoreResult<Option<OffsetDateTime>> {
        let client = self.client("last_seen").await?;
        client
            .query_opt(
                "SELECT seen_at_us FROM last_seen WHERE namespace = $1 AND device = $2",
                &[&namespace, &device],
            )
            .await
            .map_err(pg_error("last_seen"))?
            .map(|row| from_micros(row.get(0), || format!("last_seen {namespace}/{device}")))
            .transpose()
    }

    async fn last_seen_all(&self, namespace: Option<&str>) -> StoreResult<Vec<LastSeen>> {
        let client = self.client("last_seen_all").await?;
        let rows = client
            .query(
                "SELECT namespace, device, seen_at_us FROM last_seen \
                 WHERE $1::text IS NULL OR namespace = $1 \
                 ORDER BY namespace, device",
                &[&namespace],
            )
            .await
            .map_err(pg_error("last_seen_all"))?;
        rows.iter()
            .map(|row| {
                let namespace: String = row.get(0);
                let device: String = row.get(1);
                let seen_at =
                    from_micros(row.get(2), || format!("last_seen {namespace}/{device}"))?;
                Ok(LastSeen {
                    namespace,
                    device,
                    seen_at,
                })
            })
            .collect()
    }

    async fn revoke_certificate(&self, revoked: &RevokedCertificate) -> StoreResult<()> {
        let client = self.client("revoke_certificate").await?;
        client
            .execute(
                "INSERT INTO revoked_certificates (serial, namespace, device, revoked_at_us) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (serial) DO NOTHING",
                &[
                    &revoked.serial,
                    &revoked.namespace,
                    &revoked.device,
                    &to_micros(revoked.revoked_at),
                ],
            )
            .await
            .map_err(pg_error("revoke_certificate"))?;
        Ok(())
    }

    async fn revoked_certificates(&self) -> StoreResult<Vec<RevokedCertificate>> {
        let client = self.client("revoked_certificates").await?;
        let rows = client
            .query(
                "SELECT serial, namespace, device, revoked_at_us FROM revoked_certificates \
                 ORDER BY serial",
                &[],
            )
            .await
            .map_err(pg_error("revoked_certificates"))?;
        rows.iter()
            .map(|row| {
                let serial: String = row.get(0);
                let revoked_at =
                    from_micros(row.get(3), || format!("revoked_certificates {serial}"))?;
                Ok(RevokedCertificate {
                    namespace: row.get(1),
                    device: row.get(2),
                    revoked_at,
                    serial,
                })
            })
            .collect()
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
        let client = self.client("create_token").await?;
        client
            .execute(
                "INSERT INTO api_tokens (id, token_hash, role, description, created_at_us) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &token.id,
                    &&hash.0[..],
                    &token.role.as_str(),
                    &token.description,
                    &to_micros(token.created_at),
                ],
            )
            .await
            .map_err(pg_error("create_token"))?;
        Ok(IssuedToken { secret, token })
    }

    async fn find_token(&self, hash: &TokenHash) -> StoreResult<Option<ApiToken>> {
        let client = self.client("find_token").await?;
        client
            .query_opt(
                "SELECT id, role, description, created_at_us FROM api_tokens WHERE token_hash = $1",
                &[&&hash.0[..]],
            )
            .await
            .map_err(pg_error("find_token"))?
            .map(|row| token_from_row(&row))
            .transpose()
    }

    async fn list_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        let client = self.client("list_tokens").await?;
        let rows = client
            .query(
                "SELECT id, role, description, created_at_us FROM api_tokens ORDER BY id",
                &[],
            )
            .await
            .map_err(pg_error("list_tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    async fn delete_token(&self, id: &str) -> StoreResult<bool> {
        let client = self.client("delete_token").await?;
        let n = client
            .execute("DELETE FROM api_tokens WHERE id = $1", &[&id])
            .await
            .map_err(pg_error("delete_token"))?;
        Ok(n > 0)
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let client = self.client("setting").await?;
        Ok(client
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await
            .map_err(pg_error("setting"))?
            .map(|row| row.get(0)))
    }

    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let client = self.client("put_setting").await?;
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await
            .map_err(pg_error("put_setting"))?;
        Ok(())
    }
}
