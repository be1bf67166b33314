//! The config-file overlay on disk: what core's [`FileWrite`] decides, written
//! atomically, and the record of what the agent created or replaced.
//!
//! A write goes to a temporary file beside the target (same directory, so the same
//! file system), which gets its mode and owner and is fsynced, then renamed over the
//! target, and the directory is fsynced: a crash (kill -9, power loss) at any moment
//! leaves the old file or the new one, never a part. The record
//! ([`WrittenFiles`]) is saved before the first write to a path, saying whether the
//! agent created the file or replaced one that was there (whose content and mode it
//! keeps, to restore on removal). Removing an entry deletes a file the agent created,
//! restores one it replaced, and leaves alone a file it never wrote.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flotta_core::reconcile::FileWrite;
use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateItem};

/// How a path the agent wrote was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "origin", rename_all = "camelCase")]
pub enum FileOrigin {
    /// No file was there: removing the entry deletes it.
    Created,
    /// A file was there: removing the entry puts it back.
    Replaced {
        /// Its content, base64.
        content: String,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
    },
}

/// Paths the agent wrote, and how it found them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WrittenFiles(pub BTreeMap<String, FileOrigin>);

impl WrittenFiles {
    /// Encodes for [`StateStore::save`](crate::state::StateStore::save).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes what [`encode`](Self::encode) wrote.
    pub fn decode(item: StateItem, bytes: &[u8]) -> Result<Self, StateError> {
        crate::state::decode_json(bytes, item, "not a record of written files")
    }
}

/// Why a file could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("file {path}: {what}")]
pub struct FileIoError {
    /// The file.
    pub path: String,
    /// What was being done.
    pub what: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

fn io_error(path: &Path, what: &str) -> impl FnOnce(std::io::Error) -> FileIoError {
    let path = path.display().to_string();
    let what = what.to_owned();
    move |source| FileIoError { path, what, source }
}

/// Refuses `path` when a directory between its root (one of `roots`) and the file
/// is a symbolic link: a link planted on the device must not carry a write out of
/// the allowed roots. The root itself is the operator's choice and may be a link.
pub fn check_no_links(path: &Path, roots: &[String]) -> Result<(), FileIoError> {
    let Some(root) = roots
        .iter()
        .map(Path::new)
        .find(|root| path.starts_with(root))
    else {
        return Ok(());
    };
    let mut dir = path.parent();
    while let Some(current) = dir {
        if current == root || !current.starts_with(root) {
            break;
        }
        match std::fs::symlink_metadata(current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FileIoError {
                    path: path.display().to_string(),
                    what: format!("{} is a symbolic link", current.display()),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
                });
            }
            _ => {}
        }
        dir = current.parent();
    }
    Ok(())
}

/// How the agent finds `path` before writing it the first time (`None`: nothing
/// there).
pub fn origin_of(path: &Path) -> Result<FileOrigin, FileIoError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let content = std::fs::read(path).map_err(io_error(path, "cannot read"))?;
            Ok(FileOrigin::Replaced {
                content: STANDARD.encode(content),
                mode: meta.permissions().mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileOrigin::Created),
        Err(e) => Err(io_error(path, "cannot inspect")(e)),
    }
}

/// A numeric id, or the id of the name in `file` (`/etc/passwd` or `/etc/group`:
/// `name:x:ID:...`).
fn lookup_id(name: &str, file: &str) -> Option<u32> {
    if let Ok(id) = name.parse() {
        return Some(id);
    }
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.flotta-tmp"))
}

fn sync_dir(dir: &Path) -> Result<(), FileIoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "cannot sync the directory"))
}

