//! Following a log file from a persisted cursor: the file itself is the on-disk
//! buffer of lines not yet sent. A cursor (offset and the file's identity) is
//! committed only once the lines before it were sent, so a restart, a lost
//! connection or an offline period resumes where sending stopped.
//!
//! The backlog is bounded: when more than `buffer_bytes` wait unsent, the oldest
//! are skipped (up to the next line start) and counted. A file replaced (another
//! inode) or truncated below the cursor is read again from its start.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::MAX_LINE_BYTES;

/// Most bytes read from the file in one [`Tail::read`].
const READ_CHUNK: usize = 256 * 1024;
/// Appended to a line cut at [`MAX_LINE_BYTES`].
pub const TRUNCATED_MARK: &[u8] = b" [truncated]";

/// Where sending stands in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursor {
    /// Bytes of the file already sent (or skipped).
    pub offset: u64,
    /// Device and inode of the file the offset is in.
    pub device: u64,
    /// Inode of the file the offset is in.
    pub inode: u64,
    /// Whether the rest of an over-long line, cut and sent, is still to be skipped.
    #[serde(default)]
    pub discarding: bool,
}

/// Lines read, not yet sent.
#[derive(Debug, Default)]
pub struct Lines {
    /// Complete lines, without their newline, cut at [`MAX_LINE_BYTES`].
    pub lines: Vec<Vec<u8>>,
    /// The cursor to commit once `lines` are sent.
    pub next: Cursor,
    /// Bytes skipped because the backlog exceeded the bound.
    pub skipped_bytes: u64,
}

/// A file followed from a cursor kept in `cursor_file`.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    cursor_file: PathBuf,
    cursor: Cursor,
}

impl Tail {
    /// Follows `path`, resuming from the cursor saved in `cursor_file` if any.
    pub fn open(path: impl Into<PathBuf>, cursor_file: impl Into<PathBuf>) -> Self {
        let cursor_file = cursor_file.into();
        let cursor = std::fs::read(&cursor_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self {
            path: path.into(),
            cursor_file,
            cursor,
        }
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cursor last committed.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Reads at most `max_lines` complete lines after the cursor, skipping the
    /// oldest bytes beyond `buffer_bytes` of backlog. A file that does not exist
    /// (yet) has no lines.
    pub fn read(&self, max_lines: usize, buffer_bytes: u64) -> std::io::Result<Lines> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Lines {
                    next: self.cursor,
                    ..Lines::default()
                });
            }
            Err(error) => return Err(error),
        };
        let meta = file.metadata()?;
        let mut cursor = self.cursor;
        if (cursor.device, cursor.inode) != (meta.dev(), meta.ino()) || meta.len() < cursor.offset {
            cursor = Cursor {
                offset: 0,
                device: meta.dev(),
                inode: meta.ino(),
                discarding: false,
            };
        }
        let mut skipped_bytes = 0;
        let backlog = meta.len() - cursor.offset;
        if backlog > buffer_bytes {
            let skip = backlog - buffer_bytes;
            skipped_bytes += skip;
            cursor.offset += skip;
            // A cut inside a line skips the rest of that line too.
            let mut before = [0u8];
            file.seek(SeekFrom::Start(cursor.offset - 1))?;
            file.read_exact(&mut before)?;
            cursor.discarding = before[0] != b'\n';
        }
        file.seek(SeekFrom::Start(cursor.offset))?;
        let mut chunk = Vec::new();
        (&mut file)
            .take(READ_CHUNK as u64)
            .read_to_end(&mut chunk)?;
        let mut lines = Vec::new();
        let mut start = 0;
        while lines.len() < max_lines && start < chunk.len() {
            let rest = &chunk[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    if cursor.discarding {
                        skipped_bytes += end as u64 + 1;
                        cursor.discarding = false;
                    } else {
                        lines.push(cut(&rest[..end]));
                    }
                    start += end + 1;
                }
                None if rest.len() >= MAX_LINE_BYTES && !cursor.discarding => {
                    // A line longer than any sent: its head goes now, the rest
                    // (up to its newline) is skipped when it arrives.
                    lines.push(cut(rest));
                    start = chunk.len();
                    cursor.discarding = true;
                }
                None if cursor.discarding => {
                    skipped_bytes += rest.len() as u64;
                    start = chunk.len();
                }
                // An incomplete last line waits for its newline.
                None => break,
            }
        }
        cursor.offset += start as u64;
        Ok(Lines {
            lines,
            next: cursor,
            skipped_bytes,
        })
    }

    /// Records that everything before `next` was sent (written to the cursor file
    /// atomically: a temporary file renamed over it).
    pub fn commit(&mut self, next: Cursor) -> std::io::Result<()> {
        if next == self.cursor {
            return Ok(());
        }
        if let Some(dir) = self.cursor_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = self.cursor_file.with_extension("tmp");
        std::fs::write(
            &temporary,
            serde_json::to_vec(&next).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&temporary, &self.cursor_file)?;
        self.cursor = next;
        Ok(())
    }
}

