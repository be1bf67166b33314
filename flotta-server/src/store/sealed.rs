//! Secrets encrypted at rest: a [`Store`] wrapper that seals the `data` of every
//! `Secret` with AES-256-GCM before the backend sees it, and opens it again on the
//! way out (get, list, watch, write results).
//!
//! What reaches the database (rows and change log alike) is the secret's metadata,
//! its `type`, and [`SEALED_FIELD`]: `{"key": KEY_ID, "nonce": B64, "ciphertext": B64}`
//! where the plaintext is the JSON of the `data` map and the additional data binds
//! it to the secret's namespace and name, so a sealed value copied onto another
//! secret does not open. A database dump alone reveals no secret value.
//!
//! Keys are 32 random bytes in a file (hex). The server seals with its current key
//! and opens with any key it was given: rotation is to start with a new
//! `--secret-key-file` and the old one as `--previous-secret-key-file`; start-up
//! re-seals every secret under the new key ([`SealedStore::reseal_all`]), after which
//! the old file may be deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{
    ApiToken, Deletion, IssuedToken, LastSeen, ListOptions, ObjectList, ResourceKind,
    RevokedCertificate, Store, StoreError, StoreResult, StoredObject, TokenHash, TokenSpec,
    WatchStream,
};

/// Field of a stored secret body holding its sealed data.
pub const SEALED_FIELD: &str = "flottaSealedData";
/// File name of the key the server creates under its data directory.
pub const DEFAULT_KEY_FILE: &str = "secret-key";
const KEY_LEN: usize = 32;

/// Why a sealing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealingKeyError {
    /// The key file could not be read or written.
    #[error("secret key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold 64 hex digits.
    #[error("secret key file {} does not hold a key (64 hex digits expected)", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// No randomness for a new key.
    #[error("cannot generate a secret key: {0}")]
    Random(String),
}

/// One AES-256-GCM key and its id (the first 8 bytes of its SHA-256, hex).
struct SealingKey {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey").field("id", &self.id).finish()
    }
}

impl SealingKey {
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Option<Self> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let key = UnboundKey::new(&AES_256_GCM, bytes).ok()?;
        Some(Self {
            id,
            key: LessSafeKey::new(key),
        })
    }

    fn read(path: &Path) -> Result<Self, SealingKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| SealingKeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let malformed = || SealingKeyError::Malformed {
            path: path.to_owned(),
        };
        let text = text.trim();
        if text.len() != KEY_LEN * 2 || !text.is_ascii() {
            return Err(malformed());
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).map_err(|_| malformed())?;
        }
        Self::from_bytes(&bytes).ok_or_else(malformed)
    }
}

/// The keys secrets are sealed with: the current one, and earlier ones still
/// accepted for opening.
#[derive(Debug)]
pub struct SealingKeys {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl SealingKeys {
    /// Reads the key at `path`, creating it (mode 0600, 32 random bytes) when the file
    /// does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SealingKeyError> {
        if !path.exists() {
            let mut bytes = [0u8; KEY_LEN];
            getrandom::fill(&mut bytes).map_err(|e| SealingKeyError::Random(e.to_string()))?;
            let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            crate::fs::write_private_file(path, format!("{text}\n").as_bytes()).map_err(
                |source| SealingKeyError::Io {
                    path: path.to_owned(),
                    source,
                },
            )?;
        }
        Self::load(path, &[])
    }

