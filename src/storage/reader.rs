//! The read path: by offset (from the shard cache, or as a file region for
//! zero-copy, or from disk into memory) and by timestamp.
//!
//! Owns: [`ReadResult`], [`FileRegion`] and the batch-locating walk (segment
//! -> index entry -> headers until the batch containing the offset). Runs on
//! the shard owning the log. Returns whole batches only, starting with the
//! batch that contains the requested offset. Must not serve bytes it has not
//! checked: memory reads verify every batch's CRC; file regions cover only
//! batches whose headers were read and only bytes already written to disk.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use glommio::io::DmaFile;

use super::batch::{check_batch, BatchError, BatchHeader, HEADER_BYTES};
use super::cache::Limit;
use super::error::{Result, StorageError};
use super::log::{LogInner, PartitionLog};
use super::read_ahead;
use super::Offset;

/// Bytes read per header-walk window.
const WALK_WINDOW_BYTES: u64 = 16 << 10;

/// A byte range of a segment file holding whole batches, for `sendfile`.
///
/// `file` is a second, buffered (non-O_DIRECT) descriptor of the segment,
/// opened when the region was made: send from it, not from a fresh open of
/// `path`, because compaction may rename a rewritten file over `path` (or
/// retention delete it) before the bytes are sent; the descriptor keeps the
/// bytes the region describes. `Arc` so the region can cross shards.
#[derive(Clone, Debug)]
pub struct FileRegion {
    pub path: PathBuf,
    pub file: Arc<std::fs::File>,
    pub position: u64,
    pub len: u64,
    /// Base offset of the first batch in the region.
    pub first_offset: Offset,
    /// One past the last offset of the last batch in the region.
    pub next_offset: Offset,
    /// Where the region may be cut short and still hold whole batches: the
    /// batch ends the read saw (lengths from `position`, with the offset
    /// after each), ascending; the last is `len`. Not every batch end is
    /// here (the read jumps over batches with the sparse index), so a cut
    /// to a budget may keep less than the most that fits.
    pub cuts: Vec<(u64, Offset)>,
}

impl PartialEq for FileRegion {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.path,
            self.position,
            self.len,
            self.first_offset,
            self.next_offset,
        ) == (
            &other.path,
            other.position,
            other.len,
            other.first_offset,
            other.next_offset,
        )
    }
}

impl Eq for FileRegion {}

impl FileRegion {
    /// The region cut to its `cut`-th known batch end (see `cuts`).
    pub fn cut(mut self, cut: usize) -> FileRegion {
        if let Some(&(len, next_offset)) = self.cuts.get(cut) {
            self.len = len;
            self.next_offset = next_offset;
            self.cuts.truncate(cut + 1);
        }
        self
    }
}

#[derive(Clone, Debug)]
pub enum ReadData {
    /// Nothing to return (offset at the log end or bound).
    Empty,
    /// Whole batches, in order, in memory (the shard cache or a disk read).
    Memory(Vec<Bytes>),
    /// Whole batches to send from the file.
    File(FileRegion),
}

#[derive(Clone, Debug)]
pub struct ReadResult {
    pub data: ReadData,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

impl ReadData {
    /// Bytes this read returns.
    pub fn len_bytes(&self) -> u64 {
        match self {
            ReadData::Empty => 0,
            ReadData::Memory(batches) => batches.iter().map(|b| b.len() as u64).sum(),
            ReadData::File(region) => region.len,
        }
    }
}

/// Options of [`PartitionLog::read_with`].
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    pub max_bytes: usize,
    /// Return the first batch even when it is larger than `max_bytes`.
    pub min_one_batch: bool,
    /// Return only batches ending below this (the high watermark).
    pub upper_offset: Option<Offset>,
    /// On a cache miss, answer a [`FileRegion`] instead of reading the bytes.
    pub zero_copy: bool,
}

/// A snapshot of what a read needs of one segment.
#[derive(Clone)]
pub(super) struct SegmentView {
    base_offset: Offset,
    path: PathBuf,
    file: Rc<DmaFile>,
    size_bytes: u64,
}

