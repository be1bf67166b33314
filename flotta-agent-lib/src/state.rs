//! What the agent keeps across restarts: the [`StateStore`] trait and the default
//! [`FileStateStore`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use flotta_core::wire::DeviceConfigurationMessage;
use serde::{Deserialize, Serialize};

/// One piece of persisted agent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateItem {
    /// The device's private key, PEM (never leaves the device).
    DeviceKey,
    /// The device certificate, PEM.
    DeviceCertificate,
    /// The configuration last received from the server ([`PersistedConfig`]).
    DesiredConfig,
    /// The configuration the device runs ([`PersistedConfig`]).
    CurrentConfig,
    /// The last configuration applied completely ([`PersistedConfig`]).
    LastGoodConfig,
    /// The version whose apply failed, so it is not tried again (text).
    FailedVersion,
    /// A renewed key and certificate ([`PersistedIdentity`]) not yet copied to
    /// [`DeviceKey`](Self::DeviceKey) and [`DeviceCertificate`](Self::DeviceCertificate):
    /// written in one atomic save, it is the point where a renewal takes effect.
    RenewedIdentity,
    /// Which definition the agent applied for each workload it started
    /// ([`AppliedWorkloads`]): the runtimes only run workloads, the agent remembers
    /// what it asked for.
    AppliedWorkloads,
    /// The files of the `spec.files` overlay the agent wrote, and whether it created
    /// or replaced each ([`WrittenFiles`](crate::files::WrittenFiles)).
    WrittenFiles,
    /// The CA certificates (PEM) the server handed out with the device's latest
    /// certificate (`caBundle`), trusted for the server instead of the configured
    /// ones: how a device follows a CA rotation.
    ServerTrust,
    /// Events not yet delivered to the server
    /// ([`PersistedEventQueue`](crate::offline::PersistedEventQueue)), so a restart
    /// or power loss loses nothing queued.
    EventQueue,
    /// The OS update under way or last done ([`OsUpdateRecord`](crate::os::OsUpdateRecord)):
    /// what lets the agent carry it on across the reboot.
    OsUpdate,
    /// The playbook executions run to their end (a JSON object, name to the
    /// revision run, the final state and its message): none is run twice.
    PlaybookExecutions,
}

impl StateItem {
    /// Every item.
    pub const ALL: [StateItem; 13] = [
        Self::DeviceKey,
        Self::DeviceCertificate,
        Self::DesiredConfig,
        Self::CurrentConfig,
        Self::LastGoodConfig,
        Self::FailedVersion,
        Self::RenewedIdentity,
        Self::AppliedWorkloads,
        Self::WrittenFiles,
        Self::ServerTrust,
        Self::EventQueue,
        Self::OsUpdate,
        Self::PlaybookExecutions,
    ];

    /// The file name [`FileStateStore`] uses.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::DeviceKey => "device.key",
            Self::DeviceCertificate => "device.crt",
            Self::DesiredConfig => "desired.json",
            Self::CurrentConfig => "current.json",
            Self::LastGoodConfig => "last-good.json",
            Self::FailedVersion => "failed-version",
            Self::RenewedIdentity => "renewed-identity.json",
            Self::AppliedWorkloads => "applied-workloads.json",
            Self::WrittenFiles => "written-files.json",
            Self::ServerTrust => "server-ca.pem",
            Self::EventQueue => "event-queue.json",
            Self::OsUpdate => "os-update.json",
            Self::PlaybookExecutions => "playbook-executions.json",
        }
    }
}

impl fmt::Display for StateItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing a file failed.
    #[error("could not {operation} {path}")]
    Io {
        /// `read`, `write`, `create`, `sync`, `rename` or `remove`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A state item exists but its content is unusable.
    #[error("state item {item} is corrupt: {reason}")]
    Corrupt {
        /// The item.
        item: StateItem,
        /// What is wrong.
        reason: String,
        /// The decoder's error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The blocking task doing file IO did not finish.
    #[error("the state IO task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Persists the agent's state.
///
/// Contract: [`save`](StateStore::save) is atomic and durable: once it returns, a
/// crash or power loss leaves either the new content or (if it returned an error)
/// the old one, never a mix; [`load`](StateStore::load) returns `None` for an item
/// never saved or removed. Secrets (the key) must be readable by the agent only.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The content of `item`, or `None` when it was never saved.
    async fn load(&self, item: StateItem) -> Result<Option<Vec<u8>>, StateError>;
    /// Replaces the content of `item`, atomically and durably.
    async fn save(&self, item: StateItem, content: &[u8]) -> Result<(), StateError>;
    /// Removes `item`; removing an absent item succeeds.
    async fn remove(&self, item: StateItem) -> Result<(), StateError>;
}

/// Reads a JSON state item; a corrupt one is [`StateError::Corrupt`] naming the
/// item, what it should have been (`what`, e.g. "not a record of written files")
/// and where the JSON broke.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    item: StateItem,
    what: &str,
) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        item,
        reason: format!("{what} (line {}, column {}: {e})", e.line(), e.column()),
        source: Some(Box::new(e)),
    })
}

