//! Durable state of the server: resources, their change log, device last-seen
//! times, revoked certificates, API tokens and settings.
//!
//! Resources are kept generically as JSON documents ([`StoredObject`]); the store
//! owns the server-managed metadata (`uid`, `resourceVersion`, `generation`,
//! `creationTimestamp`, `deletionTimestamp`) and keeps it identical in the columns
//! and in the body. Every change of any kind takes the next value of one global
//! resource version counter (as etcd does) and is appended to a change log that
//! [`Store::watch`] replays and then follows live.
//!
//! Two backends implement [`Store`]: [`SqliteStore`] (embedded, zero set-up) and,
//! with the `postgres` feature (on by default), [`PostgresStore`] for several server
//! replicas sharing one database. See `docs/storage.md`.
//!
//! ```
//! use flotta_server::store::{ResourceKind, SqliteStore, Store, StoreError};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let runtime = tokio::runtime::Runtime::new()?;
//! # runtime.block_on(async {
//! let store = SqliteStore::open(dir.path().join("flotta.db"))?;
//! let created = store
//!     .create(ResourceKind::EdgeDevice, "default", "dev-1", json!({"spec": {}}))
//!     .await?;
//! assert_eq!(created.generation, 1);
//! // A write based on an old resource version is refused.
//! store
//!     .update_status(ResourceKind::EdgeDevice, "default", "dev-1", None, json!({"phase": "up"}))
//!     .await?;
//! let stale = store
//!     .update(ResourceKind::EdgeDevice, "default", "dev-1", Some(created.resource_version), json!({}))
//!     .await;
//! assert!(matches!(stale, Err(StoreError::Conflict { .. })));
//! # Ok::<(), StoreError>(())
//! # })?;
//! # Ok(())
//! # }
//! ```

mod dry_run;
mod error;
mod last_seen;
mod object;
#[cfg(feature = "postgres")]
mod postgres;
mod sealed;
mod sqlite;
mod watch;
mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use time::OffsetDateTime;

pub use dry_run::{DryRunWrite, dry_run};
pub use error::{BackendCause, StoreError};
pub use last_seen::LastSeenRecorder;
pub use object::ContinueToken;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use sealed::{DEFAULT_KEY_FILE, SEALED_FIELD, SealedStore, SealingKeyError, SealingKeys};
pub use sqlite::{SqliteOptions, SqliteStore};

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The kinds of resource the server stores: core's kind table
/// ([`flotta_core::kind`]), whose `as_str` is the `kind` written in the database.
pub use flotta_core::kind::{ResourceKind, UnknownResourceKind};

/// One stored resource: the server-managed metadata plus the full JSON body.
///
/// The body's `metadata` always agrees with the fields here (`resourceVersion` is
/// the decimal string of [`StoredObject::resource_version`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    /// Kind of the resource.
    pub kind: ResourceKind,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, assigned at creation.
    pub uid: String,
    /// `metadata.resourceVersion`: the global revision of the object's last change.
    pub resource_version: u64,
    /// `metadata.generation`: bumped when anything but metadata and status changes.
    pub generation: u64,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.creationTimestamp` (whole seconds).
    pub creation_timestamp: OffsetDateTime,
    /// `metadata.deletionTimestamp`: set when deletion waits for finalizers.
    pub deletion_timestamp: Option<OffsetDateTime>,
    /// The whole resource as JSON (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
    pub body: Value,
}

impl StoredObject {
    /// The body as the typed resource `T` (`EdgeDevice`, `EdgeWorkload`, ...), read
    /// in place without copying the body.
    ///
    /// A body that does not match `T` is [`StoreError::CorruptRecord`]: the store
    /// only holds bodies the API validated, so a mismatch means a damaged row or a
    /// wrong `T`.
    pub fn to_resource<T: serde::de::DeserializeOwned>(&self) -> StoreResult<T> {
        T::deserialize(&self.body).map_err(|e| StoreError::CorruptRecord {
            key: format!("{} {}/{}", self.kind, self.namespace, self.name),
            reason: e.to_string(),
        })
    }
}

/// How to page through a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many objects per page; `None` returns everything.
    pub limit: Option<usize>,
    /// The [`ObjectList::continue_token`] of the previous page.
    pub continue_token: Option<String>,
}

/// One page of a list, ordered by (namespace, name).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList {
    /// The objects of this page.
    pub items: Vec<StoredObject>,
    /// The global resource version the first page was read at; watch from it to
    /// follow changes after the list.
    pub resource_version: u64,
    /// Present when more objects follow: pass it back in [`ListOptions`].
    pub continue_token: Option<String>,
}

/// What happened to an object in a [`WatchEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchEventType {
    /// The object was created.
    Added,
    /// The object was changed (including being marked for deletion).
    Modified,
    /// The object was removed; the event carries its last state.
    Deleted,
}