fn corrupt(view: &SegmentView, position: u64, reason: impl ToString) -> StorageError {
    StorageError::CorruptOnDisk {
        path: view.path.clone(),
        position_bytes: position,
        reason: reason.to_string(),
    }
}

impl LogInner {
    fn with_segment<R>(
        &self,
        base: Offset,
        f: impl FnOnce(&mut super::segment::Segment) -> R,
    ) -> Option<R> {
        let mut state = self.state.borrow_mut();
        let index = state.segments.iter().position(|s| s.base_offset == base)?;
        Some(f(&mut state.segments[index]))
    }

    pub(super) fn view(&self, index: usize) -> Option<SegmentView> {
        let state = self.state.borrow();
        let segment = state.segments.get(index)?;
        Some(SegmentView {
            base_offset: segment.base_offset,
            path: segment.log_path.clone(),
            file: segment.file.clone(),
            size_bytes: segment.size_bytes,
        })
    }

    fn readable_bytes(&self, view: &SegmentView) -> u64 {
        self.with_segment(view.base_offset, |s| s.readable_bytes())
            .unwrap_or(0)
    }

    /// Reads `[position, position + len)` of a segment: the part already
    /// written from the file, the rest from the appender's memory.
    pub(super) async fn read_range(
        &self,
        view: &SegmentView,
        position: u64,
        len: usize,
    ) -> Result<Bytes> {
        let end = position + len as u64;
        let readable = self.readable_bytes(view);
        // Past the written end, from the appender's memory, before the
        // disk read awaits (the appender may write it out meanwhile).
        let mut unwritten = Vec::new();
        if end > readable {
            let from = position.max(readable);
            unwritten.resize((end - from) as usize, 0);
            let copied = self.with_segment(view.base_offset, |s| {
                s.appender
                    .as_ref()
                    .is_some_and(|a| a.copy_unwritten(from, &mut unwritten))
            });
            if copied != Some(true) {
                return Err(corrupt(view, from, "range past the written end"));
            }
        }
        if position >= readable {
            return Ok(Bytes::from(unwritten));
        }
        let disk_len = (end.min(readable) - position) as usize;
        let read = view
            .file
            .read_at(position, disk_len)
            .await
            .map_err(|e| StorageError::io(&view.path, e))?;
        if read.len() < disk_len {
            return Err(corrupt(view, position, "short read"));
        }
        // Filled by extending, not zeroed first: a cold read's bytes are
        // copied once, from the direct-I/O buffer.
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&read[..disk_len]);
        out.extend_from_slice(&unwritten);
        Ok(Bytes::from(out))
    }
}

/// The whole, CRC-checked batches at the start of `bytes`, in order, and
/// the error that ended the walk before the end of `bytes` (a batch cut by
/// the end is one).
pub(super) fn whole_batches(bytes: &Bytes) -> (Vec<(BatchHeader, Bytes)>, Option<BatchError>) {
    let mut batches = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match check_batch(&bytes[at..]) {
            Ok(header) => {
                let len = header.total_bytes();
                batches.push((header, bytes.slice(at..at + len)));
                at += len;
            }
            Err(error) => return (batches, Some(error)),
        }
    }
    (batches, None)
}

impl LogInner {
    /// Counts a disk read of `read_bytes` (`ahead`: by read-ahead) and
    /// caches `batches`, read from this log, unless an invalidation landed
    /// since `generation` (see `ReadCache::generation`); whether it cached.
    pub(super) fn cache_disk_read(
        &self,
        generation: u64,
        read_bytes: usize,
        ahead: bool,
        batches: &[(BatchHeader, Bytes)],
    ) -> bool {
        let mut cache = self.shard.inner.cache.borrow_mut();
        cache.count_disk_read(read_bytes, ahead);
        if cache.generation() != generation {
            return false;
        }
        for (header, batch) in batches {
            let (base, last) = (header.base_offset, header.last_offset());
            cache.insert(self.id, base, last, batch.clone());
        }
        true
    }
}