/// A configuration as persisted: the server's version (ETag) and the message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PersistedConfig {
    /// The version the server gave this configuration (its ETag).
    pub version: String,
    /// The configuration, in Flotta's wire shape.
    pub message: DeviceConfigurationMessage,
}

impl PersistedConfig {
    /// Encodes for [`StateStore::save`].
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decodes what [`encode`](Self::encode) wrote; `item` names the source in errors.
    pub fn decode(item: StateItem, bytes: &[u8]) -> Result<Self, StateError> {
        crate::state::decode_json(bytes, item, "not a persisted configuration")
    }
}

/// The fingerprint of the definition the agent applied, by workload name. An empty
/// fingerprint marks a workload whose apply was started and not recorded as done:
/// planning applies it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AppliedWorkloads(pub BTreeMap<String, String>);

impl AppliedWorkloads {
    /// Encodes for [`StateStore::save`].
    pub fn encode(&self) -> Vec<u8> {
        // Strings only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes what [`encode`](Self::encode) wrote; `item` names the source in errors.
    pub fn decode(item: StateItem, bytes: &[u8]) -> Result<Self, StateError> {
        crate::state::decode_json(bytes, item, "not a record of applied workloads")
    }
}

/// A device key and the certificate issued for it, saved together so that neither
/// is ever in force without the other.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedIdentity {
    /// The private key, PEM.
    pub key: String,
    /// The certificate, PEM.
    pub certificate: String,
}

impl fmt::Debug for PersistedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("PersistedIdentity")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

impl PersistedIdentity {
    /// Encodes for [`StateStore::save`].
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes what [`encode`](Self::encode) wrote; `item` names the source in errors.
    pub fn decode(item: StateItem, bytes: &[u8]) -> Result<Self, StateError> {
        crate::state::decode_json(bytes, item, "not a persisted key and certificate")
    }
}

/// Loads a [`PersistedConfig`] item.
pub async fn load_config(
    store: &dyn StateStore,
    item: StateItem,
) -> Result<Option<PersistedConfig>, StateError> {
    store
        .load(item)
        .await?
        .map(|bytes| PersistedConfig::decode(item, &bytes))
        .transpose()
}

/// Loads a text item (PEM, version), refusing content that is not UTF-8.
pub async fn load_text(
    store: &dyn StateStore,
    item: StateItem,
) -> Result<Option<String>, StateError> {
    store
        .load(item)
        .await?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|e| StateError::Corrupt {
                item,
                reason: format!("not UTF-8 text at byte {}", e.utf8_error().valid_up_to()),
                source: Some(Box::new(e)),
            })
        })
        .transpose()
}

/// Keeps each [`StateItem`] in its own file of a state directory. Writes go to a
/// temporary file that is synced, renamed over the item and followed by a sync of
/// the directory; files are created with mode 0600 and the directory with 0700.
#[derive(Debug, Clone)]
pub struct FileStateStore {
    dir: PathBuf,
}

impl FileStateStore {
    /// A store in `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `item`.
    pub fn path_of(&self, item: StateItem) -> PathBuf {
        self.dir.join(item.file_name())
    }

    fn temp_path_of(&self, item: StateItem) -> PathBuf {
        self.dir.join(format!(".{}.tmp", item.file_name()))
    }

