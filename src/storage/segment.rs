//! One segment of a partition log: its `.log` file, indexes and bookkeeping,
//! and the scanner that reads a segment file back batch by batch.
//!
//! Owns: [`Segment`] (file handle, logical size, offsets, in-memory indexes,
//! the appender while active) and [`Scanner`] (sequential direct-I/O reads
//! that validate every batch). Runs on the shard owning the log. Must not
//! trust file bytes: the scanner reports the first invalid batch instead of
//! panicking, and the caller decides what to cut.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use glommio::io::DmaFile;

use super::appender::Appender;
use super::batch::{check_batch, BatchError, BatchHeader, HEADER_BYTES};
use super::error::{Result, StorageError};
use super::index::{OffsetIndex, TimeIndex};
use super::Offset;

/// Bytes read per scanner window.
const SCAN_WINDOW_BYTES: usize = 1 << 20;

pub(crate) struct Segment {
    pub base_offset: Offset,
    pub log_path: PathBuf,
    pub file: Rc<DmaFile>,
    pub size_bytes: u64,
    /// One past the last offset stored here (the base offset if empty).
    pub next_offset: Offset,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Largest batch max timestamp, -1 if none.
    pub max_timestamp_ms: i64,
    pub max_timestamp_offset: Offset,
    /// Time of the first append (or of reopening), for `segment.ms`.
    pub created_ms: i64,
    pub bytes_since_index: u64,
    pub appender: Option<Appender>,
    /// A buffered read-only descriptor for file regions (sendfile), opened
    /// on first use.
    pub buffered: Option<Arc<std::fs::File>>,
}

pub(crate) fn segment_file_name(base_offset: Offset, extension: &str) -> String {
    format!("{:020}.{extension}", base_offset.0)
}

pub(crate) fn with_extension(log_path: &Path, extension: &str) -> PathBuf {
    log_path.with_extension(extension)
}

impl Segment {
    pub fn new_empty(
        base_offset: Offset,
        log_path: PathBuf,
        file: Rc<DmaFile>,
        now_ms: i64,
    ) -> Self {
        Segment {
            base_offset,
            log_path,
            file,
            size_bytes: 0,
            next_offset: base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            max_timestamp_ms: -1,
            max_timestamp_offset: base_offset,
            created_ms: now_ms,
            bytes_since_index: 0,
            appender: None,
            buffered: None,
        }
    }

    pub fn index_path(&self) -> PathBuf {
        with_extension(&self.log_path, "index")
    }

    pub fn time_index_path(&self) -> PathBuf {
        with_extension(&self.log_path, "timeindex")
    }

    pub fn relative(&self, offset: Offset) -> u32 {
        let relative = offset.0 - self.base_offset.0;
        assert!((0..=u32::MAX as i64).contains(&relative));
        relative as u32
    }

    /// Whether `header` (already carrying its final base offset) can go into
    /// this segment without its relative offsets overflowing the index.
    pub fn fits_offsets(&self, header: &BatchHeader) -> bool {
        header.last_offset() - self.base_offset.0 < i32::MAX as i64
    }

