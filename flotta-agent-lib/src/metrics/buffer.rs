//! The on-disk buffer of samples waiting for the receiver: append-only segment
//! files under the agent's state directory, bounded in bytes and age, read in
//! batches and released only once the receiver acknowledged them.
//!
//! Layout of the buffer's directory:
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segments, numbered in write order. Each is a run of
//!   records `[length: u32 LE][CRC-32 of the payload: u32 LE][payload]`, the payload
//!   being a remote-write `WriteRequest` (protobuf) of one collection. A record torn
//!   by a crash fails its length or checksum and is cut off when the buffer opens.
//! - `cursor.json`: the first sample not yet acknowledged (segment, record offset,
//!   samples of that record already sent) and the count of samples dropped since the
//!   buffer was created, replaced atomically (temporary file, fsync, rename).
//!
//! Bounds: the segments together never exceed [`BufferLimits::max_bytes`]; when a
//! record would not fit, the oldest segments are deleted whole (oldest samples
//! first). Segments whose newest sample is older than [`BufferLimits::max_age`] are
//! deleted too, and older samples of a segment still kept are left out of batches.
//! Every sample lost that way, unsent, counts in [`MetricsBuffer::dropped_total`].
//! Memory holds one line per segment and the batch being sent, never the samples
//! buffered.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MetricsError;
use super::remote_write::{TimeSeries, WriteRequest};

const CURSOR_FILE: &str = "cursor.json";
const SEGMENT_SUFFIX: &str = ".seg";
const RECORD_HEADER: u64 = 8;

/// How much the buffer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// Bytes of all segments together.
    pub max_bytes: u64,
    /// Age of the oldest sample kept.
    pub max_age: Duration,
}

impl BufferLimits {
    /// The size segments are cut at: an eighth of the bound (so dropping the oldest
    /// segment frees room without losing most of the buffer), between 4 KiB and
    /// 4 MiB.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(4 << 10, 4 << 20)
    }
}

/// Where reading resumes: a record, and how many of its samples were sent already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Position {
    /// Segment number.
    pub segment: u64,
    /// Byte offset of the record in the segment.
    pub offset: u64,
    /// Samples of that record already acknowledged.
    pub skip: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CursorFile {
    position: Position,
    dropped_total: u64,
}

#[derive(Debug, Clone)]
struct Segment {
    number: u64,
    bytes: u64,
    samples: u64,
    newest_ms: i64,
}

/// Samples read from the buffer for one push, to [`MetricsBuffer::acknowledge`]
/// once the receiver took them (or refused them for good).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The samples, as one remote-write request.
    pub request: WriteRequest,
    /// How many samples `request` carries.
    pub samples: u64,
    /// Samples passed over because they were older than the age bound.
    pub expired: u64,
    end: Position,
    /// Samples of the end segment before `end`, for the buffer's count.
    end_acked: u64,
    generation: u64,
}

/// The segment files of one buffer directory. Blocking: use it off the async
/// threads.
#[derive(Debug)]
pub struct MetricsBuffer {
    dir: PathBuf,
    limits: BufferLimits,
    segments: VecDeque<Segment>,
    cursor: Position,
    /// Samples of the cursor's segment before the cursor.
    acked_in_head: u64,
    dropped_total: u64,
    next_segment: u64,
    writer: Option<File>,
    /// Changes whenever segments are deleted, so an older batch is checked again.
    generation: u64,
}