    fn save_blocking(&self, item: StateItem, content: &[u8]) -> Result<(), StateError> {
        let io = |operation, path: &Path| {
            let path = path.to_owned();
            move |source: std::io::Error| StateError::Io {
                operation,
                path,
                source,
            }
        };
        create_private_dir(&self.dir).map_err(io("create", &self.dir))?;
        let temp = self.temp_path_of(item);
        let target = self.path_of(item);
        let written = open_private(&temp)
            .map_err(io("create", &temp))
            .and_then(|mut file| {
                file.write_all(content).map_err(io("write", &temp))?;
                file.sync_all().map_err(io("sync", &temp))
            })
            .and_then(|()| std::fs::rename(&temp, &target).map_err(io("rename", &temp)));
        if let Err(error) = written {
            // The item keeps its old content; a partial temporary file would only
            // hold space a full disk needs back.
            let _ = std::fs::remove_file(&temp);
            return Err(error);
        }
        // The rename is durable only once the directory entry is on disk.
        std::fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("sync", &self.dir))?;
        Ok(())
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A temporary file left by a crash keeps its old mode: set it again.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[async_trait]
impl StateStore for FileStateStore {
    async fn load(&self, item: StateItem) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.path_of(item);
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                operation: "read",
                path,
                source,
            }),
        })
        .await
        .map_err(StateError::Task)?
    }

    async fn save(&self, item: StateItem, content: &[u8]) -> Result<(), StateError> {
        let store = self.clone();
        let content = content.to_vec();
        tokio::task::spawn_blocking(move || store.save_blocking(item, &content))
            .await
            .map_err(StateError::Task)?
    }

    async fn remove(&self, item: StateItem) -> Result<(), StateError> {
        let path = self.path_of(item);
        tokio::task::spawn_blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                operation: "remove",
                path,
                source,
            }),
        })
        .await
        .map_err(StateError::Task)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_replaces_whole_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        let store = FileStateStore::new(dir.path().join("state"));
        assert_eq!(store.load(StateItem::DeviceKey).await.expect("load"), None);
        store
            .save(StateItem::DeviceKey, b"a much longer first content")
            .await
            .expect("save");
        store
            .save(StateItem::DeviceKey, b"short")
            .await
            .expect("save");
        assert_eq!(
            store
                .load(StateItem::DeviceKey)
                .await
                .expect("load")
                .as_deref(),
            Some(&b"short"[..])
        );
        let names: Vec<String> = std::fs::read_dir(store.dir())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["device.key".to_owned()]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn files_are_private_to_the_agent() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let store = FileStateStore::new(dir.path().join("state"));
        store.save(StateItem::DeviceKey, b"k").await.expect("save");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&store.path_of(StateItem::DeviceKey)), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
    }

    #[tokio::test]
    async fn a_temporary_file_left_by_a_crash_does_not_change_what_is_loaded() {
        let dir = tempfile::tempdir().expect("dir");
        let store = FileStateStore::new(dir.path());
        store
            .save(StateItem::CurrentConfig, b"old")
            .await
            .expect("save");
        // A crash between writing the temporary file and the rename.
        std::fs::write(store.temp_path_of(StateItem::CurrentConfig), b"half-writ").expect("write");
        assert_eq!(
            store
                .load(StateItem::CurrentConfig)
                .await
                .expect("load")
                .as_deref(),
            Some(&b"old"[..])
        );
        store
            .save(StateItem::CurrentConfig, b"new")
            .await
            .expect("save");
        assert_eq!(
            store
                .load(StateItem::CurrentConfig)
                .await
                .expect("load")
                .as_deref(),
            Some(&b"new"[..])
        );
        assert!(!store.temp_path_of(StateItem::CurrentConfig).exists());
    }

    #[tokio::test]
    async fn corrupt_files_are_reported_with_the_item() {
        let dir = tempfile::tempdir().expect("dir");
        let store = FileStateStore::new(dir.path());
        std::fs::write(store.path_of(StateItem::CurrentConfig), b"{\"version\": 3").expect("write");
        let error = load_config(&store, StateItem::CurrentConfig)
            .await
            .expect_err("corrupt");
        assert!(
            matches!(
                error,
                StateError::Corrupt {
                    item: StateItem::CurrentConfig,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("current.json"), "{error}");

        std::fs::write(store.path_of(StateItem::DeviceCertificate), [0xff, 0xfe]).expect("write");
        let error = load_text(&store, StateItem::DeviceCertificate)
            .await
            .expect_err("not text");
        assert!(matches!(
            error,
            StateError::Corrupt {
                item: StateItem::DeviceCertificate,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn configurations_round_trip_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().expect("dir");
        let store = FileStateStore::new(dir.path());
        let config = PersistedConfig {
            version: "v1".into(),
            message: DeviceConfigurationMessage {
                device_id: Some("d".into()),
                ..Default::default()
            },
        };
        store
            .save(StateItem::LastGoodConfig, &config.encode())
            .await
            .expect("save");
        assert_eq!(
            load_config(&store, StateItem::LastGoodConfig)
                .await
                .expect("load"),
            Some(config)
        );
        store
            .remove(StateItem::LastGoodConfig)
            .await
            .expect("remove");
        store
            .remove(StateItem::LastGoodConfig)
            .await
            .expect("remove again");
        assert_eq!(
            load_config(&store, StateItem::LastGoodConfig)
                .await
                .expect("load"),
            None
        );
    }
}