impl WatchEventType {
    /// The Kubernetes watch event type (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "ADDED" => Some(WatchEventType::Added),
            "MODIFIED" => Some(WatchEventType::Modified),
            "DELETED" => Some(WatchEventType::Deleted),
            _ => None,
        }
    }
}

/// One change of one object, as streamed by [`Store::watch`].
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: WatchEventType,
    /// The object after the change (for deletions: its last state, carrying the
    /// deletion's resource version).
    pub object: StoredObject,
}

/// A stream of watch events; it ends with an error such as [`StoreError::Gone`] when
/// it cannot go on.
pub type WatchStream = BoxStream<'static, StoreResult<WatchEvent>>;

/// `stream`, polled continuously by a task of its own, its items handed over a
/// channel; the task ends when the returned stream is dropped.
///
/// A watch stream reads the store's change log when it starts or lags; on
/// PostgreSQL that read holds a pooled connection inside a transaction until the
/// stream is polled again. A task that merges several watches and, between two
/// reads, works with the same pool leaves the reads of the streams it was not
/// waiting on suspended with their connections held: with enough watches the pool
/// runs dry and both wait on each other. Pumped, every read runs to its end.
pub fn pumped(mut stream: WatchStream) -> WatchStream {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if sender.send(item).is_err() || failed {
                return;
            }
        }
    });
    let guard = AbortOnDrop(pump);
    futures::stream::poll_fn(move |cx| {
        let _held = &guard;
        receiver.poll_recv(cx)
    })
    .boxed()
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The outcome of [`Store::delete`].
#[derive(Debug, Clone, PartialEq)]
pub enum Deletion {
    /// The object is gone; this is its last state.
    Removed(StoredObject),
    /// The object has finalizers: it was marked with a `deletionTimestamp` and is
    /// removed once an update empties `metadata.finalizers`.
    Pending(StoredObject),
}

impl Deletion {
    /// The object's state after the delete call.
    pub fn object(&self) -> &StoredObject {
        match self {
            Deletion::Removed(o) | Deletion::Pending(o) => o,
        }
    }
}

/// When a device was last heard from, as recorded by heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSeen {
    /// The device's namespace.
    pub namespace: String,
    /// The device's name (its id).
    pub device: String,
    /// Server time of the heartbeat (stored to the microsecond).
    pub seen_at: OffsetDateTime,
}

/// A revoked device certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCertificate {
    /// Certificate serial number, lowercase hexadecimal without separators.
    pub serial: String,
    /// Namespace of the device the certificate was issued to.
    pub namespace: String,
    /// The device the certificate was issued to.
    pub device: String,
    /// When it is refused from (ahead of now for a certificate a renewal
    /// superseded, until the grace window ends).
    pub revoked_at: OffsetDateTime,
}

/// What a management API bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenRole {
    /// Everything, including token management.
    Admin,
    /// Read and change resources.
    Operator,
    /// Read resources.
    Viewer,
    /// Read `/metrics` only: for a Prometheus scraper.
    Metrics,
}

impl TokenRole {
    /// The role's name as stored (`admin`, `operator`, `viewer`, `metrics`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Operator => "operator",
            TokenRole::Viewer => "viewer",
            TokenRole::Metrics => "metrics",
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`TokenRole`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown token role {0:?} (expected admin, operator, viewer or metrics)")]
pub struct UnknownTokenRole(pub String);

impl FromStr for TokenRole {
    type Err = UnknownTokenRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(TokenRole::Admin),
            "operator" => Ok(TokenRole::Operator),
            "viewer" => Ok(TokenRole::Viewer),
            "metrics" => Ok(TokenRole::Metrics),
            other => Err(UnknownTokenRole(other.to_owned())),
        }
    }
}