/// Walks batch headers of one segment through a window of bytes.
struct Walker<'a> {
    log: &'a LogInner,
    view: SegmentView,
    window: Bytes,
    window_position: u64,
}

impl<'a> Walker<'a> {
    fn new(log: &'a LogInner, view: SegmentView) -> Self {
        Walker {
            log,
            view,
            window: Bytes::new(),
            window_position: 0,
        }
    }

    async fn header_at(&mut self, position: u64) -> Result<BatchHeader> {
        let size = self.view.size_bytes;
        if position + HEADER_BYTES as u64 > size {
            return Err(corrupt(
                &self.view,
                position,
                "batch header past segment end",
            ));
        }
        let window_end = self.window_position + self.window.len() as u64;
        if position < self.window_position || position + HEADER_BYTES as u64 > window_end {
            let len = WALK_WINDOW_BYTES.min(size - position) as usize;
            self.window = self.log.read_range(&self.view, position, len).await?;
            self.window_position = position;
        }
        let at = (position - self.window_position) as usize;
        let header =
            BatchHeader::parse(&self.window[at..]).map_err(|e| corrupt(&self.view, position, e))?;
        if header.total_bytes() as u64 > size - position {
            return Err(corrupt(&self.view, position, "batch past segment end"));
        }
        Ok(header)
    }

    /// The first batch at or after `position` whose last offset is at least
    /// `target` and that `accept` takes.
    async fn find(
        &mut self,
        mut position: u64,
        target: i64,
        accept: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>> {
        while position < self.view.size_bytes {
            let header = self.header_at(position).await?;
            if header.last_offset() >= target && accept(&header) {
                return Ok(Some((position, header)));
            }
            position += header.total_bytes() as u64;
        }
        Ok(None)
    }
}

impl PartitionLog {
    /// Reads whole batches from the one containing `offset`: from the shard
    /// cache if it holds it, else as a [`FileRegion`] for zero-copy.
    pub async fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult> {
        let options = ReadOptions {
            max_bytes,
            min_one_batch,
            upper_offset: None,
            zero_copy: true,
        };
        self.read_with(offset, options).await
    }

    pub async fn read_with(&self, offset: Offset, options: ReadOptions) -> Result<ReadResult> {
        self.inner.check_usable()?;
        let (log_start_offset, log_end_offset) = (self.log_start_offset(), self.log_end_offset());
        if offset < log_start_offset || offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let upper = options
            .upper_offset
            .unwrap_or(log_end_offset)
            .min(log_end_offset);
        let limit = Limit {
            max_bytes: options.max_bytes,
            min_one_batch: options.min_one_batch,
            upper_offset: upper.0,
        };
        let data = if offset >= upper {
            ReadData::Empty
        } else {
            self.read_batches(offset, limit, options.zero_copy).await?
        };
        Ok(ReadResult {
            data,
            log_start_offset,
            log_end_offset,
        })
    }

    async fn read_batches(
        &self,
        offset: Offset,
        limit: Limit,
        zero_copy: bool,
    ) -> Result<ReadData> {
        if let Some(cached) = self.cached(offset, limit, zero_copy) {
            return Ok(ReadData::Memory(cached));
        }
        if !zero_copy {
            // Read-ahead may be reading this very offset: wait for it
            // rather than read the same bytes again.
            if let Some(landed) = read_ahead::in_flight_for(&self.inner, offset.0) {
                let _ = landed.acquire(1).await;
                if let Some(cached) = self.cached(offset, limit, zero_copy) {
                    return Ok(ReadData::Memory(cached));
                }
            }
        }
        let mut segment_index = {
            let state = self.inner.state.borrow();
            state
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1)
        };
        while let Some(view) = self.inner.view(segment_index) {
            let start = self.index_start(&view, offset);
            let mut walker = Walker::new(&self.inner, view.clone());
            if let Some((position, first)) = walker.find(start, offset.0, |_| true).await? {
                if !limit.admits(0, 0, first.total_bytes(), first.last_offset()) {
                    return Ok(ReadData::Empty);
                }
                if zero_copy {
                    if let Some(region) = self.region(&mut walker, position, &first, limit).await? {
                        return Ok(ReadData::File(region));
                    }
                }
                return self.read_to_memory(&view, position, &first, limit).await;
            }
            segment_index += 1;
        }
        Ok(ReadData::Empty)
    }

