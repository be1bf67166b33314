//! Files the server writes: atomically (temporary file, fsync, rename), with the
//! permissions their contents call for.

use std::io::Write as _;
use std::path::Path;

/// Writes a file readable by its owner only (mode 0600), atomically: a temporary
/// file is written, synced and renamed over the target.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let file_name = path.file_name().map_or_else(
        || "file".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        // Make the rename itself durable; failure here only weakens crash safety.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes a public file (a certificate) atomically with mode 0644.
pub fn write_public_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_private_file(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only_and_replace_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        write_private_file(&path, b"one").expect("first write");
        write_private_file(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.path().join(".secret.key.tmp").exists());
    }
}