/// SHA-256 of a bearer token secret; only this is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes a presented bearer token secret.
    pub fn of(secret: &str) -> Self {
        use sha2::Digest;
        TokenHash(sha2::Sha256::digest(secret.as_bytes()).into())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A stored API token (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Identifier of the token, safe to show and log.
    pub id: String,
    /// The token's name: the user name RBAC bindings name (`User` subjects).
    pub name: String,
    /// The built-in role the token holds, if any: membership of the group the
    /// built-in ClusterRoleBinding `flotta:ROLE` binds (see
    /// [`flotta_core::rbac::builtin`]).
    pub role: Option<TokenRole>,
    /// Further groups the token's user is in (`Group` subjects).
    pub groups: Vec<String>,
    /// Free text saying who or what the token is for.
    pub description: String,
    /// When the token was created.
    pub created_at: OffsetDateTime,
    /// When the token stops being accepted; never when `None`.
    pub expires_at: Option<OffsetDateTime>,
}

impl ApiToken {
    /// Whether the token has expired at `now`.
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The user the token authenticates: its name, its groups, its role's group
    /// and `system:authenticated`.
    pub fn user_info(&self) -> flotta_core::rbac::UserInfo {
        let role_group = self
            .role
            .map(|role| flotta_core::rbac::builtin::role_group(role.as_str()));
        flotta_core::rbac::UserInfo::new(
            self.name.clone(),
            self.groups.iter().cloned().chain(role_group),
        )
    }
}

/// What a new token is: its name, role, groups, description and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSpec {
    /// The user name; empty gives `token-` and the first 8 characters of the id.
    pub name: String,
    /// The built-in role, if any.
    pub role: Option<TokenRole>,
    /// Groups.
    pub groups: Vec<String>,
    /// Free text.
    pub description: String,
    /// Expiry; never when `None`.
    pub expires_at: Option<OffsetDateTime>,
}

impl TokenSpec {
    /// A token with `role`, no name of its own, no groups, never expiring.
    pub fn with_role(role: TokenRole, description: &str) -> Self {
        Self {
            role: Some(role),
            description: description.to_owned(),
            ..Self::default()
        }
    }
}

/// A newly created token: the secret is shown once and never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token secret to hand to the user.
    pub secret: String,
    /// The stored record.
    pub token: ApiToken,
}

/// Every object of `kind` (in `namespace`, or in all), read in one list.
pub async fn list_all(
    store: &dyn Store,
    kind: ResourceKind,
    namespace: Option<&str>,
) -> StoreResult<Vec<StoredObject>> {
    Ok(store
        .list(kind, namespace, &ListOptions::default())
        .await?
        .items)
}

