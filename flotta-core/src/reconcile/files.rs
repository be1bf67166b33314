//! The config-file overlay (`spec.files`) as decisions: whether a path may be
//! written, and what exactly to write there (bytes, mode, owner). The agent carries
//! them out atomically and keeps the record of what it created.
//!
//! A path may be written only when it is absolute, names no `.` or `..` component,
//! and lies under one of the allowed roots (compared component by component, so
//! `/etc/flotta-other` is not under `/etc/flotta`).

use std::path::{Component, Path};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::model::FileEncoding;
use crate::wire;

/// Roots an agent may write files under when its configuration names none: its own
/// directories, never system ones.
pub const DEFAULT_FILE_ROOTS: &[&str] = &["/etc/flotta/files", "/var/lib/flotta/files"];

/// Mode of a file whose entry gives none.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// Why a file entry cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file {path}: {reason}")]
pub struct FileError {
    /// The entry's path, as given.
    pub path: String,
    /// What is wrong (never the content).
    pub reason: String,
}

/// A file to write, decided.
#[derive(Clone, PartialEq, Eq)]
pub struct FileWrite {
    /// Absolute path.
    pub path: String,
    /// The bytes.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Owner: user name or numeric id.
    pub user: Option<String>,
    /// Group: name or numeric id.
    pub group: Option<String>,
}

impl std::fmt::Debug for FileWrite {
    // Files may hold credentials: the content is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWrite")
            .field("path", &self.path)
            .field("bytes", &self.content.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .field("user", &self.user)
            .field("group", &self.group)
            .finish()
    }
}

/// Checks that `path` may be written under `roots` (see the module documentation).
pub fn check_path(path: &str, roots: &[String]) -> Result<(), FileError> {
    let fail = |reason: String| FileError {
        path: path.to_owned(),
        reason,
    };
    let candidate = Path::new(path);
    if !candidate.is_absolute() {
        return Err(fail("the path is not absolute".into()));
    }
    // Split by hand: `Path::components` drops inner `.` components.
    if path.split('/').any(|part| part == "." || part == "..")
        || candidate.components().any(|c| c == Component::ParentDir)
    {
        return Err(fail("the path has a '.' or '..' component".into()));
    }
    let under = roots.iter().any(|root| {
        let root = Path::new(root);
        root.is_absolute() && candidate != root && candidate.starts_with(root)
    });
    if !under {
        return Err(fail(format!(
            "outside the allowed roots ({})",
            roots.join(", ")
        )));
    }
    Ok(())
}

/// Decides what writing `file` means: its path checked against `roots`, its content
/// decoded, its mode and owner parsed.
pub fn file_write(file: &wire::FileInfo, roots: &[String]) -> Result<FileWrite, FileError> {
    check_path(&file.path, roots)?;
    let fail = |reason: &str| FileError {
        path: file.path.clone(),
        reason: reason.to_owned(),
    };
    let content = match file.encoding.unwrap_or_default() {
        FileEncoding::Plain => file.content.clone().into_bytes(),
        FileEncoding::Base64 => STANDARD
            .decode(file.content.trim())
            .map_err(|_| fail("the content is not valid base64"))?,
    };
    let mode = match file.mode.as_deref() {
        None => DEFAULT_FILE_MODE,
        Some(text) => {
            let digits = text.trim_start_matches("0o");
            u32::from_str_radix(digits, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| fail("the mode is not an octal permission such as 0644"))?
        }
    };
    let (user, group) = match file.owner.as_deref().filter(|o| !o.is_empty()) {
        None => (None, None),
        Some(owner) => match owner.split_once(':') {
            Some((user, group)) => (
                Some(user.to_owned()).filter(|u| !u.is_empty()),
                Some(group.to_owned()).filter(|g| !g.is_empty()),
            ),
            None => (Some(owner.to_owned()), None),
        },
    };
    Ok(FileWrite {
        path: file.path.clone(),
        content,
        mode,
        user,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<String> {
        vec!["/etc/app".into(), "/srv/data/".into()]
    }

    fn info(path: &str, content: &str) -> wire::FileInfo {
        wire::FileInfo {
            path: path.into(),
            content: content.into(),
            encoding: None,
            mode: None,
            owner: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn paths_must_lie_under_a_root() {
        for ok in ["/etc/app/a.conf", "/etc/app/sub/b", "/srv/data/x"] {
            assert_eq!(check_path(ok, &roots()), Ok(()), "{ok}");
        }
        for bad in [
            "/etc/app",
            "/etc/application/x",
            "/etc/passwd",
            "etc/app/x",
            "/etc/app/../passwd",
            "/etc/app/./x",
        ] {
            assert!(check_path(bad, &roots()).is_err(), "{bad}");
        }
        let error = check_path("/etc/shadow", &roots()).expect_err("outside");
        assert_eq!(
            error.to_string(),
            "file /etc/shadow: outside the allowed roots (/etc/app, /srv/data/)"
        );
    }

    #[test]
    fn content_mode_and_owner_are_decoded() {
        let mut file = info("/etc/app/k", "aGk=");
        file.encoding = Some(FileEncoding::Base64);
        file.mode = Some("0600".into());
        file.owner = Some("app:staff".into());
        let write = file_write(&file, &roots()).expect("valid");
        assert_eq!(write.content, b"hi");
        assert_eq!(write.mode, 0o600);
        assert_eq!(
            (write.user.as_deref(), write.group.as_deref()),
            (Some("app"), Some("staff"))
        );
        let plain = file_write(&info("/etc/app/p", "text"), &roots()).expect("plain");
        assert_eq!(
            (plain.content.as_slice(), plain.mode),
            (&b"text"[..], 0o644)
        );
        file.mode = Some("rw".into());
        assert!(file_write(&file, &roots()).is_err());
        let debug = format!("{plain:?}");
        assert!(!debug.contains("text"), "{debug}");
    }
}
