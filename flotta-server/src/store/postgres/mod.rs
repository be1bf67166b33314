//! PostgreSQL backend for several server replicas sharing one database.
//!
//! Object writes are serialised by a transaction-scoped advisory lock, so resource
//! versions (from a sequence) commit in increasing order and "every change after
//! version N" is a plain range read. Each write sends `NOTIFY flotta_changes`; every
//! store keeps one `LISTEN` connection and, on notification, reads the new change
//! log entries once and fans them out to its watchers through a broadcast channel.

mod listen;
mod rows;
mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::{IsolationLevel, NoTls};

use self::listen::listen_for_changes;
use self::rows::{
    CHANNEL, PgWrite, WRITE_LOCK, meta_value, parse_event, pg_error, pool_error, to_i64, to_u64,
    token_from_row,
};
use self::schema::migrate;
use super::object;
use super::watch::{self, ChangelogReader, FEED_CAPACITY};
use super::write::{self, ObjectWriter, Plan, write_object};
use super::{
    ApiToken, Deletion, IssuedToken, LastSeen, ListOptions, ObjectList, ResourceKind,
    RevokedCertificate, Store, StoreError, StoreResult, StoredObject, TokenHash, TokenSpec,
    WatchEvent, WatchStream, from_micros, to_micros,
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

#[async_trait]
impl ObjectWriter for PostgresStore {
    /// Runs the write in its own transaction under the write lock, so resource
    /// versions commit in order, then wakes every replica's watchers with NOTIFY.
    async fn write_object(
        &self,
        operation: &'static str,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        plan: Plan,
    ) -> StoreResult<WatchEvent> {
        let mut client = self.client(operation).await?;
        let tx = client.transaction().await.map_err(pg_error(operation))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await
            .map_err(pg_error(operation))?;
        let event = write_object(
            &mut PgWrite { tx: &tx, operation },
            kind,
            namespace,
            name,
            plan,
        )
        .await?;
        let rv = event.object.resource_version;
        tx.execute(
            "UPDATE meta SET value = $1 WHERE key = 'resource_version'",
            &[&to_i64(rv)],
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
        if writes.is_multiple_of(super::compaction_interval(
            self.inner.options.event_retention,
        )) && rv > self.inner.options.event_retention
        {
            // The write is committed; a failed compaction is simply tried again later.
            let _retry_later = self.compact(rv - self.inner.options.event_retention).await;
        }
        Ok(event)
    }
}

/// A last-seen batch as the columns of one `unnest`: each device once, at its
/// latest time (a key may appear once per `INSERT .. ON CONFLICT`).
fn latest_per_device(batch: &[LastSeen]) -> (Vec<&str>, Vec<&str>, Vec<i64>) {
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
    (namespaces, devices, times)
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
        let (namespaces, devices, times) = latest_per_device(batch);
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

    fn last_seen_tells_versions(&self) -> bool {
        true
    }

    async fn record_last_seen_versions(
        &self,
        batch: &[LastSeen],
    ) -> StoreResult<Option<Vec<Option<u64>>>> {
        if batch.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let (namespaces, devices, times) = latest_per_device(batch);
        let client = self.client("record_last_seen").await?;
        // One statement: the times of the devices that exist are upserted, and
        // every device's current resource version comes back.
        let rows = client
            .query(
                "WITH input AS (\
                   SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                   AS t(namespace, device, seen_at_us)), \
                 current AS (\
                   SELECT input.namespace, input.device, input.seen_at_us, o.resource_version \
                   FROM input LEFT JOIN objects o ON o.kind = $4 \
                   AND o.namespace = input.namespace AND o.name = input.device), \
                 stamped AS (\
                   INSERT INTO last_seen (namespace, device, seen_at_us) \
                   SELECT namespace, device, seen_at_us FROM current \
                   WHERE resource_version IS NOT NULL \
                   ON CONFLICT (namespace, device) DO UPDATE \
                   SET seen_at_us = greatest(last_seen.seen_at_us, excluded.seen_at_us)) \
                 SELECT namespace, device, resource_version FROM current",
                &[
                    &namespaces,
                    &devices,
                    &times,
                    &ResourceKind::EdgeDevice.as_str(),
                ],
            )
            .await
            .map_err(pg_error("record_last_seen"))?;
        let mut versions: BTreeMap<(String, String), u64> = BTreeMap::new();
        for row in rows {
            let version: Option<i64> = row.get(2);
            if let Some(version) = version.and_then(|v| u64::try_from(v).ok()) {
                versions.insert((row.get(0), row.get(1)), version);
            }
        }
        Ok(Some(
            batch
                .iter()
                .map(|seen| {
                    versions
                        .get(&(seen.namespace.clone(), seen.device.clone()))
                        .copied()
                })
                .collect(),
        ))
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
                 VALUES ($1, $2, $3, $4) ON CONFLICT (serial) DO UPDATE \
                 SET revoked_at_us = LEAST(revoked_certificates.revoked_at_us, excluded.revoked_at_us)",
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

    async fn issue_token(&self, spec: &TokenSpec) -> StoreResult<IssuedToken> {
        let (token, secret) = super::new_token(spec)?;
        let hash = TokenHash::of(&secret);
        let client = self.client("create_token").await?;
        client
            .execute(
                "INSERT INTO api_tokens (id, token_hash, role, description, created_at_us, \
                 name, groups, expires_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &token.id,
                    &&hash.0[..],
                    &super::role_column(token.role),
                    &token.description,
                    &to_micros(token.created_at),
                    &token.name,
                    &super::groups_column(&token.groups),
                    &token.expires_at.map(to_micros),
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
                &format!(
                    "SELECT {} FROM api_tokens WHERE token_hash = $1",
                    super::TOKEN_COLUMNS
                ),
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
                &format!(
                    "SELECT {} FROM api_tokens ORDER BY id",
                    super::TOKEN_COLUMNS
                ),
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

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool> {
        let client = self.client("acquire_lease").await?;
        // The database's clock, so that replicas whose clocks differ agree on
        // when a lease ran out; the conflict clause's WHERE leaves a live lease of
        // another holder alone, and then no row comes back.
        let granted = client
            .query_opt(
                "INSERT INTO leases (name, holder, expires_at) \
                 VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
                 ON CONFLICT (name) DO UPDATE \
                 SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= clock_timestamp() \
                 RETURNING holder",
                &[&name, &holder, &ttl.as_secs_f64()],
            )
            .await
            .map_err(pg_error("acquire_lease"))?;
        Ok(granted.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let client = self.client("release_lease").await?;
        client
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await
            .map_err(pg_error("release_lease"))?;
        Ok(())
    }
}
