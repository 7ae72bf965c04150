//! The partition log: segments in offset order, the append path, rolls,
//! durability, truncation and close.
//!
//! Owns: [`PartitionLog`] and its state (segments, log start and end
//! offsets, leader epochs, durability). Runs on the one shard that owns the
//! partition (`Rc`, not `Send`). Mutations of the segment list and of the
//! active segment are serialised by an async lock; no `RefCell` borrow is
//! held across an await. Must not know Kafka APIs beyond the batch format,
//! and must not serve or keep anything after a failed write: a failed log
//! refuses work until it is reopened (recovered).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::io::DmaFile;
use glommio::sync::Semaphore;

use super::appender::{Appender, BufferPool};
use super::batch::{self, BatchHeader};
use super::checkpoint::{self, EpochEntry};
use super::config::{LogConfig, TimestampType, ALIGN_BYTES};
use super::error::{Result, StorageError};
use super::notify::Completion;
use super::record_checks::{RecordChecks, TimestampWindow};
use super::recovery::RecoveryReport;
use super::segment::{segment_file_name, Segment};
use super::shard::ShardStorage;
use super::Offset;

/// What an append assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The timestamp written into the batches when the log uses
    /// LogAppendTime; `None` for CreateTime.
    pub log_append_time_ms: Option<i64>,
    pub log_start_offset: Offset,
    pub records: u64,
}

/// Whose batches an append writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AppendMode {
    /// A producer's: offsets assigned here, the leader epoch stamped.
    Leader,
    /// The leader's, on a follower: offsets and epochs kept.
    Replica,
}

/// What a leader checks in each record it is given: keys on a compacted
/// log, CreateTime timestamps against its clock. A follower stores what its
/// leader accepted and checks nothing.
fn record_checks(config: &LogConfig, mode: AppendMode, now_ms: i64) -> RecordChecks {
    if mode == AppendMode::Replica {
        return RecordChecks::default();
    }
    let timestamps = match config.timestamp_type {
        TimestampType::CreateTime => TimestampWindow::around(
            now_ms,
            config.timestamp_before_max_ms,
            config.timestamp_after_max_ms,
        ),
        TimestampType::LogAppendTime => None,
    };
    RecordChecks {
        require_keys: config.cleanup_policy.compacts(),
        timestamps,
    }
}

/// A partition's log on this shard. Cloning shares the same log.
#[derive(Clone)]
pub struct PartitionLog {
    pub(crate) inner: Rc<LogInner>,
}

pub(crate) struct LogInner {
    pub id: u64,
    pub dir: PathBuf,
    pub shard: ShardStorage,
    pub config: RefCell<LogConfig>,
    pub state: RefCell<LogState>,
    /// Serialises appends, rolls, truncation, retention and segment swaps.
    pub lock: Semaphore,
    pub durability: RefCell<Durability>,
    pub force_sync: Cell<bool>,
    /// End of the closed segments at the last compaction pass.
    pub compacted_end: Cell<Offset>,
    pub read_ahead: RefCell<super::read_ahead::ReadAhead>,
}

pub(crate) struct LogState {
    /// In base-offset order; the last one is active and has the appender.
    pub segments: Vec<Segment>,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    pub leader_epochs: Vec<EpochEntry>,
    pub failed: Option<String>,
    pub closed: bool,
    pub unsynced_records: u64,
    pub first_unsynced: Option<Instant>,
    pub recovery: RecoveryReport,
}

pub(crate) struct Durability {
    /// Every offset below this is on disk.
    pub durable_end: Offset,
    pub failed: Option<String>,
    pub waiters: Vec<Waker>,
}

/// One log's part of a group-commit round.
pub(crate) struct SyncJob {
    pub target: Offset,
    pub records: u64,
    pub completions: Vec<Completion>,
    pub file: Rc<DmaFile>,
}