/// The server's durable state.
///
/// Object operations take the kind, the namespace and the name separately from the
/// body; the store overwrites the body's server-managed metadata.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one object.
    async fn get(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<StoredObject>>;

    /// The resource version of an object as of the latest write this store
    /// acknowledged, when the store knows it without I/O; `None` when it would have
    /// to read (call [`Store::get`]), including for an object that does not exist.
    ///
    /// Callers use it to tell that an object they read earlier is unchanged. Only a
    /// store that is the sole writer of its data can answer; the default knows
    /// nothing. [`SqliteStore`] answers for `EdgeDevice` objects it recently read or
    /// wrote.
    fn cached_resource_version(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Option<u64> {
        let _ = (kind, namespace, name);
        None
    }

    /// Lists objects of a kind in one namespace (or all with `None`), ordered by
    /// (namespace, name), one page at a time.
    async fn list(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> StoreResult<ObjectList>;

    /// Creates an object; fails with [`StoreError::AlreadyExists`] if the key is taken.
    ///
    /// Sets `uid`, `resourceVersion`, `generation` (1) and `creationTimestamp`.
    async fn create(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        body: Value,
    ) -> StoreResult<StoredObject>;

    /// Replaces an object's body except its `status` and server-managed metadata.
    ///
    /// With `expected_resource_version`, fails with [`StoreError::Conflict`] unless it
    /// is the stored one. `generation` is bumped when anything outside `metadata` and
    /// `status` changed. When the object awaits deletion and the update empties its
    /// finalizers, the object is removed (a `Deleted` event).
    async fn update(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
        body: Value,
    ) -> StoreResult<StoredObject>;

    /// Replaces an object's `status` only; the generation is kept.
    async fn update_status(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
        status: Value,
    ) -> StoreResult<StoredObject>;

    /// Deletes an object, or marks it for deletion while it has finalizers.
    async fn delete(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
    ) -> StoreResult<Deletion>;

    /// Records that an event happened `times` times now: creates its `Event`
    /// object (named [`EventOccurrence::object_name`]) or, when one with that name
    /// exists, raises its `count` and moves its `lastTimestamp`, in one write.
    ///
    /// [`EventOccurrence::object_name`]: flotta_core::events::EventOccurrence::object_name
    async fn record_event(
        &self,
        occurrence: &flotta_core::events::EventOccurrence,
        times: u32,
    ) -> StoreResult<StoredObject>;

    /// The global resource version of the latest change.
    async fn current_resource_version(&self) -> StoreResult<u64>;

    /// Streams the changes of a kind (in one namespace or all) made after
    /// `from_resource_version`: first those in the change log, then live ones.
    ///
    /// Fails with [`StoreError::Gone`] (at once or later, as the stream's last
    /// item) when the change log no longer reaches back that far.
    async fn watch(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        from_resource_version: u64,
    ) -> StoreResult<WatchStream>;

    /// Drops change-log entries up to and including `through_resource_version`;
    /// watches from before it then fail with [`StoreError::Gone`].
    async fn compact(&self, through_resource_version: u64) -> StoreResult<()>;

    /// Records heartbeat times of many devices in one transaction. A time older
    /// than the stored one for the same device is ignored.
    async fn record_last_seen(&self, batch: &[LastSeen]) -> StoreResult<()>;

    /// [`Store::record_last_seen`], telling for each entry (in order) the resource
    /// version of its `EdgeDevice` as of the same statement (`None`: no such device),
    /// so that a caller holding a copy of the device read earlier learns, at no
    /// extra round trip, whether it is still current. `Ok(None)` when the store
    /// cannot tell at that cost (the default: it records and says nothing).
    ///
    /// [`PostgresStore`] answers: its replicas cannot vouch for a cached version
    /// ([`Store::cached_resource_version`]) because another replica may write, so
    /// the heartbeat checks its cached copy here instead of reading the row first.
    async fn record_last_seen_versions(
        &self,
        batch: &[LastSeen],
    ) -> StoreResult<Option<Vec<Option<u64>>>> {
        self.record_last_seen(batch).await?;
        Ok(None)
    }

    /// Whether [`Store::record_last_seen_versions`] tells versions.
    fn last_seen_tells_versions(&self) -> bool {
        false
    }

    /// When one device was last seen.
    async fn last_seen(&self, namespace: &str, device: &str)
    -> StoreResult<Option<OffsetDateTime>>;

    /// Last-seen times of every device in a namespace (or all with `None`), ordered
    /// by (namespace, device).
    async fn last_seen_all(&self, namespace: Option<&str>) -> StoreResult<Vec<LastSeen>>;

    /// Records a revoked certificate, refused from `revoked_at` on (which may be
    /// ahead: a renewal's grace window). Idempotent on the serial; recording it
    /// again keeps the earlier time.
    async fn revoke_certificate(&self, revoked: &RevokedCertificate) -> StoreResult<()>;

    /// Every revoked certificate, ordered by serial.
    async fn revoked_certificates(&self) -> StoreResult<Vec<RevokedCertificate>>;

    /// Creates an API token as `spec` says, with a fresh random secret.
    async fn issue_token(&self, spec: &TokenSpec) -> StoreResult<IssuedToken>;

    /// Creates an API token with `role` and a fresh random secret (named after its
    /// id, never expiring).
    async fn create_token(&self, role: TokenRole, description: &str) -> StoreResult<IssuedToken> {
        self.issue_token(&TokenSpec::with_role(role, description))
            .await
    }

    /// Finds the token whose secret hashes to `hash`.
    async fn find_token(&self, hash: &TokenHash) -> StoreResult<Option<ApiToken>>;

    /// Every token, ordered by id.
    async fn list_tokens(&self) -> StoreResult<Vec<ApiToken>>;

    /// Deletes a token; returns whether it existed.
    async fn delete_token(&self, id: &str) -> StoreResult<bool>;

    /// Reads a server setting.
    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;

    /// Writes a server setting.
    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()>;

    /// Takes or renews the lease `name` for `holder` until `ttl` from now, by the
    /// database's clock: granted when nobody holds it, when `holder` already holds
    /// it, or when its holder let it run out. Returns whether `holder` holds it.
    /// Replicas sharing one database elect their leader with it
    /// ([`crate::leader`]).
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool>;

    /// Gives up the lease `name` when `holder` holds it, so that another replica can
    /// take it at once rather than when it runs out.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
}

/// A new token record for `spec` and its secret, for a backend to store.
pub(crate) fn new_token(spec: &TokenSpec) -> StoreResult<(ApiToken, String)> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::backend("create_token", false, e.to_string()))?;
    let secret = format!(
        "flt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let id = uuid::Uuid::new_v4().simple().to_string();
    let name = if spec.name.is_empty() {
        format!("token-{}", id.get(..8).unwrap_or(&id))
    } else {
        spec.name.clone()
    };
    let token = ApiToken {
        id,
        name,
        role: spec.role,
        groups: spec.groups.clone(),
        description: spec.description.clone(),
        created_at: now_micros(),
        expires_at: spec.expires_at,
    };
    Ok((token, secret))
}

/// The `role` column: the role's name, or empty for none.
pub(crate) fn role_column(role: Option<TokenRole>) -> &'static str {
    role.map_or("", TokenRole::as_str)
}