/// `line` cut at [`MAX_LINE_BYTES`] and marked when it was longer.
fn cut(line: &[u8]) -> Vec<u8> {
    if line.len() <= MAX_LINE_BYTES {
        return line.to_vec();
    }
    let mut head = line[..MAX_LINE_BYTES].to_vec();
    head.extend_from_slice(TRUNCATED_MARK);
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        file.write_all(bytes).expect("write");
    }

    fn texts(lines: &Lines) -> Vec<String> {
        lines
            .lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    #[test]
    fn lines_resume_from_the_committed_cursor_across_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("c.log");
        let cursor = dir.path().join("cursor/c.json");
        let mut tail = Tail::open(&log, &cursor);
        assert!(tail.read(10, 1 << 20).expect("read").lines.is_empty());
        append(&log, b"one\ntwo\nthr");
        let read = tail.read(10, 1 << 20).expect("read");
        assert_eq!(texts(&read), ["one", "two"]);
        // Not committed: read again.
        assert_eq!(texts(&tail.read(1, 1 << 20).expect("read")), ["one"]);
        tail.commit(read.next).expect("commit");
        append(&log, b"ee\n");
        let mut reopened = Tail::open(&log, &cursor);
        let read = reopened.read(10, 1 << 20).expect("read");
        assert_eq!(texts(&read), ["three"]);
        reopened.commit(read.next).expect("commit");
        assert!(reopened.read(10, 1 << 20).expect("read").lines.is_empty());
    }

    #[test]
    fn a_backlog_beyond_the_bound_drops_the_oldest_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("c.log");
        let tail = Tail::open(&log, dir.path().join("c.json"));
        for i in 0..100 {
            append(&log, format!("line {i:03}\n").as_bytes());
        }
        // Each line is 9 bytes; keep the last 25 bytes: a partial line, then two.
        let read = tail.read(1000, 25).expect("read");
        assert_eq!(texts(&read), ["line 098", "line 099"]);
        assert_eq!(read.skipped_bytes, 900 - 18);
        // A bound falling on a line start keeps that line whole.
        let read = tail.read(1000, 27).expect("read");
        assert_eq!(texts(&read), ["line 097", "line 098", "line 099"]);
        assert_eq!(read.skipped_bytes, 900 - 27);
    }

    #[test]
    fn over_long_lines_are_cut_and_their_rest_skipped() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("c.log");
        let mut tail = Tail::open(&log, dir.path().join("c.json"));
        append(&log, &vec![b'x'; MAX_LINE_BYTES + 10]);
        let read = tail.read(10, 1 << 20).expect("read");
        assert_eq!(read.lines.len(), 1);
        assert!(read.lines[0].ends_with(TRUNCATED_MARK));
        tail.commit(read.next).expect("commit");
        append(&log, b"xx\nnext\n");
        let read = tail.read(10, 1 << 20).expect("read");
        assert_eq!(texts(&read), ["next"]);
    }

    #[test]
    fn a_replaced_or_truncated_file_is_read_from_its_start() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("c.log");
        let mut tail = Tail::open(&log, dir.path().join("c.json"));
        append(&log, b"old line\n");
        let read = tail.read(10, 1 << 20).expect("read");
        tail.commit(read.next).expect("commit");
        std::fs::remove_file(&log).expect("remove");
        append(&log, b"new\n");
        assert_eq!(texts(&tail.read(10, 1 << 20).expect("read")), ["new"]);
        std::fs::write(&log, b"").expect("truncate");
        append(&log, b"x\n");
        let read = tail.read(10, 1 << 20).expect("read");
        assert_eq!(texts(&read), ["x"]);
    }
}