impl LogInner {
    pub fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    pub fn check_usable(&self) -> Result<()> {
        let state = self.state.borrow();
        if state.closed {
            return Err(StorageError::Closed);
        }
        match &state.failed {
            Some(reason) => Err(StorageError::LogFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Marks the log failed and fails every durability waiter.
    pub fn fail(&self, reason: String) -> StorageError {
        tracing::error!(dir = ?self.dir, %reason, "partition log failed");
        self.state.borrow_mut().failed.get_or_insert(reason.clone());
        let waiters = {
            let mut durability = self.durability.borrow_mut();
            durability.failed.get_or_insert(reason.clone());
            std::mem::take(&mut durability.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
        StorageError::LogFailed(reason)
    }

    pub fn advance_durable(&self, end: Offset) {
        let waiters = {
            let mut durability = self.durability.borrow_mut();
            if end <= durability.durable_end {
                return;
            }
            durability.durable_end = end;
            std::mem::take(&mut durability.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    /// `None` if nothing is unsynced; else how long until a sync is due.
    pub fn sync_due_in(&self, now: Instant) -> Option<Duration> {
        let state = self.state.borrow();
        if state.closed || state.failed.is_some() {
            return None;
        }
        if self.force_sync.get() {
            return Some(Duration::ZERO);
        }
        if state.unsynced_records == 0 {
            return None;
        }
        let config = self.config.borrow();
        if state.unsynced_records >= config.flush_messages {
            return Some(Duration::ZERO);
        }
        let first = state.first_unsynced.unwrap_or(now);
        let deadline = config
            .flush_ms
            .map(|ms| first + Duration::from_millis(ms as u64));
        Some(deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(now)
        }))
    }

    /// Issues the active segment's tail write and collects what a sync of
    /// everything appended so far must wait for.
    pub fn prepare_sync(&self) -> Option<SyncJob> {
        let mut state = self.state.borrow_mut();
        if state.closed || state.failed.is_some() {
            return None;
        }
        let target = state.log_end_offset;
        // Without an appender a roll, truncation or close is sealing the
        // segment; it syncs and advances durability itself.
        state.segments.last()?.appender.as_ref()?;
        let records = std::mem::take(&mut state.unsynced_records);
        state.first_unsynced = None;
        self.force_sync.set(false);
        let segment = state.segments.last_mut().expect("checked above");
        let appender = segment.appender.as_mut().expect("checked above");
        appender.flush_tail();
        Some(SyncJob {
            target,
            records,
            completions: appender.pending_writes(),
            file: segment.file.clone(),
        })
    }

    pub fn finish_sync(&self, target: Offset, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.advance_durable(target),
            Err(reason) => {
                self.fail(reason);
            }
        }
    }

    fn appender_settings(&self) -> (Rc<BufferPool>, usize, u64) {
        let config = &self.shard.inner.config;
        (
            self.shard.inner.write_buffers.clone(),
            config.write_buffers_in_flight_max,
            config.preallocate_bytes,
        )
    }

    pub fn new_appender(
        &self,
        file: Rc<DmaFile>,
        path: PathBuf,
        size_bytes: u64,
        tail: &[u8],
    ) -> Appender {
        let (pool, in_flight_max, preallocate_bytes) = self.appender_settings();
        Appender::new(
            file,
            path,
            size_bytes,
            tail,
            pool,
            in_flight_max,
            preallocate_bytes,
        )
    }
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it if it was
    /// not closed cleanly. Uses blocking `std::fs` calls for listing and
    /// small files: call it at partition load, not on the request path.
    pub async fn open(
        dir: impl AsRef<Path>,
        config: LogConfig,
        shard: &ShardStorage,
    ) -> Result<PartitionLog> {
        super::recovery::open(dir.as_ref(), config, shard).await
    }

    /// The directory of a partition under the shard's data dir, Kafka's
    /// `<topic>-<partition>` layout.
    pub fn dir_for(shard: &ShardStorage, topic: &str, partition: i32) -> PathBuf {
        shard.config().data_dir.join(format!("{topic}-{partition}"))
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> LogConfig {
        self.inner.config.borrow().clone()
    }

    /// [`LogConfig::syncs_every_append`] of the current config, uncloned.
    pub fn syncs_every_append(&self) -> bool {
        self.inner.config.borrow().syncs_every_append()
    }

    /// Replaces the log's configuration (topic config change).
    pub fn set_config(&self, config: LogConfig) {
        *self.inner.config.borrow_mut() = config;
    }

    pub fn log_start_offset(&self) -> Offset {
        self.inner.state.borrow().log_start_offset
    }

    pub fn log_end_offset(&self) -> Offset {
        self.inner.state.borrow().log_end_offset
    }

    /// Every offset below this is on disk.
    pub fn durable_end_offset(&self) -> Offset {
        self.inner.durability.borrow().durable_end
    }

    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.state.borrow().recovery.clone()
    }

    /// Base offsets of the segments, oldest first; the last is active.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        let state = self.inner.state.borrow();
        state.segments.iter().map(|s| s.base_offset).collect()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .state
            .borrow()
            .segments
            .iter()
            .map(|s| s.size_bytes)
            .sum()
    }

    /// Appends the batches of one produce payload, accepted whole or refused
    /// whole. Assigns offsets from the log end offset and, for
    /// LogAppendTime, stamps `now_ms`. Returns once the bytes are in the
    /// shard's write path; await [`Self::wait_durable`] for disk.
    pub async fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.append_with(records, now_ms, AppendMode::Leader).await
    }

    /// A follower's append: the leader's batches as they are, at the
    /// leader's offsets, which must continue this log's end; leader epochs
    /// found in them start new entries of the epoch cache.
    pub async fn append_replica(&self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.append_with(records, now_ms, AppendMode::Replica).await
    }

    async fn append_with(
        &self,
        records: &[u8],
        now_ms: i64,
        mode: AppendMode,
    ) -> Result<AppendInfo> {
        let config = self.config();
        let batches = batch::validate_payload(
            records,
            config.max_message_bytes,
            record_checks(&config, mode, now_ms),
        )?;
        let _permit = self.exclusive().await?;
        self.inner.check_usable()?;
        let base_offset = self.log_end_offset();
        let log_append_time = config.timestamp_type == TimestampType::LogAppendTime;
        let epoch = self
            .inner
            .state
            .borrow()
            .leader_epochs
            .last()
            .map(|e| e.epoch);
        let mut payload = BytesMut::from(records);
        let mut headers = Vec::with_capacity(batches.len());
        let mut new_epochs = Vec::new();
        let mut next = base_offset.0;
        for valid in &batches {
            let mut header = valid.header;
            let bytes = &mut payload[valid.start..valid.start + header.total_bytes()];
            match mode {
                AppendMode::Leader => {
                    batch::set_base_offset(bytes, next);
                    header.base_offset = next;
                    if let Some(epoch) = epoch {
                        batch::set_partition_leader_epoch(bytes, epoch);
                        header.partition_leader_epoch = epoch;
                    }
                    if log_append_time {
                        batch::set_log_append_time(bytes, now_ms);
                        header.max_timestamp = now_ms;
                    }
                }
                AppendMode::Replica => {
                    if header.base_offset != next {
                        return Err(StorageError::OffsetOutOfRange {
                            offset: Offset(header.base_offset),
                            log_start_offset: self.log_start_offset(),
                            log_end_offset: Offset(next),
                        });
                    }
                    let known = new_epochs.last().copied().or(epoch).unwrap_or(-1);
                    if header.partition_leader_epoch > known {
                        new_epochs.push(header.partition_leader_epoch);
                        self.note_leader_epoch(header.partition_leader_epoch, Offset(next));
                    }
                }
            }
            next = header.last_offset() + 1;
            headers.push((valid.start, header));
        }
        if !new_epochs.is_empty() {
            let entries = self.leader_epochs();
            checkpoint::write_leader_epochs(&self.inner.dir, &entries).await?;
        }
        let payload = payload.freeze();
        let mut records_count = 0;
        for (start, header) in headers {
            if let Some(reason) = self.roll_reason(&header, now_ms, &config) {
                self.roll(now_ms).await?;
                tracing::info!(
                    log = %self.inner.dir.display(),
                    base_offset = self.log_end_offset().0,
                    reason,
                    "segment rolled"
                );
            }
            self.append_batch(
                payload.slice(start..start + header.total_bytes()),
                &header,
                &config,
                now_ms,
            );
            records_count += header.record_count as u64;
            self.await_backpressure().await?;
        }
        self.note_unsynced(records_count);
        Ok(AppendInfo {
            base_offset,
            last_offset: Offset(next - 1),
            log_append_time_ms: log_append_time.then_some(now_ms),
            log_start_offset: self.log_start_offset(),
            records: records_count,
        })
    }

    /// Why the active segment must be closed before `header`'s batch, if
    /// it must: `segment.bytes`, `segment.ms`, or offsets its index cannot
    /// hold relative to its base.
    fn roll_reason(
        &self,
        header: &BatchHeader,
        now_ms: i64,
        config: &LogConfig,
    ) -> Option<&'static str> {
        let state = self.inner.state.borrow();
        let active = state.segments.last().expect("active segment");
        if active.size_bytes == 0 {
            None
        } else if active.size_bytes + header.total_bytes() as u64
            > config.segment_bytes.min(i32::MAX as u64)
        {
            Some("segment.bytes")
        } else if now_ms - active.created_ms >= config.segment_ms {
            Some("segment.ms")
        } else if !active.fits_offsets(header) {
            Some("offset range")
        } else {
            None
        }
    }

    fn append_batch(&self, bytes: Bytes, header: &BatchHeader, config: &LogConfig, now_ms: i64) {
        let mut state = self.inner.state.borrow_mut();
        let active = state.segments.last_mut().expect("active segment");
        let position = active.size_bytes;
        if position == 0 {
            // `segment.ms` counts from the first append, on the caller's clock.
            active.created_ms = now_ms;
        }
        let appender = active
            .appender
            .as_mut()
            .expect("active segment has an appender");
        appender.append(&bytes);
        active.note_batch(header, position, config.index_interval_bytes);
        assert_eq!(
            active.size_bytes,
            active.appender.as_ref().map_or(0, |a| a.size_bytes())
        );
        state.log_end_offset = Offset(header.last_offset() + 1);
        drop(state);
        let mut cache = self.inner.shard.inner.cache.borrow_mut();
        cache.insert(
            self.inner.id,
            header.base_offset,
            header.last_offset(),
            bytes,
        );
    }

    async fn await_backpressure(&self) -> Result<()> {
        let wait = {
            let mut state = self.inner.state.borrow_mut();
            let appender = state.segments.last_mut().and_then(|s| s.appender.as_mut());
            match appender {
                Some(appender) => match appender.failed() {
                    Some(reason) => return Err(self.inner.fail(reason.to_string())),
                    None => appender.backpressure(),
                },
                None => None,
            }
        };
        if let Some(completion) = wait {
            completion
                .wait()
                .await
                .map_err(|reason| self.inner.fail(reason))?;
        }
        Ok(())
    }

    fn note_unsynced(&self, records: u64) {
        let mut state = self.inner.state.borrow_mut();
        state.unsynced_records += records;
        state.first_unsynced.get_or_insert_with(Instant::now);
        drop(state);
        self.inner.shard.inner.flusher.mark_dirty(&self.inner);
    }

    /// Resolves once every offset up to and including `offset` is on disk,
    /// or with an error if the log failed first.
    pub fn wait_durable(&self, offset: Offset) -> DurableFuture {
        DurableFuture {
            log: self.inner.clone(),
            offset,
        }
    }

    /// Syncs everything appended so far (regardless of the flush policy) and
    /// waits for it.
    pub async fn flush(&self) -> Result<()> {
        let end = self.log_end_offset();
        if self.durable_end_offset() >= end {
            return Ok(());
        }
        self.inner.force_sync.set(true);
        self.inner.shard.inner.flusher.mark_dirty(&self.inner);
        self.wait_durable(Offset(end.0 - 1)).await
    }

    /// Closes the active segment and opens a new one at the log end offset.
    pub async fn roll(&self, now_ms: i64) -> Result<()> {
        let outcome = self.roll_inner(now_ms).await;
        outcome.map_err(|error| self.inner.fail(error.to_string()))
    }

    async fn roll_inner(&self, now_ms: i64) -> Result<()> {
        let empty = self
            .inner
            .state
            .borrow()
            .segments
            .last()
            .is_some_and(|s| s.size_bytes == 0);
        if empty {
            return Ok(());
        }
        let sealed_end = self.seal_active(false).await?;
        self.inner.advance_durable(sealed_end);
        let segment = self.new_segment(self.log_end_offset(), now_ms).await?;
        self.inner.state.borrow_mut().segments.push(segment);
        Ok(())
    }

    /// Creates an empty segment file at `base`, with an appender.
    pub(crate) async fn new_segment(&self, base: Offset, now_ms: i64) -> Result<Segment> {
        let path = self.inner.dir.join(segment_file_name(base, "log"));
        let file = Rc::new(checkpoint::create_dma_file(&path).await?);
        checkpoint::sync_directory(&self.inner.dir).await?;
        let mut segment = Segment::new_empty(base, path.clone(), file.clone(), now_ms);
        segment.appender = Some(self.inner.new_appender(file, path, 0, &[]));
        Ok(segment)
    }

    /// Writes out and syncs the active segment, trims its preallocation,
    /// writes its index files, and drops its appender. With `keep_open` the
    /// appender is recreated (close keeps none). Returns its next offset.
    pub(crate) async fn seal_active(&self, keep_open: bool) -> Result<Offset> {
        let (completions, file, size_bytes) = {
            let mut state = self.inner.state.borrow_mut();
            let active = state.segments.last_mut().expect("active segment");
            let Some(appender) = active.appender.as_mut() else {
                return Ok(active.next_offset);
            };
            appender.flush_tail();
            (
                appender.pending_writes(),
                active.file.clone(),
                active.size_bytes,
            )
        };
        for completion in completions {
            completion.wait().await.map_err(StorageError::LogFailed)?;
        }
        let path = self.active_path();
        file.truncate(size_bytes)
            .await
            .map_err(|e| StorageError::io(&path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| StorageError::io(&path, e))?;
        let (index_path, index, time_index_path, time_index, next_offset) = {
            let mut state = self.inner.state.borrow_mut();
            let active = state.segments.last_mut().expect("active segment");
            active.seal_time_index();
            active.appender = None;
            (
                active.index_path(),
                active.index.encode(),
                active.time_index_path(),
                active.time_index.encode(),
                active.next_offset,
            )
        };
        checkpoint::write_file_durably(&index_path, &index).await?;
        checkpoint::write_file_durably(&time_index_path, &time_index).await?;
        if keep_open {
            self.reopen_active().await?;
        }
        Ok(next_offset)
    }

    fn active_path(&self) -> PathBuf {
        let state = self.inner.state.borrow();
        state
            .segments
            .last()
            .expect("active segment")
            .log_path
            .clone()
    }

    /// Gives the last segment an appender again, continuing at its size.
    pub(crate) async fn reopen_active(&self) -> Result<()> {
        let (file, path, size_bytes) = {
            let state = self.inner.state.borrow();
            let active = state.segments.last().expect("active segment");
            (
                active.file.clone(),
                active.log_path.clone(),
                active.size_bytes,
            )
        };
        let tail = read_tail(&file, &path, size_bytes).await?;
        let appender = self.inner.new_appender(file, path, size_bytes, &tail);
        let mut state = self.inner.state.borrow_mut();
        state.segments.last_mut().expect("active segment").appender = Some(appender);
        Ok(())
    }

    /// Syncs everything, writes indexes, checkpoints and the clean-shutdown
    /// marker, then refuses further work.
    pub async fn close(&self) -> Result<()> {
        let _permit = self.exclusive().await?;
        self.inner.check_usable()?;
        let end = self
            .seal_active(false)
            .await
            .map_err(|e| self.inner.fail(e.to_string()))?;
        self.inner.advance_durable(end);
        checkpoint::write_log_start_offset(&self.inner.dir, self.log_start_offset()).await?;
        let marker = checkpoint::clean_shutdown_path(&self.inner.dir);
        checkpoint::write_file_durably(&marker, b"").await?;
        self.inner.state.borrow_mut().closed = true;
        self.inner.lock.close();
        Ok(())
    }

    /// Closes the log and deletes its directory (partition deleted or moved).
    pub async fn remove(&self) -> Result<()> {
        let _permit = self.exclusive().await?;
        {
            let mut state = self.inner.state.borrow_mut();
            state.closed = true;
            for segment in &mut state.segments {
                segment.appender = None;
            }
        }
        self.inner.lock.close();
        let cache = &self.inner.shard.inner.cache;
        cache
            .borrow_mut()
            .invalidate(self.inner.id, i64::MIN, i64::MAX);
        // Rare, operator-driven path: a blocking directory removal is accepted.
        std::fs::remove_dir_all(&self.inner.dir).map_err(|e| StorageError::io(&self.inner.dir, e))
    }

    /// Holds the log's one-writer lock: appends, truncation, retention,
    /// compaction, close and remove each take it for their whole step.
    pub(crate) async fn exclusive(&self) -> Result<glommio::sync::Permit<'_>> {
        self.inner
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::Closed)
    }

    /// Removes everything at and after `offset` (the whole batch containing
    /// it). The new log end offset is that batch's base offset.
    pub async fn truncate_to(&self, offset: Offset) -> Result<Offset> {
        let _permit = self.exclusive().await?;
        self.inner.check_usable()?;
        let outcome = super::truncate::truncate_to(self, offset).await;
        outcome.map_err(|error| self.inner.fail(error.to_string()))
    }

    /// Kafka DeleteRecords: advances the log start offset to `offset` (at
    /// most the log end offset) and deletes segments wholly below it.
    pub async fn delete_records_before(&self, offset: Offset) -> Result<Offset> {
        let _permit = self.exclusive().await?;
        self.inner.check_usable()?;
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        if offset > start {
            self.inner.state.borrow_mut().log_start_offset = offset;
            let cache = &self.inner.shard.inner.cache;
            cache
                .borrow_mut()
                .invalidate(self.inner.id, i64::MIN, offset.0);
            checkpoint::write_log_start_offset(&self.inner.dir, offset).await?;
        }
        super::retention::delete_segments_below_start(self).await?;
        Ok(self.log_start_offset())
    }
}

/// Reads the last partial block of a segment, for a new appender.
pub(crate) async fn read_tail(file: &DmaFile, path: &Path, size_bytes: u64) -> Result<Vec<u8>> {
    let partial = (size_bytes % ALIGN_BYTES) as usize;
    if partial == 0 {
        return Ok(Vec::new());
    }
    let start = size_bytes - partial as u64;
    let read = file
        .read_at_aligned(start, ALIGN_BYTES as usize)
        .await
        .map_err(|e| StorageError::io(path, e))?;
    if read.len() < partial {
        return Err(StorageError::CorruptOnDisk {
            path: path.to_path_buf(),
            position_bytes: start,
            reason: "short read of the last block".into(),
        });
    }
    Ok(read[..partial].to_vec())
}

/// Future of [`PartitionLog::wait_durable`].
pub struct DurableFuture {
    log: Rc<LogInner>,
    offset: Offset,
}

impl Future for DurableFuture {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut durability = self.log.durability.borrow_mut();
        if durability.durable_end > self.offset {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &durability.failed {
            return Poll::Ready(Err(StorageError::LogFailed(reason.clone())));
        }
        if self.log.state.borrow().closed {
            return Poll::Ready(Err(StorageError::Closed));
        }
        durability.waiters.push(cx.waker().clone());
        Poll::Pending
    }
}