    /// The cached run of batches from `offset`, if any; a reader into
    /// memory that is past the read-ahead trigger has it read further.
    fn cached(&self, offset: Offset, limit: Limit, zero_copy: bool) -> Option<Vec<Bytes>> {
        let cached = self
            .inner
            .shard
            .inner
            .cache
            .borrow_mut()
            .read(self.inner.id, offset.0, limit);
        let last = cached.last()?;
        if !zero_copy {
            if let Ok(header) = BatchHeader::parse(last) {
                read_ahead::extend(&self.inner, header.last_offset() + 1);
            }
        }
        Some(cached)
    }

    /// Position of the index entry at or below `offset` in a segment.
    fn index_start(&self, view: &SegmentView, offset: Offset) -> u64 {
        let relative = (offset.0 - view.base_offset.0).clamp(0, u32::MAX as i64) as u32;
        self.inner
            .with_segment(view.base_offset, |s| s.index.lookup(relative))
            .flatten()
            .map_or(0, |(_, position)| position as u64)
    }

    /// The file region of whole, written batches from `position`, or `None`
    /// if even the first batch is not in the file yet.
    async fn region(
        &self,
        walker: &mut Walker<'_>,
        position: u64,
        first: &BatchHeader,
        limit: Limit,
    ) -> Result<Option<FileRegion>> {
        let view = walker.view.clone();
        let readable = self.inner.readable_bytes(&view);
        let mut end = position + first.total_bytes() as u64;
        if end > readable {
            return Ok(None);
        }
        let mut next_offset = first.last_offset() + 1;
        let mut cuts = vec![(end - position, Offset(next_offset))];
        // Jump over whole batches with the sparse index, then walk headers.
        let bound = (position + limit.max_bytes as u64).min(readable);
        let jump = self
            .inner
            .with_segment(view.base_offset, |s| s.index.lookup_position(bound as u32));
        if let Some(Some((relative, jump_position))) = jump {
            let jump_offset = view.base_offset.0 + relative as i64;
            if jump_position as u64 > end && jump_offset <= limit.upper_offset {
                end = jump_position as u64;
                next_offset = jump_offset;
                cuts.push((end - position, Offset(next_offset)));
            }
        }
        while end < readable {
            let header = walker.header_at(end).await?;
            let len = header.total_bytes();
            let taken = (end - position) as usize;
            if !limit.admits(1, taken, len, header.last_offset()) || end + len as u64 > readable {
                break;
            }
            end += len as u64;
            next_offset = header.last_offset() + 1;
            cuts.push((end - position, Offset(next_offset)));
        }
        // The descriptor must be of the file the walk read: if the segment
        // was swapped meanwhile (compaction), answer from memory instead.
        let file = self.inner.with_segment(view.base_offset, |s| {
            Rc::ptr_eq(&s.file, &view.file).then(|| s.buffered_file())
        });
        let file = match file.flatten() {
            Some(file) => file.map_err(|e| StorageError::io(&view.path, e))?,
            None => return Ok(None),
        };
        Ok(Some(FileRegion {
            path: view.path.clone(),
            file,
            position,
            len: end - position,
            first_offset: Offset(first.base_offset),
            next_offset: Offset(next_offset),
            cuts,
        }))
    }

