//! One workload's upload: which files of its egress paths changed since they were
//! last uploaded, and their upload, resumable.
//!
//! The state (`STATE_DIR/data/WORKLOAD.json`) records each object uploaded with
//! the size and modification time of the file it came from, and the multipart
//! upload under way with the ETags of its parts so far. It is written after every
//! object and every part: an agent stopped, killed or cut off mid-upload resumes
//! with the next part of the same upload. A file that changed since its upload
//! started is uploaded again from its start (the stale upload is aborted). Files
//! deleted from the export directory are forgotten by the state; their objects
//! stay in the bucket.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::plan::EgressPath;
use super::s3::{S3Client, S3Error};

/// Size of the parts of a multipart upload; files up to it go in one request.
pub const PART_BYTES: u64 = 8 * 1024 * 1024;
/// A file modified less than this long ago is left for the next pass: it may
/// still be being written.
pub const SETTLE: Duration = Duration::from_secs(2);

/// A file's size and modification time, as uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u128,
}

/// A multipart upload under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpload {
    /// The object key.
    pub key: String,
    /// The file as it was when the upload started.
    pub stamp: FileStamp,
    /// The upload's ID.
    pub upload_id: String,
    /// ETags of the parts uploaded, in order (part `i + 1`).
    pub etags: Vec<String>,
}

/// What a workload's upload has done, kept on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Objects uploaded, by key.
    pub uploaded: BTreeMap<String, FileStamp>,
    /// The multipart upload under way, if any.
    pub pending: Option<PendingUpload>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Objects completed.
    pub files: u64,
    /// Parts of multipart uploads sent.
    pub parts: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Files left for the next pass (still being written).
    pub unsettled: u64,
}

/// A file to upload.
#[derive(Debug, Clone)]
struct Candidate {
    path: PathBuf,
    key: String,
    stamp: FileStamp,
    modified: SystemTime,
}

/// One workload's uploads, with their state file.
#[derive(Debug)]
pub struct WorkloadUpload {
    state_file: PathBuf,
    state: UploadState,
}

impl WorkloadUpload {
    /// The upload whose state is kept in `state_file` (read if it exists; an
    /// unreadable one is reported and started afresh, which re-uploads).
    pub fn open(state_file: impl Into<PathBuf>) -> Self {
        let state_file = state_file.into();
        let state = match std::fs::read(&state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(%error, file = %state_file.display(), "unreadable upload state: starting afresh");
                UploadState::default()
            }),
            Err(_) => UploadState::default(),
        };
        Self { state_file, state }
    }

    /// The state.
    pub fn state(&self) -> &UploadState {
        &self.state
    }

    fn save(&self) -> Result<(), String> {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.state_file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let temporary = self.state_file.with_extension("tmp");
            std::fs::write(
                &temporary,
                serde_json::to_vec(&self.state).map_err(std::io::Error::other)?,
            )?;
            std::fs::rename(&temporary, &self.state_file)
        };
        write().map_err(|e| {
            format!(
                "cannot record the upload state in {}: {e}",
                self.state_file.display()
            )
        })
    }

    /// Uploads every settled file of `paths` under `export_dir` that changed since
    /// its last upload, as `DEVICE/TARGET/RELATIVE-PATH`. Stops at the first
    /// failure (what was done is recorded).
    pub async fn sync(
        &mut self,
        client: &S3Client,
        device: &str,
        export_dir: &Path,
        paths: &[EgressPath],
        now: SystemTime,
    ) -> Result<PassReport, String> {
        let (export, device_owned, paths_owned) =
            (export_dir.to_path_buf(), device.to_owned(), paths.to_vec());
        let candidates =
            tokio::task::spawn_blocking(move || candidates(&export, &device_owned, &paths_owned))
                .await
                .map_err(|e| format!("listing the export directory: {e}"))??;
        // Forget files that are gone (their objects stay in the bucket), so the
        // state holds what the export directory holds, not every file ever seen.
        let before = self.state.uploaded.len();
        self.state.uploaded.retain(|key, _| {
            candidates
                .binary_search_by(|c| c.key.as_str().cmp(key))
                .is_ok()
        });
        if self.state.uploaded.len() != before {
            self.save()?;
        }
        let mut report = PassReport::default();
        for candidate in candidates {
            if self.state.uploaded.get(&candidate.key) == Some(&candidate.stamp) {
                continue;
            }
            if now.duration_since(candidate.modified).unwrap_or_default() < SETTLE {
                report.unsettled += 1;
                continue;
            }
            if candidate.stamp.size <= PART_BYTES {
                let body = read_range(&candidate.path, 0, candidate.stamp.size).await?;
                client
                    .put_object(&candidate.key, body)
                    .await
                    .map_err(|e| upload_error(&candidate.key, &e))?;
                report.bytes += candidate.stamp.size;
            } else {
                self.multipart(client, &candidate, &mut report).await?;
            }
            self.state
                .uploaded
                .insert(candidate.key.clone(), candidate.stamp);
            self.save()?;
            report.files += 1;
        }
        Ok(report)
    }

    async fn multipart(
        &mut self,
        client: &S3Client,
        candidate: &Candidate,
        report: &mut PassReport,
    ) -> Result<(), String> {
        let resumable = self
            .state
            .pending
            .as_ref()
            .is_some_and(|p| p.key == candidate.key && p.stamp == candidate.stamp);
        if !resumable {
            if let Some(stale) = self.state.pending.take() {
                client
                    .abort_multipart_upload(&stale.key, &stale.upload_id)
                    .await;
            }
            let upload_id = client
                .create_multipart_upload(&candidate.key)
                .await
                .map_err(|e| upload_error(&candidate.key, &e))?;
            self.state.pending = Some(PendingUpload {
                key: candidate.key.clone(),
                stamp: candidate.stamp,
                upload_id,
                etags: Vec::new(),
            });
            self.save()?;
        }
        let parts = candidate.stamp.size.div_ceil(PART_BYTES);
        loop {
            let Some(pending) = self.state.pending.as_mut() else {
                return Err(format!("{}: the upload state was lost", candidate.key));
            };
            let done = pending.etags.len() as u64;
            if done == parts {
                break;
            }
            let number = u16::try_from(done + 1)
                .map_err(|_| format!("{}: more than 10,000 parts", candidate.key))?;
            let offset = done * PART_BYTES;
            let length = PART_BYTES.min(candidate.stamp.size - offset);
            let body = read_range(&candidate.path, offset, length).await?;
            match client
                .upload_part(&candidate.key, &pending.upload_id, number, body)
                .await
            {
                Ok(etag) => pending.etags.push(etag),
                Err(S3Error::NoSuchUpload) => {
                    self.state.pending = None;
                    self.save()?;
                    return Err(format!(
                        "{}: the multipart upload vanished on the server; it starts again",
                        candidate.key
                    ));
                }
                Err(error) => return Err(upload_error(&candidate.key, &error)),
            }
            report.parts += 1;
            report.bytes += length;
            self.save()?;
        }
        let Some(pending) = self.state.pending.clone() else {
            return Err(format!("{}: the upload state was lost", candidate.key));
        };
        match client
            .complete_multipart_upload(&pending.key, &pending.upload_id, &pending.etags)
            .await
        {
            Ok(()) => {
                self.state.pending = None;
                Ok(())
            }
            Err(S3Error::NoSuchUpload) => {
                self.state.pending = None;
                self.save()?;
                Err(format!(
                    "{}: the multipart upload vanished on the server; it starts again",
                    candidate.key
                ))
            }
            Err(error) => Err(upload_error(&candidate.key, &error)),
        }
    }
}