    /// Records a batch stored at `position`: indexes, offsets, timestamps.
    pub fn note_batch(&mut self, header: &BatchHeader, position: u64, index_interval_bytes: u64) {
        assert!(header.base_offset >= self.next_offset.0);
        if self.bytes_since_index >= index_interval_bytes {
            let relative = self.relative(Offset(header.base_offset));
            self.index.append(relative, position as u32);
            let max_relative = self.relative(self.max_timestamp_offset);
            self.time_index
                .maybe_append(self.max_timestamp_ms, max_relative);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_bytes() as u64;
        if header.max_timestamp > self.max_timestamp_ms {
            self.max_timestamp_ms = header.max_timestamp;
            self.max_timestamp_offset = Offset(header.base_offset);
        }
        self.next_offset = Offset(header.last_offset() + 1);
        self.size_bytes = position + header.total_bytes() as u64;
    }

    /// Adds the final time-index entry Kafka writes when a segment closes.
    pub fn seal_time_index(&mut self) {
        if self.max_timestamp_ms >= 0 {
            let relative = self.relative(self.max_timestamp_offset);
            self.time_index
                .maybe_append(self.max_timestamp_ms, relative);
        }
    }

    /// The buffered descriptor for file regions. Opening is a blocking
    /// syscall, once per segment, on the first zero-copy read of it.
    pub fn buffered_file(&mut self) -> std::io::Result<Arc<std::fs::File>> {
        if let Some(file) = &self.buffered {
            return Ok(file.clone());
        }
        let file = Arc::new(std::fs::File::open(&self.log_path)?);
        self.buffered = Some(file.clone());
        Ok(file)
    }

    /// Bytes below this are in the file; above, in the appender's memory.
    pub fn readable_bytes(&mut self) -> u64 {
        match &mut self.appender {
            Some(appender) => appender.reap(),
            None => self.size_bytes,
        }
    }
}

/// One step of a [`Scanner`].
pub(crate) enum ScanStep {
    Batch {
        position: u64,
        header: BatchHeader,
        bytes: Bytes,
    },
    /// Clean end: the scan reached `end_bytes`.
    End,
    /// The bytes at `position` are not a valid next batch.
    Invalid { position: u64, reason: String },
}

/// Reads a segment file sequentially and validates each batch (length, magic,
/// CRC-32C, offsets increasing and within the segment's relative range).
pub(crate) struct Scanner {
    file: Rc<DmaFile>,
    path: PathBuf,
    base_offset: Offset,
    end_bytes: u64,
    position: u64,
    next_offset: Offset,
    window: Bytes,
    window_position: u64,
}

impl Scanner {
    pub fn new(
        file: Rc<DmaFile>,
        path: PathBuf,
        base_offset: Offset,
        start: (u64, Offset),
        end_bytes: u64,
    ) -> Self {
        Scanner {
            file,
            path,
            base_offset,
            end_bytes,
            position: start.0,
            next_offset: start.1,
            window: Bytes::new(),
            window_position: start.0,
        }
    }

    pub fn next_offset(&self) -> Offset {
        self.next_offset
    }

    async fn ensure(&mut self, len: usize) -> Result<()> {
        let window_end = self.window_position + self.window.len() as u64;
        if self.position >= self.window_position && self.position + len as u64 <= window_end {
            return Ok(());
        }
        let want = (len.max(SCAN_WINDOW_BYTES) as u64).min(self.end_bytes - self.position);
        let read = self
            .file
            .read_at(self.position, want as usize)
            .await
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.window = Bytes::copy_from_slice(&read);
        self.window_position = self.position;
        Ok(())
    }

    fn invalid(&self, reason: impl ToString) -> ScanStep {
        ScanStep::Invalid {
            position: self.position,
            reason: reason.to_string(),
        }
    }

    pub async fn next(&mut self) -> Result<ScanStep> {
        if self.position >= self.end_bytes {
            return Ok(ScanStep::End);
        }
        let left = self.end_bytes - self.position;
        if left < HEADER_BYTES as u64 {
            return Ok(self.invalid(format!("{left} trailing bytes")));
        }
        self.ensure(HEADER_BYTES).await?;
        let at = (self.position - self.window_position) as usize;
        let header = match BatchHeader::parse(&self.window[at..]) {
            Ok(header) => header,
            Err(error) => return Ok(self.invalid(error)),
        };
        if header.total_bytes() as u64 > left {
            return Ok(self.invalid(BatchError::Truncated {
                have_bytes: left as usize,
                need_bytes: header.total_bytes(),
            }));
        }
        if header.base_offset < self.next_offset.0
            || header.last_offset() - self.base_offset.0 >= i32::MAX as i64
            || self.position + header.total_bytes() as u64 > i32::MAX as u64
        {
            return Ok(self.invalid(format!("offset {} out of order", header.base_offset)));
        }
        self.ensure(header.total_bytes()).await?;
        let at = (self.position - self.window_position) as usize;
        if self.window.len() < at + header.total_bytes() {
            return Ok(self.invalid("short read: file ends inside the batch"));
        }
        let bytes = self.window.slice(at..at + header.total_bytes());
        if let Err(error) = check_batch(&bytes) {
            return Ok(self.invalid(error));
        }
        let position = self.position;
        self.position += header.total_bytes() as u64;
        self.next_offset = Offset(header.last_offset() + 1);
        Ok(ScanStep::Batch {
            position,
            header,
            bytes,
        })
    }
}