    /// Reads whole batches from `position` into memory, verifying each one's
    /// CRC, and puts every whole batch read in the shard cache (those past
    /// the limit too: they are what a forward reader asks for next), then
    /// has the read-ahead go on from there.
    async fn read_to_memory(
        &self,
        view: &SegmentView,
        position: u64,
        first: &BatchHeader,
        limit: Limit,
    ) -> Result<ReadData> {
        let want = limit.max_bytes.max(first.total_bytes()) as u64;
        let len = want.min(view.size_bytes - position) as usize;
        let generation = self.inner.shard.inner.cache.borrow().generation();
        let bytes = self.inner.read_range(view, position, len).await?;
        let (read, error) = whole_batches(&bytes);
        if let (true, Some(error)) = (read.is_empty(), error) {
            return Err(corrupt(view, position, error));
        }
        // What was read before an invalidation landed is served (as a read
        // racing the invalidation would be) but not cached.
        let cached = self
            .inner
            .cache_disk_read(generation, bytes.len(), false, &read);
        let mut batches = Vec::new();
        let mut taken = 0;
        for (header, batch) in &read {
            if !limit.admits(batches.len(), taken, batch.len(), header.last_offset()) {
                break;
            }
            taken += batch.len();
            batches.push(batch.clone());
        }
        if let (true, Some((last, _))) = (cached, read.last()) {
            let end = position + read.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
            let next_offset = last.last_offset() + 1;
            read_ahead::after_disk_read(&self.inner, view.base_offset.0, end, next_offset);
        }
        Ok(ReadData::Memory(batches))
    }

    /// Kafka ListOffsets by timestamp: the earliest offset whose record
    /// timestamp is at least `timestamp_ms`, with that timestamp; `None` if
    /// every record is older.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(Offset, i64)>> {
        self.inner.check_usable()?;
        let log_start = self.log_start_offset();
        let mut segment_index = 0;
        loop {
            let found = {
                let state = self.inner.state.borrow();
                state.segments[segment_index.min(state.segments.len())..]
                    .iter()
                    .position(|s| s.max_timestamp_ms >= timestamp_ms && s.next_offset > log_start)
                    .map(|i| i + segment_index)
            };
            let Some(index) = found else {
                return Ok(None);
            };
            let Some(view) = self.inner.view(index) else {
                return Ok(None);
            };
            if let Some((position, header)) =
                self.find_by_time(&view, timestamp_ms, log_start).await?
            {
                return self
                    .refine_by_time(&view, position, &header, timestamp_ms, log_start)
                    .await;
            }
            segment_index = index + 1;
        }
    }

    /// The first batch of a segment at or after the log start holding a
    /// timestamp at or after `timestamp_ms`.
    async fn find_by_time(
        &self,
        view: &SegmentView,
        timestamp_ms: i64,
        log_start: Offset,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let start_offset = self
            .inner
            .with_segment(view.base_offset, |s| {
                s.time_index.lookup_below(timestamp_ms)
            })
            .flatten()
            .map_or(view.base_offset, |(_, relative)| {
                Offset(view.base_offset.0 + relative as i64)
            });
        let target = log_start.max(start_offset);
        let start = self.index_start(view, target);
        let mut walker = Walker::new(&self.inner, view.clone());
        let accept = |h: &BatchHeader| h.max_timestamp >= timestamp_ms;
        walker.find(start, target.0, accept).await
    }

    /// The first record of a batch at or after `timestamp_ms` (and the log
    /// start).
    async fn refine_by_time(
        &self,
        view: &SegmentView,
        position: u64,
        header: &BatchHeader,
        timestamp_ms: i64,
        log_start: Offset,
    ) -> Result<Option<(Offset, i64)>> {
        let view = view.clone();
        let floor = header.base_offset.max(log_start.0);
        if header.is_log_append_time() {
            return Ok(Some((Offset(floor), header.max_timestamp)));
        }
        let mut bytes = self
            .inner
            .read_range(&view, position, header.total_bytes())
            .await?;
        check_batch(&bytes).map_err(|e| corrupt(&view, position, e))?;
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
            .map_err(|e| corrupt(&view, position, e))?;
        let record = set
            .records
            .iter()
            .find(|r| r.timestamp >= timestamp_ms && r.offset >= floor);
        Ok(Some(match record {
            Some(record) => (Offset(record.offset), record.timestamp),
            None => (Offset(floor), header.max_timestamp),
        }))
    }
}