fn upload_error(key: &str, error: &S3Error) -> String {
    format!("uploading {key}: {error}")
}

/// `length` bytes of `path` from `offset`.
async fn read_range(path: &Path, offset: u64, length: u64) -> Result<Vec<u8>, String> {
    let shown = path.display().to_string();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut body = Vec::with_capacity(usize::try_from(length).unwrap_or_default());
        file.take(length).read_to_end(&mut body)?;
        if (body.len() as u64) < length {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            ));
        }
        Ok(body)
    })
    .await
    .map_err(|e| format!("reading: {e}"))?
    .map_err(|e| format!("reading {shown}: {e}"))
}

/// Every regular file under the egress paths (symbolic links are not followed),
/// sorted by key.
fn candidates(
    export_dir: &Path,
    device: &str,
    paths: &[EgressPath],
) -> Result<Vec<Candidate>, String> {
    let mut found = Vec::new();
    for egress in paths {
        let root = export_dir.join(&egress.source);
        let mut stack = vec![(root.clone(), PathBuf::new())];
        while let Some((path, relative)) = stack.pop() {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Not written yet.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            if meta.is_dir() {
                let entries =
                    std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                for entry in entries {
                    let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
                    stack.push((entry.path(), relative.join(entry.file_name())));
                }
            } else if meta.is_file() {
                let relative = if relative.as_os_str().is_empty() {
                    // The source is a file itself.
                    PathBuf::from(path.file_name().unwrap_or_default())
                } else {
                    relative
                };
                let relative: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push(Candidate {
                    path,
                    key: format!("{device}/{}/{}", egress.target, relative.join("/")),
                    stamp: FileStamp {
                        size: meta.len(),
                        modified_ns: modified
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_nanos(),
                    },
                    modified,
                });
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    found.dedup_by(|a, b| a.key == b.key);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_under_the_sources_become_keys_under_device_and_target() {
        let dir = tempfile::tempdir().expect("dir");
        let export = dir.path();
        std::fs::create_dir_all(export.join("frames/day1")).expect("dirs");
        std::fs::write(export.join("frames/a.jpg"), b"a").expect("file");
        std::fs::write(export.join("frames/day1/b.jpg"), b"bb").expect("file");
        std::fs::write(export.join("summary.csv"), b"ccc").expect("file");
        std::os::unix::fs::symlink("/etc/hostname", export.join("frames/link")).expect("link");
        let paths = [
            EgressPath {
                source: "frames".into(),
                target: "cam/frames".into(),
            },
            EgressPath {
                source: "summary.csv".into(),
                target: "reports".into(),
            },
            EgressPath {
                source: "missing".into(),
                target: "none".into(),
            },
        ];
        let found = candidates(export, "dev-1", &paths).expect("listing");
        let keys: Vec<(&str, u64)> = found
            .iter()
            .map(|c| (c.key.as_str(), c.stamp.size))
            .collect();
        assert_eq!(
            keys,
            [
                ("dev-1/cam/frames/a.jpg", 1),
                ("dev-1/cam/frames/day1/b.jpg", 2),
                ("dev-1/reports/summary.csv", 3)
            ]
        );
    }

    #[test]
    fn a_missing_or_unreadable_state_starts_afresh() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("w.json");
        assert_eq!(WorkloadUpload::open(&file).state(), &UploadState::default());
        std::fs::write(&file, b"{not json").expect("write");
        assert_eq!(WorkloadUpload::open(&file).state(), &UploadState::default());
    }
}