impl MetricsBuffer {
    /// Opens (or creates) the buffer in `dir`: cuts off a record torn by a crash,
    /// deletes segments already sent, then applies `limits` as of `now_ms`.
    pub fn open(
        dir: impl Into<PathBuf>,
        limits: BufferLimits,
        now_ms: i64,
    ) -> Result<Self, MetricsError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| MetricsError::io("create", &dir, e))?;
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| MetricsError::io("read", &dir, e))? {
            let entry = entry.map_err(|e| MetricsError::io("read", &dir, e))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            numbers.push(number);
        }
        numbers.sort_unstable();
        let cursor_path = dir.join(CURSOR_FILE);
        let saved: CursorFile = match std::fs::read(&cursor_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CursorFile::default(),
            Err(e) => return Err(MetricsError::io("read", &cursor_path, e)),
        };
        let mut buffer = Self {
            next_segment: numbers.last().map_or(saved.position.segment, |n| n + 1),
            dir,
            limits,
            segments: VecDeque::new(),
            cursor: saved.position,
            acked_in_head: 0,
            dropped_total: saved.dropped_total,
            writer: None,
            generation: 0,
        };
        for number in numbers {
            let path = buffer.segment_path(number);
            if number < saved.position.segment {
                // Sent before the last run ended.
                remove(&path)?;
                continue;
            }
            let scan = scan(&path, None)?;
            if scan.valid_bytes < scan.file_bytes {
                tracing::warn!(path = %path.display(), kept = scan.valid_bytes, "cutting off a torn metrics record");
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| MetricsError::io("open", &path, e))?;
                file.set_len(scan.valid_bytes)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| MetricsError::io("truncate", &path, e))?;
            }
            buffer.segments.push_back(Segment {
                number,
                bytes: scan.valid_bytes,
                samples: scan.samples,
                newest_ms: scan.newest_ms,
            });
        }
        match buffer.segments.front() {
            Some(head) if head.number == buffer.cursor.segment => {
                let path = buffer.segment_path(head.number);
                let before = scan(&path, Some(buffer.cursor.offset))?;
                buffer.cursor.offset = before.valid_bytes;
                buffer.acked_in_head = before.samples + buffer.cursor.skip;
                buffer.acked_in_head = buffer.acked_in_head.min(head.samples);
            }
            Some(head) => {
                buffer.cursor = Position {
                    segment: head.number,
                    ..Position::default()
                };
            }
            None => {
                buffer.cursor = Position {
                    segment: buffer.next_segment,
                    ..Position::default()
                };
            }
        }
        buffer.enforce(now_ms)?;
        Ok(buffer)
    }

    /// The directory of the buffer.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes the bounds, dropping at once what no longer fits.
    pub fn set_limits(&mut self, limits: BufferLimits, now_ms: i64) -> Result<(), MetricsError> {
        self.limits = limits;
        self.enforce(now_ms)
    }

    /// Samples buffered and not yet acknowledged.
    pub fn pending_samples(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.samples)
            .sum::<u64>()
            .saturating_sub(self.acked_in_head)
    }

    /// Bytes of the segments on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Samples dropped unsent (oldest first, for room or age) since the buffer was
    /// created; kept across restarts.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Appends the samples of one collection; returns how many buffered samples
    /// were dropped to make room (the new ones included, when they alone exceed the
    /// bound). The record is on disk (fsync) when this returns.
    pub fn append(&mut self, request: &WriteRequest, now_ms: i64) -> Result<u64, MetricsError> {
        let samples = request.sample_count() as u64;
        if samples == 0 {
            return Ok(0);
        }
        let before = self.dropped_total;
        self.expire(now_ms)?;
        let payload = request.encode_proto();
        let record_bytes = RECORD_HEADER + payload.len() as u64;
        if record_bytes > self.limits.max_bytes {
            self.dropped_total += samples;
            self.save_cursor()?;
            return Ok(self.dropped_total - before);
        }
        while self.bytes() + record_bytes > self.limits.max_bytes {
            self.drop_oldest()?;
        }
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.bytes > 0 && s.bytes + record_bytes > self.limits.segment_bytes());
        if full || self.writer.is_none() {
            self.open_writer(full)?;
        }
        let Some(segment) = self.segments.back_mut() else {
            return Err(MetricsError::Corrupt("no segment to write to".into()));
        };
        let path = self.dir.join(segment_name(segment.number));
        let Some(writer) = self.writer.as_mut() else {
            return Err(MetricsError::Corrupt("no open segment".into()));
        };
        let mut record = Vec::with_capacity(record_bytes as usize);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        if let Err(error) = writer.write_all(&record).and_then(|()| writer.sync_data()) {
            // What was written of the record is cut off at the next open; write no
            // further after it.
            self.writer = None;
            return Err(MetricsError::io("write", &path, error));
        }
        segment.bytes += record_bytes;
        segment.samples += samples;
        segment.newest_ms = segment.newest_ms.max(newest(request));
        let dropped = self.dropped_total - before;
        if dropped > 0 {
            self.save_cursor()?;
        }
        Ok(dropped)
    }

    /// Up to `max_samples` samples from the oldest unacknowledged one, as one
    /// request (series in the order buffered); `None` when nothing waits.
    pub fn peek(&mut self, max_samples: usize, now_ms: i64) -> Result<Option<Batch>, MetricsError> {
        self.expire(now_ms)?;
        let cutoff = self.cutoff(now_ms);
        let max_samples = max_samples.max(1) as u64;
        let mut request = WriteRequest::default();
        let (mut taken, mut expired) = (0u64, 0u64);
        let mut position = self.cursor;
        let mut acked = self.acked_in_head;
        let numbers: Vec<(u64, u64)> = self.segments.iter().map(|s| (s.number, s.bytes)).collect();
        'segments: for (number, bytes) in numbers {
            if number < position.segment {
                continue;
            }
            if number > position.segment {
                position = Position {
                    segment: number,
                    ..Position::default()
                };
                acked = 0;
            }
            if position.offset >= bytes {
                continue;
            }
            let path = self.segment_path(number);
            let mut file = File::open(&path).map_err(|e| MetricsError::io("open", &path, e))?;
            file.seek(SeekFrom::Start(position.offset))
                .map_err(|e| MetricsError::io("read", &path, e))?;
            while position.offset < bytes {
                let Some(payload) =
                    read_record(&mut file).map_err(|e| MetricsError::io("read", &path, e))?
                else {
                    break;
                };
                let record = WriteRequest::decode_proto(&payload).map_err(|e| {
                    MetricsError::Corrupt(format!("{}: undecodable record: {e}", path.display()))
                })?;
                let record_samples = record.sample_count() as u64;
                let mut index = 0u64;
                for series in record.timeseries {
                    let mut kept = TimeSeries {
                        labels: series.labels,
                        samples: Vec::new(),
                    };
                    for sample in series.samples {
                        index += 1;
                        if index <= position.skip {
                            continue;
                        }
                        if taken == max_samples {
                            break;
                        }
                        position.skip += 1;
                        acked += 1;
                        if sample.timestamp < cutoff {
                            expired += 1;
                        } else {
                            kept.samples.push(sample);
                            taken += 1;
                        }
                    }
                    if !kept.samples.is_empty() {
                        request.timeseries.push(kept);
                    }
                }
                if position.skip >= record_samples {
                    position.offset += RECORD_HEADER + payload.len() as u64;
                    position.skip = 0;
                }
                if taken == max_samples {
                    break 'segments;
                }
            }
        }
        if taken == 0 && expired == 0 {
            return Ok(None);
        }
        Ok(Some(Batch {
            request,
            samples: taken,
            expired,
            end: position,
            end_acked: acked,
            generation: self.generation,
        }))
    }

    /// Releases the samples of `batch` (sent, or refused for good): they are never
    /// read again, and segments wholly released are deleted.
    pub fn acknowledge(&mut self, batch: &Batch) -> Result<(), MetricsError> {
        if batch.end <= self.cursor {
            return Ok(());
        }
        if batch.generation == self.generation {
            self.dropped_total += batch.expired;
            self.acked_in_head = batch.end_acked;
        } else {
            // Segments were deleted since the batch was read: count again.
            match self.segments.iter().find(|s| s.number == batch.end.segment) {
                Some(segment) => {
                    let before = scan(&self.segment_path(segment.number), Some(batch.end.offset))?;
                    self.acked_in_head = (before.samples + batch.end.skip).min(segment.samples);
                }
                None => self.acked_in_head = 0,
            }
        }
        self.cursor = batch.end;
        while let Some(head) = self.segments.front() {
            let is_writer = self.segments.len() == 1;
            if head.number < self.cursor.segment
                || (head.number == self.cursor.segment
                    && self.cursor.offset >= head.bytes
                    && !is_writer)
            {
                let head = self
                    .segments
                    .pop_front()
                    .ok_or_else(|| MetricsError::Corrupt("no segment".into()))?;
                remove(&self.segment_path(head.number))?;
                self.generation += 1;
                if head.number == self.cursor.segment {
                    self.acked_in_head = 0;
                    self.cursor = Position {
                        segment: self
                            .segments
                            .front()
                            .map_or(self.next_segment, |s| s.number),
                        ..Position::default()
                    };
                }
            } else {
                break;
            }
        }
        self.save_cursor()
    }

    fn cutoff(&self, now_ms: i64) -> i64 {
        let age = i64::try_from(self.limits.max_age.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_sub(age)
    }

    fn enforce(&mut self, now_ms: i64) -> Result<(), MetricsError> {
        let before = self.dropped_total;
        self.expire(now_ms)?;
        while self.bytes() > self.limits.max_bytes {
            self.drop_oldest()?;
        }
        if self.dropped_total != before {
            self.save_cursor()?;
        }
        Ok(())
    }

    fn expire(&mut self, now_ms: i64) -> Result<(), MetricsError> {
        let cutoff = self.cutoff(now_ms);
        while self
            .segments
            .front()
            .is_some_and(|s| s.samples > 0 && s.newest_ms < cutoff)
        {
            self.drop_oldest()?;
        }
        Ok(())
    }

    /// Deletes the oldest segment, counting what of it was not sent.
    fn drop_oldest(&mut self) -> Result<(), MetricsError> {
        let Some(segment) = self.segments.pop_front() else {
            return Ok(());
        };
        let acked = if segment.number == self.cursor.segment {
            self.acked_in_head
        } else {
            0
        };
        let lost = segment.samples.saturating_sub(acked);
        self.dropped_total += lost;
        if self.segments.is_empty() {
            self.writer = None;
        }
        remove(&self.segment_path(segment.number))?;
        self.generation += 1;
        if self.cursor.segment <= segment.number {
            self.acked_in_head = 0;
            self.cursor = Position {
                segment: self
                    .segments
                    .front()
                    .map_or(self.next_segment, |s| s.number),
                ..Position::default()
            };
        }
        if lost > 0 {
            tracing::warn!(
                lost,
                "metrics buffer full or expired: oldest samples dropped"
            );
        }
        self.save_cursor()
    }

    /// Opens the last segment for appending, or a new one when `fresh`.
    fn open_writer(&mut self, fresh: bool) -> Result<(), MetricsError> {
        if fresh || self.segments.is_empty() {
            let number = self.next_segment;
            self.next_segment += 1;
            if self.segments.is_empty() {
                self.cursor = Position {
                    segment: number,
                    ..Position::default()
                };
                self.acked_in_head = 0;
            }
            self.segments.push_back(Segment {
                number,
                bytes: 0,
                samples: 0,
                newest_ms: i64::MIN,
            });
        }
        let Some(last) = self.segments.back() else {
            return Err(MetricsError::Corrupt("no segment".into()));
        };
        let path = self.segment_path(last.number);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| MetricsError::io("open", &path, e))?;
        self.writer = Some(file);
        Ok(())
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(segment_name(number))
    }

    fn save_cursor(&self) -> Result<(), MetricsError> {
        let content = serde_json::to_vec(&CursorFile {
            position: self.cursor,
            dropped_total: self.dropped_total,
        })
        .map_err(|e| MetricsError::Corrupt(format!("cursor: {e}")))?;
        let path = self.dir.join(CURSOR_FILE);
        let temporary = self.dir.join(format!("{CURSOR_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temporary)?;
            file.write_all(&content)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|e| MetricsError::io("write", &path, e))
    }
}