    /// Reads the current key at `current` and earlier keys at `previous`.
    pub fn load(current: &Path, previous: &[PathBuf]) -> Result<Self, SealingKeyError> {
        Ok(Self {
            current: SealingKey::read(current)?,
            previous: previous
                .iter()
                .map(|p| SealingKey::read(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Keys from raw bytes (for embedding and tests); `None` only if the crypto
    /// library refuses the key.
    pub fn from_bytes(current: [u8; 32]) -> Option<Self> {
        Some(Self {
            current: SealingKey::from_bytes(&current)?,
            previous: Vec::new(),
        })
    }

    /// Id of the current key, as stored beside each sealed value.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn find(&self, id: &str) -> Option<&SealingKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }
}

fn aad(namespace: &str, name: &str) -> Vec<u8> {
    format!("Secret/{namespace}/{name}").into_bytes()
}

/// Replaces `data` and `stringData` of a secret body by the sealed form.
fn seal(keys: &SealingKeys, namespace: &str, name: &str, body: &mut Value) -> StoreResult<()> {
    let invalid = |reason: &str| StoreError::InvalidObject {
        kind: ResourceKind::Secret,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let object = body
        .as_object_mut()
        .ok_or_else(|| invalid("the body is not a JSON object"))?;
    let mut data = match object.remove("data") {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(invalid("data is not an object")),
    };
    // Kubernetes folds stringData into data on write; the API does it before here,
    // this keeps a direct store write from storing it in the clear.
    if let Some(Value::Object(strings)) = object.remove("stringData") {
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, Value::String(STANDARD.encode(text)));
        }
    }
    object.remove(SEALED_FIELD);
    let mut in_out =
        serde_json::to_vec(&Value::Object(data)).map_err(|_| invalid("data cannot be encoded"))?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| StoreError::backend("seal", true, e.to_string()))?;
    keys.current
        .key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(namespace, name)),
            &mut in_out,
        )
        .map_err(|_| StoreError::backend("seal", false, "AES-256-GCM sealing failed"))?;
    object.insert(
        SEALED_FIELD.into(),
        json!({
            "key": keys.current.id,
            "nonce": STANDARD.encode(nonce),
            "ciphertext": STANDARD.encode(in_out),
        }),
    );
    Ok(())
}

/// Whether a stored secret body is sealed with the current key.
fn sealed_with_current(keys: &SealingKeys, body: &Value) -> bool {
    body.pointer(&format!("/{SEALED_FIELD}/key"))
        .and_then(Value::as_str)
        == Some(keys.current.id.as_str())
}

/// Restores `data` from the sealed form; a body without one is left as it is.
fn open(keys: &SealingKeys, object: &mut StoredObject) -> StoreResult<()> {
    let corrupt = |reason: &str| StoreError::CorruptRecord {
        key: format!("Secret {}/{}", object.namespace, object.name),
        reason: reason.to_owned(),
    };
    let Some(map) = object.body.as_object_mut() else {
        return Ok(());
    };
    let Some(sealed) = map.remove(SEALED_FIELD) else {
        return Ok(());
    };
    let field = |name: &str| sealed.get(name).and_then(Value::as_str);
    let key_id = field("key").ok_or_else(|| corrupt("sealed data has no key id"))?;
    let key = keys.find(key_id).ok_or_else(|| {
        corrupt(&format!(
            "sealed with key {key_id}, which this server was not given (see --previous-secret-key-file)"
        ))
    })?;
    let nonce: [u8; NONCE_LEN] = field("nonce")
        .and_then(|n| STANDARD.decode(n).ok())
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| corrupt("sealed data has no valid nonce"))?;
    let mut in_out = field("ciphertext")
        .and_then(|c| STANDARD.decode(c).ok())
        .ok_or_else(|| corrupt("sealed data has no valid ciphertext"))?;
    let plain = key
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(&object.namespace, &object.name)),
            &mut in_out,
        )
        .map_err(|_| corrupt("sealed data does not open (wrong key or tampered)"))?;
    let data: Value =
        serde_json::from_slice(plain).map_err(|_| corrupt("sealed data is not a JSON map"))?;
    if data.as_object().is_some_and(|d| !d.is_empty()) {
        // Kubernetes order: data after type and metadata.
        map.insert("data".into(), data);
    }
    Ok(())
}

/// A [`Store`] that seals secrets before `inner` stores them (see the module docs).
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Arc<SealingKeys>,
}

impl SealedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, keys: SealingKeys) -> Self {
        Self {
            inner,
            keys: Arc::new(keys),
        }
    }

    /// Re-seals under the current key every secret sealed with another key (or not
    /// sealed at all); returns how many were rewritten.
    pub async fn reseal_all(&self) -> StoreResult<usize> {
        let mut rewritten = 0;
        let mut options = ListOptions {
            limit: Some(500),
            continue_token: None,
        };
        loop {
            let page = self
                .inner
                .list(ResourceKind::Secret, None, &options)
                .await?;
            for stored in page.items {
                if sealed_with_current(&self.keys, &stored.body) {
                    continue;
                }
                let mut opened = stored.clone();
                open(&self.keys, &mut opened)?;
                seal(
                    &self.keys,
                    &stored.namespace,
                    &stored.name,
                    &mut opened.body,
                )?;
                match self
                    .inner
                    .update(
                        ResourceKind::Secret,
                        &stored.namespace,
                        &stored.name,
                        Some(stored.resource_version),
                        opened.body,
                    )
                    .await
                {
                    // Written meanwhile, hence under the current key.
                    Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                    Err(error) => return Err(error),
                }
                rewritten += 1;
            }
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => return Ok(rewritten),
            }
        }
    }

    fn opened(&self, mut object: StoredObject) -> StoreResult<StoredObject> {
        if object.kind == ResourceKind::Secret {
            open(&self.keys, &mut object)?;
        }
        Ok(object)
    }

    fn sealed(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        mut body: Value,
    ) -> StoreResult<Value> {
        if kind == ResourceKind::Secret {
            seal(&self.keys, namespace, name, &mut body)?;
        }
        Ok(body)
    }
}