/// Writes `bytes` to `path` atomically with `mode`, owned by `uid`/`gid` when given.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), FileIoError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io_error(dir, "cannot create the directory"))?;
    let temp = temp_path(path);
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_error(&temp, "cannot create"))?;
        out.write_all(bytes)
            .map_err(io_error(&temp, "cannot write"))?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(&out, uid, gid)
                .map_err(io_error(&temp, "cannot change the owner"))?;
        }
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_error(&temp, "cannot set the mode"))?;
        out.sync_all().map_err(io_error(&temp, "cannot sync"))?;
        std::fs::rename(&temp, path).map_err(io_error(path, "cannot rename into place"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

/// Writes a decided file: its owner names resolved on this device.
pub fn write_file(file: &FileWrite) -> Result<(), FileIoError> {
    let path = Path::new(&file.path);
    let unknown = |what: &str, name: &str| FileIoError {
        path: file.path.clone(),
        what: format!("no {what} {name:?} on this device"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    let uid = match &file.user {
        Some(user) => Some(lookup_id(user, "/etc/passwd").ok_or_else(|| unknown("user", user))?),
        None => None,
    };
    let gid = match &file.group {
        Some(group) => Some(lookup_id(group, "/etc/group").ok_or_else(|| unknown("group", group))?),
        None => None,
    };
    write_atomic(path, &file.content, file.mode, uid, gid)
}

/// Undoes the agent's writes to `path` as `origin` says: deletes a file it created,
/// restores one it replaced.
pub fn undo(path: &Path, origin: &FileOrigin) -> Result<(), FileIoError> {
    match origin {
        FileOrigin::Created => match std::fs::remove_file(path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("/"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(path, "cannot remove")(e)),
        },
        FileOrigin::Replaced {
            content,
            mode,
            uid,
            gid,
        } => {
            let bytes = STANDARD.decode(content).map_err(|_| FileIoError {
                path: path.display().to_string(),
                what: "the recorded original is not base64".into(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            })?;
            write_atomic(path, &bytes, *mode, Some(*uid), Some(*gid))
        }
    }
}

/// Temporary files a crash left beside `paths` (each path's own temporary name):
/// removed, as they were never renamed into place.
pub fn remove_leftovers<'a>(paths: impl IntoIterator<Item = &'a str>) {
    for path in paths {
        let _ = std::fs::remove_file(temp_path(Path::new(path)));
    }
}

/// Checks that the file system holding `path` has `needed` bytes available to the
/// agent; the error gives both numbers.
pub fn check_free_space(path: &Path, needed: u64) -> Result<(), String> {
    let stat = rustix::fs::statvfs(path)
        .map_err(|e| format!("cannot read the free space of {}: {e}", path.display()))?;
    let available = stat.f_bavail.saturating_mul(stat.f_frsize);
    if available < needed {
        return Err(format!(
            "not enough disk space on {}: {} MiB available, {} MiB required",
            path.display(),
            available / (1024 * 1024),
            needed.div_ceil(1024 * 1024)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_with_mode_and_undo_restores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/app.conf");
        assert_eq!(origin_of(&path).expect("origin"), FileOrigin::Created);
        write_atomic(&path, b"one", 0o640, None, None).expect("write");
        let meta = std::fs::metadata(&path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        assert!(!temp_path(&path).exists(), "no temporary file left");

        let origin = origin_of(&path).expect("origin");
        assert!(matches!(origin, FileOrigin::Replaced { mode: 0o640, .. }));
        write_atomic(&path, b"two", 0o600, None, None).expect("overwrite");
        undo(&path, &origin).expect("restore");
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        undo(&path, &FileOrigin::Created).expect("remove");
        assert!(!path.exists());
        undo(&path, &FileOrigin::Created).expect("removing twice is fine");
    }

    #[test]
    fn a_linked_directory_below_the_root_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&root).expect("root");
        std::fs::create_dir_all(&elsewhere).expect("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, root.join("link")).expect("link");
        let roots = vec![root.display().to_string()];
        let error = check_no_links(&root.join("link/x.conf"), &roots).expect_err("link");
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(check_no_links(&root.join("plain/x.conf"), &roots).is_ok());
    }

    #[test]
    fn owners_resolve_by_name_or_number() {
        assert_eq!(lookup_id("0", "/nonexistent"), Some(0));
        assert_eq!(lookup_id("root", "/etc/passwd"), Some(0));
        assert_eq!(lookup_id("no-such-user-xyz", "/etc/passwd"), None);
    }
}