/// The `groups` column: a JSON array.
pub(crate) fn groups_column(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".to_owned())
}

/// A token from its columns: id, name, role, groups, description, created and
/// expiry (microseconds).
pub(crate) fn token_from_columns(
    id: String,
    name: String,
    role: &str,
    groups: &str,
    description: String,
    created_at_us: i64,
    expires_at_us: Option<i64>,
) -> StoreResult<ApiToken> {
    let corrupt = |reason: String| StoreError::CorruptRecord {
        key: format!("api_tokens {id}"),
        reason,
    };
    let role = match role {
        "" => None,
        text => Some(
            text.parse::<TokenRole>()
                .map_err(|e| corrupt(e.to_string()))?,
        ),
    };
    let groups: Vec<String> =
        serde_json::from_str(groups).map_err(|e| corrupt(format!("groups: {e}")))?;
    let created_at = from_micros(created_at_us, || format!("api_tokens {id}"))?;
    let expires_at = expires_at_us
        .map(|us| from_micros(us, || format!("api_tokens {id}")))
        .transpose()?;
    Ok(ApiToken {
        id,
        name,
        role,
        groups,
        description,
        created_at,
        expires_at,
    })
}

/// The columns every token query selects, in [`token_from_columns`]' order.
pub(crate) const TOKEN_COLUMNS: &str =
    "id, name, role, groups, description, created_at_us, expires_at_us";

/// Every how many object writes a store compacts its change log automatically:
/// often enough that the log stays within twice the retention.
pub(crate) fn compaction_interval(event_retention: u64) -> u64 {
    event_retention.clamp(1, 1_000)
}

/// The current time at the precision timestamps are stored with (microseconds).
pub(crate) fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Microseconds since the Unix epoch, the column form of timestamps.
pub(crate) fn to_micros(t: OffsetDateTime) -> i64 {
    let micros = t.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn from_micros(
    micros: i64,
    key: impl FnOnce() -> String,
) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(|e| {
        StoreError::CorruptRecord {
            key: key(),
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_roles_round_trip_through_strings() {
        for kind in ResourceKind::ALL {
            assert_eq!(kind.as_str().parse::<ResourceKind>(), Ok(kind));
        }
        assert!("Pod".parse::<ResourceKind>().is_err());
        for role in [TokenRole::Admin, TokenRole::Operator, TokenRole::Viewer] {
            assert_eq!(role.as_str().parse::<TokenRole>(), Ok(role));
        }
        assert!("root".parse::<TokenRole>().is_err());
    }

    #[test]
    fn token_hash_is_sha256_of_the_secret() {
        let hash = TokenHash::of("abc");
        assert_eq!(
            format!("{hash:?}"),
            "TokenHash(ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad)"
        );
    }

    #[test]
    fn stored_bodies_read_as_typed_resources() {
        let mut object = StoredObject {
            kind: ResourceKind::EdgeDevice,
            namespace: "ns".into(),
            name: "d1".into(),
            uid: "u".into(),
            resource_version: 3,
            generation: 1,
            labels: BTreeMap::new(),
            creation_timestamp: OffsetDateTime::UNIX_EPOCH,
            deletion_timestamp: None,
            body: serde_json::json!({
                "apiVersion": "management.project-flotta.io/v1alpha1",
                "kind": "EdgeDevice",
                "metadata": {"name": "d1", "namespace": "ns"},
                "spec": {},
            }),
        };
        let device: flotta_core::model::EdgeDevice = object.to_resource().expect("an EdgeDevice");
        assert_eq!(device.metadata.name.as_deref(), Some("d1"));
        object.body = serde_json::json!({"metadata": "not an object"});
        let error = object
            .to_resource::<flotta_core::model::EdgeDevice>()
            .expect_err("a damaged body");
        assert!(
            matches!(&error, StoreError::CorruptRecord { key, .. } if key == "EdgeDevice ns/d1"),
            "{error:?}"
        );
    }

    #[test]
    fn micros_round_trip() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000)
            .expect("valid time");
        assert_eq!(from_micros(to_micros(t), String::new).ok(), Some(t));
    }
}