#[async_trait]
impl Store for SealedStore {
    async fn get(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> StoreResult<Option<StoredObject>> {
        self.inner
            .get(kind, namespace, name)
            .await?
            .map(|o| self.opened(o))
            .transpose()
    }

    fn cached_resource_version(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Option<u64> {
        self.inner.cached_resource_version(kind, namespace, name)
    }

    async fn list(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> StoreResult<ObjectList> {
        let mut list = self.inner.list(kind, namespace, options).await?;
        if kind == ResourceKind::Secret {
            list.items = list
                .items
                .into_iter()
                .map(|o| self.opened(o))
                .collect::<StoreResult<_>>()?;
        }
        Ok(list)
    }

    async fn create(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        body: Value,
    ) -> StoreResult<StoredObject> {
        let body = self.sealed(kind, namespace, name, body)?;
        self.opened(self.inner.create(kind, namespace, name, body).await?)
    }

    async fn update(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
        body: Value,
    ) -> StoreResult<StoredObject> {
        let body = self.sealed(kind, namespace, name, body)?;
        let updated = self
            .inner
            .update(kind, namespace, name, expected_resource_version, body)
            .await?;
        self.opened(updated)
    }

    async fn update_status(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
        status: Value,
    ) -> StoreResult<StoredObject> {
        let updated = self
            .inner
            .update_status(kind, namespace, name, expected_resource_version, status)
            .await?;
        self.opened(updated)
    }

    async fn delete(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        expected_resource_version: Option<u64>,
    ) -> StoreResult<Deletion> {
        Ok(
            match self
                .inner
                .delete(kind, namespace, name, expected_resource_version)
                .await?
            {
                Deletion::Removed(o) => Deletion::Removed(self.opened(o)?),
                Deletion::Pending(o) => Deletion::Pending(self.opened(o)?),
            },
        )
    }

    /// Events never carry secret data: passed through as they are.
    async fn record_event(
        &self,
        occurrence: &flotta_core::events::EventOccurrence,
        times: u32,
    ) -> StoreResult<StoredObject> {
        self.inner.record_event(occurrence, times).await
    }

    async fn current_resource_version(&self) -> StoreResult<u64> {
        self.inner.current_resource_version().await
    }

    async fn watch(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        from_resource_version: u64,
    ) -> StoreResult<WatchStream> {
        let stream = self
            .inner
            .watch(kind, namespace, from_resource_version)
            .await?;
        if kind != ResourceKind::Secret {
            return Ok(stream);
        }
        let keys = Arc::clone(&self.keys);
        Ok(stream
            .map(move |event| {
                let mut event = event?;
                open(&keys, &mut event.object)?;
                Ok(event)
            })
            .boxed())
    }

    async fn compact(&self, through_resource_version: u64) -> StoreResult<()> {
        self.inner.compact(through_resource_version).await
    }

    async fn record_last_seen(&self, batch: &[LastSeen]) -> StoreResult<()> {
        self.inner.record_last_seen(batch).await
    }

    async fn record_last_seen_versions(
        &self,
        batch: &[LastSeen],
    ) -> StoreResult<Option<Vec<Option<u64>>>> {
        self.inner.record_last_seen_versions(batch).await
    }

    fn last_seen_tells_versions(&self) -> bool {
        self.inner.last_seen_tells_versions()
    }

    async fn last_seen(
        &self,
        namespace: &str,
        device: &str,
    ) -> StoreResult<Option<OffsetDateTime>> {
        self.inner.last_seen(namespace, device).await
    }

    async fn last_seen_all(&self, namespace: Option<&str>) -> StoreResult<Vec<LastSeen>> {
        self.inner.last_seen_all(namespace).await
    }

    async fn revoke_certificate(&self, revoked: &RevokedCertificate) -> StoreResult<()> {
        self.inner.revoke_certificate(revoked).await
    }

    async fn revoked_certificates(&self) -> StoreResult<Vec<RevokedCertificate>> {
        self.inner.revoked_certificates().await
    }

    async fn issue_token(&self, spec: &TokenSpec) -> StoreResult<IssuedToken> {
        self.inner.issue_token(spec).await
    }

    async fn find_token(&self, hash: &TokenHash) -> StoreResult<Option<ApiToken>> {
        self.inner.find_token(hash).await
    }

    async fn list_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        self.inner.list_tokens().await
    }

    async fn delete_token(&self, id: &str) -> StoreResult<bool> {
        self.inner.delete_token(id).await
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        self.inner.setting(key).await
    }

    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        self.inner.put_setting(key, value).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool> {
        self.inner.acquire_lease(name, holder, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        self.inner.release_lease(name, holder).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn secret_body(value: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "db", "namespace": "ns"},
               "data": {"password": STANDARD.encode(value)}})
    }

    #[tokio::test]
    async fn the_backend_holds_ciphertext_and_callers_see_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("db")).expect("sqlite"));
        let store = SealedStore::new(
            inner.clone(),
            SealingKeys::from_bytes([7; 32]).expect("key"),
        );
        let created = store
            .create(ResourceKind::Secret, "ns", "db", secret_body("hunter2"))
            .await
            .expect("created");
        assert_eq!(created.body["data"]["password"], STANDARD.encode("hunter2"));
        let raw = inner
            .get(ResourceKind::Secret, "ns", "db")
            .await
            .expect("read")
            .expect("stored");
        let text = raw.body.to_string();
        assert!(!text.contains(&STANDARD.encode("hunter2")), "{text}");
        assert!(raw.body.get("data").is_none());
        assert_eq!(raw.body[SEALED_FIELD]["key"], store.keys.current_id());
        let read = store
            .get(ResourceKind::Secret, "ns", "db")
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(read.body["data"]["password"], STANDARD.encode("hunter2"));

        // Sealed data moved onto another secret does not open.
        let mut moved = raw.body.clone();
        moved["metadata"]["name"] = json!("other");
        inner
            .create(ResourceKind::Secret, "ns", "other", moved)
            .await
            .expect("raw write");
        let error = store
            .get(ResourceKind::Secret, "ns", "other")
            .await
            .expect_err("bound to its name");
        assert!(
            matches!(&error, StoreError::CorruptRecord { reason, .. } if reason.contains("does not open")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn rotation_reseals_under_the_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old_path = dir.path().join("old");
        let new_path = dir.path().join("new");
        let old = SealingKeys::load_or_create(&old_path).expect("old key");
        let old_id = old.current_id().to_owned();
        let inner: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("db")).expect("sqlite"));
        SealedStore::new(inner.clone(), old)
            .create(ResourceKind::Secret, "ns", "db", secret_body("s3cr3t"))
            .await
            .expect("created");
        SealingKeys::load_or_create(&new_path).expect("new key");
        let without_old = SealedStore::new(
            inner.clone(),
            SealingKeys::load(&new_path, &[]).expect("keys"),
        );
        let error = without_old
            .get(ResourceKind::Secret, "ns", "db")
            .await
            .expect_err("old key missing");
        assert!(error.to_string().contains(&old_id), "{error}");

        let rotating = SealedStore::new(
            inner.clone(),
            SealingKeys::load(&new_path, &[old_path]).expect("keys"),
        );
        assert_eq!(rotating.reseal_all().await.expect("resealed"), 1);
        assert_eq!(rotating.reseal_all().await.expect("nothing left"), 0);
        let read = without_old
            .get(ResourceKind::Secret, "ns", "db")
            .await
            .expect("opens with the new key alone")
            .expect("stored");
        assert_eq!(read.body["data"]["password"], STANDARD.encode("s3cr3t"));
    }

    #[test]
    fn malformed_key_files_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "not hex").expect("write");
        let error = SealingKeys::load(&path, &[]).expect_err("malformed");
        assert!(
            matches!(error, SealingKeyError::Malformed { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("64 hex digits"));
    }
}
