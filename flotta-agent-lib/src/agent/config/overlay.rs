//! The `spec.files` overlay: files written and removed as a configuration says,
//! with the record of what the agent wrote.

use super::*;

impl Agent {
    /// Reads the record of overlay files written (after a restart).
    pub(super) async fn load_written(&self) -> Result<(), AgentError> {
        let item = StateItem::WrittenFiles;
        let record = match self.state.load(item).await? {
            Some(bytes) => WrittenFiles::decode(item, &bytes)?,
            None => WrittenFiles::default(),
        };
        *lock(&self.written) = record;
        Ok(())
    }

    /// Removes the temporary files a kill left beside overlay files: never renamed
    /// into place, they are nobody's content.
    pub(super) fn clean_file_leftovers(&self, config: &RenderedConfig) {
        let recorded: Vec<String> = lock(&self.written).0.keys().cloned().collect();
        let desired = config
            .message
            .configuration
            .iter()
            .filter_map(|c| c.files.as_ref())
            .flatten()
            .map(|f| f.path.clone());
        let paths: Vec<String> = recorded.into_iter().chain(desired).collect();
        crate::files::remove_leftovers(paths.iter().map(String::as_str));
    }

    /// Saves the record of overlay files; the write is not done without it.
    pub(super) async fn save_written(&self) -> Result<(), ApplyError> {
        let bytes = lock(&self.written).encode();
        let item = StateItem::WrittenFiles;
        self.state.save(item, &bytes).await.map_err(|source| {
            self.shared.state_write_failed(item, &source);
            ApplyError::File {
                path: String::new(),
                reason: format!("cannot record the overlay files: {source}"),
            }
        })
    }

    /// Writes one overlay file atomically, recording first how the path was found.
    pub(super) async fn write_overlay_file(
        &self,
        file: &flotta_core::wire::FileInfo,
    ) -> Result<(), ApplyError> {
        let decided = file_write(file, &self.file_roots).map_err(|e| ApplyError::File {
            path: e.path.clone(),
            reason: e.reason,
        })?;
        let path = std::path::PathBuf::from(&decided.path);
        crate::files::check_no_links(&path, &self.file_roots)
            .map_err(|e| file_error(&decided.path, e.to_string()))?;
        let known = lock(&self.written).0.contains_key(&decided.path);
        if !known {
            let probe = path.clone();
            let origin = tokio::task::spawn_blocking(move || crate::files::origin_of(&probe))
                .await
                .map_err(|e| file_error(&decided.path, e.to_string()))?
                .map_err(|e| file_error(&decided.path, e.to_string()))?;
            lock(&self.written).0.insert(decided.path.clone(), origin);
            self.save_written().await?;
        }
        let target = decided.path.clone();
        tokio::task::spawn_blocking(move || crate::files::write_file(&decided))
            .await
            .map_err(|e| file_error(&target, e.to_string()))?
            .map_err(|e| file_error(&target, e.to_string()))?;
        tracing::info!(path = %target, "file written");
        Ok(())
    }

    /// Removes one overlay file the agent wrote: deleted when it created it, the
    /// original put back when it replaced one; a file it never wrote is left alone.
    pub(super) async fn remove_overlay_file(&self, path: &str) -> Result<(), ApplyError> {
        let Some(origin) = lock(&self.written).0.get(path).cloned() else {
            tracing::debug!(%path, "not written by this agent; left alone");
            return Ok(());
        };
        let target = std::path::PathBuf::from(path);
        tokio::task::spawn_blocking(move || crate::files::undo(&target, &origin))
            .await
            .map_err(|e| file_error(path, e.to_string()))?
            .map_err(|e| file_error(path, e.to_string()))?;
        lock(&self.written).0.remove(path);
        self.save_written().await?;
        tracing::info!(%path, "file removed");
        Ok(())
    }
}