fn segment_name(number: u64) -> String {
    format!("{number:020}{SEGMENT_SUFFIX}")
}

fn remove(path: &Path) -> Result<(), MetricsError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MetricsError::io("remove", path, e)),
    }
}

fn newest(request: &WriteRequest) -> i64 {
    request
        .timeseries
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.timestamp))
        .max()
        .unwrap_or(i64::MIN)
}

/// The next whole record's payload; `None` at the end or at a torn record.
fn read_record(file: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 8];
    match file.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    let length = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let checksum = u32::from_le_bytes([c0, c1, c2, c3]);
    let mut payload = vec![0u8; length];
    match file.read_exact(&mut payload) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    Ok((crc32(&payload) == checksum).then_some(payload))
}

struct Scan {
    valid_bytes: u64,
    file_bytes: u64,
    samples: u64,
    newest_ms: i64,
}

/// Reads a segment's records (up to byte `until`, when given) and sums them up.
fn scan(path: &Path, until: Option<u64>) -> Result<Scan, MetricsError> {
    let mut file = File::open(path).map_err(|e| MetricsError::io("open", path, e))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| MetricsError::io("read", path, e))?
        .len();
    let mut out = Scan {
        valid_bytes: 0,
        file_bytes,
        samples: 0,
        newest_ms: i64::MIN,
    };
    while until.is_none_or(|u| out.valid_bytes < u) {
        let Some(payload) =
            read_record(&mut file).map_err(|e| MetricsError::io("read", path, e))?
        else {
            break;
        };
        let Ok(record) = WriteRequest::decode_proto(&payload) else {
            break;
        };
        out.valid_bytes += RECORD_HEADER + payload.len() as u64;
        out.samples += record.sample_count() as u64;
        out.newest_ms = out.newest_ms.max(newest(&record));
    }
    Ok(out)
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for byte in bytes {
        crc = TABLE[((crc ^ u32::from(*byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::remote_write::{Label, Sample};

    const NOW: i64 = 1_700_000_000_000;

    fn limits(max_bytes: u64) -> BufferLimits {
        BufferLimits {
            max_bytes,
            max_age: Duration::from_secs(3600),
        }
    }

    /// One collection: `n` samples of series `counter` with values `first..`.
    fn collection(first: u64, n: u64, at: i64) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label::new("__name__", "counter")],
                samples: (0..n)
                    .map(|i| Sample {
                        value: (first + i) as f64,
                        timestamp: at + i as i64,
                    })
                    .collect(),
            }],
        }
    }

    fn values(batch: &Batch) -> Vec<u64> {
        batch
            .request
            .timeseries
            .iter()
            .flat_map(|s| s.samples.iter().map(|x| x.value as u64))
            .collect()
    }

    /// Reads everything in batches of `size`, acknowledging each.
    fn drain(buffer: &mut MetricsBuffer, size: usize) -> Vec<u64> {
        let mut all = Vec::new();
        while let Some(batch) = buffer.peek(size, NOW).expect("peek") {
            all.extend(values(&batch));
            buffer.acknowledge(&batch).expect("ack");
        }
        all
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn batches_split_records_and_nothing_is_released_before_the_acknowledgement() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buffer = MetricsBuffer::open(dir.path(), limits(1 << 20), NOW).expect("open");
        assert!(buffer.peek(10, NOW).expect("peek").is_none());
        buffer.append(&collection(0, 5, NOW), NOW).expect("append");
        buffer
            .append(&collection(5, 5, NOW + 10), NOW)
            .expect("append");
        assert_eq!(buffer.pending_samples(), 10);

        let first = buffer.peek(3, NOW).expect("peek").expect("batch");
        assert_eq!(values(&first), vec![0, 1, 2]);
        // Not acknowledged: the same samples again.
        let again = buffer.peek(3, NOW).expect("peek").expect("batch");
        assert_eq!(values(&again), vec![0, 1, 2]);
        buffer.acknowledge(&again).expect("ack");
        assert_eq!(buffer.pending_samples(), 7);
        let across = buffer.peek(4, NOW).expect("peek").expect("batch");
        assert_eq!(values(&across), vec![3, 4, 5, 6], "across two records");
        buffer.acknowledge(&across).expect("ack");
        assert_eq!(drain(&mut buffer, 100), vec![7, 8, 9]);
        assert_eq!(buffer.pending_samples(), 0);
        assert_eq!(buffer.dropped_total(), 0);
    }

    #[test]
    fn the_bound_drops_the_oldest_samples_and_counts_them() {
        let dir = tempfile::tempdir().expect("dir");
        // 16 KiB: segments of 4 KiB.
        let mut buffer = MetricsBuffer::open(dir.path(), limits(16 << 10), NOW).expect("open");
        let mut next = 0;
        let mut dropped = 0;
        for i in 0..200 {
            dropped += buffer
                .append(&collection(next, 10, NOW + i * 100), NOW)
                .expect("append");
            next += 10;
            assert!(buffer.bytes() <= 16 << 10, "bound kept: {}", buffer.bytes());
        }
        assert!(dropped > 0, "2000 samples do not fit in 16 KiB");
        assert_eq!(buffer.dropped_total(), dropped);
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .map(|e| e.metadata().expect("meta").len())
            .sum();
        assert!(on_disk <= 16 << 10);
        let kept = drain(&mut buffer, 64);
        // What is kept is the newest run, without a gap, and with the dropped ones
        // accounts for every sample appended.
        assert_eq!(kept.len() as u64 + dropped, 2000);
        assert_eq!(kept.last(), Some(&1999));
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(kept[0], dropped);
    }

    #[test]
    fn a_restart_resumes_after_the_acknowledged_samples_and_cuts_a_torn_record() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let mut buffer = MetricsBuffer::open(dir.path(), limits(1 << 20), NOW).expect("open");
            buffer.append(&collection(0, 4, NOW), NOW).expect("append");
            buffer
                .append(&collection(4, 4, NOW + 10), NOW)
                .expect("append");
            let batch = buffer.peek(6, NOW).expect("peek").expect("batch");
            buffer.acknowledge(&batch).expect("ack");
            // Not acknowledged: comes again after the restart.
            let _unsent = buffer.peek(6, NOW).expect("peek");
        }
        // A crash in the middle of the next record.
        let segment = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .expect("segment");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("open");
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9])
            .expect("torn write");
        drop(file);

        let mut buffer = MetricsBuffer::open(dir.path(), limits(1 << 20), NOW).expect("reopen");
        assert_eq!(buffer.pending_samples(), 2);
        buffer
            .append(&collection(8, 2, NOW + 20), NOW)
            .expect("append after the cut");
        assert_eq!(drain(&mut buffer, 100), vec![6, 7, 8, 9]);
        drop(buffer);
        let buffer = MetricsBuffer::open(dir.path(), limits(1 << 20), NOW).expect("reopen");
        assert_eq!(buffer.pending_samples(), 0);
    }

    #[test]
    fn the_dropped_count_survives_a_restart_and_old_samples_expire() {
        let dir = tempfile::tempdir().expect("dir");
        let hour = 3_600_000;
        {
            let mut buffer = MetricsBuffer::open(dir.path(), limits(1 << 20), NOW).expect("open");
            buffer
                .append(&collection(0, 3, NOW - 2 * hour), NOW - 2 * hour)
                .expect("append");
            // Appended while the old samples are still young (samples carrying
            // newer timestamps of their own), so both records share one segment.
            buffer
                .append(&collection(3, 3, NOW), NOW - 2 * hour)
                .expect("append");
            // Within one segment: the old samples are passed over, and counted once
            // acknowledged.
            let batch = buffer.peek(100, NOW).expect("peek").expect("batch");
            assert_eq!(values(&batch), vec![3, 4, 5]);
            assert_eq!(batch.expired, 3);
            buffer.acknowledge(&batch).expect("ack");
            assert_eq!(buffer.dropped_total(), 3);
        }
        let mut buffer = MetricsBuffer::open(dir.path(), limits(1 << 20), NOW).expect("reopen");
        assert_eq!(buffer.dropped_total(), 3);
        // A whole segment past the age bound is deleted when the bound shrinks.
        buffer.append(&collection(6, 2, NOW), NOW).expect("append");
        buffer
            .set_limits(
                BufferLimits {
                    max_bytes: 1 << 20,
                    max_age: Duration::from_secs(60),
                },
                NOW + 2 * hour,
            )
            .expect("limits");
        assert_eq!(buffer.dropped_total(), 5);
        assert_eq!(buffer.pending_samples(), 0);
    }
}
