//! Opening a partition directory: listing segments, loading or rebuilding
//! indexes, and recovering after an unclean shutdown.
//!
//! Owns: [`RecoveryReport`] and the open procedure. With the clean-shutdown
//! marker, indexes are trusted (if they decode) and only each segment's tail
//! after its last index entry is read. Without it, the active segment is
//! scanned whole, every batch's CRC checked, and the file cut at the first
//! invalid byte (a torn or corrupt tail, or preallocated zeros). Closed
//! segments were synced when they rolled; their indexes are checked and
//! rebuilt by a full scan if missing or damaged. Runs on the owning shard at
//! partition load; uses blocking `std::fs` for directory listing and small
//! files (acceptable at open, not on the request path). Never panics on what
//! it reads.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::sync::Semaphore;

use super::checkpoint::{self, write_file_durably};
use super::config::LogConfig;
use super::error::{Result, StorageError};
use super::index::{OffsetIndex, TimeIndex};
use super::log::{read_tail, Durability, LogInner, LogState, PartitionLog};
use super::segment::{segment_file_name, ScanStep, Scanner, Segment};
use super::shard::ShardStorage;
use super::Offset;

/// One cut recovery made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub segment_base_offset: Offset,
    pub position_bytes: u64,
    /// Bytes removed from this segment.
    pub cut_bytes: u64,
    /// Why the bytes at `position_bytes` were refused.
    pub reason: String,
    /// True when the cut bytes were all zeros (preallocated, never written):
    /// not a sign of damage.
    pub zeros_only: bool,
}

/// What opening a log found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The directory held no segment: a new log, nothing to recover.
    pub created: bool,
    pub clean_shutdown: bool,
    pub segments: usize,
    /// Segments whose index files were missing or damaged and were rebuilt.
    pub indexes_rebuilt: Vec<Offset>,
    pub scanned_bytes: u64,
    pub truncations: Vec<Truncation>,
    /// Segments removed because an earlier segment was cut.
    pub segments_dropped: Vec<Offset>,
    pub log_end_offset: Offset,
}

impl RecoveryReport {
    /// Cuts of non-zero bytes: torn or corrupt data.
    pub fn damage(&self) -> impl Iterator<Item = &Truncation> {
        self.truncations.iter().filter(|t| !t.zeros_only)
    }
}

/// Segment base offsets found in `dir`, sorted; removes leftover temporary
/// files of interrupted writes.
fn list_segments(dir: &Path) -> Result<Vec<Offset>> {
    let mut bases = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".tmp") || name.ends_with(".cleaned") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if let Some(stem) = name.strip_suffix(".log") {
            if stem.len() == 20 {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(Offset(base));
                }
            }
        }
    }
    bases.sort();
    Ok(bases)
}

pub(crate) async fn open(
    dir: &Path,
    config: LogConfig,
    shard: &ShardStorage,
) -> Result<PartitionLog> {
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    if let (true, Some(parent)) = (created, dir.parent()) {
        // A new partition directory must survive power loss with its data.
        checkpoint::sync_directory(parent).await?;
    }
    super::shard::prime_direct_io(dir).await?;
    let marker = checkpoint::clean_shutdown_path(dir);
    let clean = marker.exists();
    let mut report = RecoveryReport {
        clean_shutdown: clean,
        ..RecoveryReport::default()
    };
    let checkpointed_start = checkpoint::read_log_start_offset(dir);
    let mut bases = list_segments(dir)?;
    report.created = bases.is_empty();
    if bases.is_empty() {
        let base = checkpointed_start.unwrap_or(Offset(0));
        checkpoint::create_dma_file(&dir.join(segment_file_name(base, "log"))).await?;
        bases.push(base);
    }
    let now_ms = super::now_ms();
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, base) in bases.iter().enumerate() {
        let active = i + 1 == bases.len();
        let cuts_before = report.truncations.len();
        let segment = load_segment(
            dir,
            *base,
            active,
            clean,
            config.index_interval_bytes,
            &mut report,
            now_ms,
        )
        .await?;
        let cut = report.truncations.len() > cuts_before;
        let ordered = segments
            .last()
            .is_none_or(|prev| prev.next_offset <= segment.base_offset);
        if !ordered {
            drop_segments(&bases[i..], dir, &mut report);
            break;
        }
        segments.push(segment);
        if cut && !active {
            // Everything after a cut in a closed segment is unreachable.
            drop_segments(&bases[i + 1..], dir, &mut report);
            break;
        }
    }
    finish_open(
        dir,
        config,
        shard,
        segments,
        checkpointed_start,
        report,
        &marker,
    )
    .await
}

fn drop_segments(bases: &[Offset], dir: &Path, report: &mut RecoveryReport) {
    for base in bases {
        for extension in ["index", "timeindex", "log"] {
            let _ = std::fs::remove_file(dir.join(segment_file_name(*base, extension)));
        }
        report.segments_dropped.push(*base);
    }
}

async fn load_segment(
    dir: &Path,
    base: Offset,
    active: bool,
    clean: bool,
    index_interval_bytes: u64,
    report: &mut RecoveryReport,
    now_ms: i64,
) -> Result<Segment> {
    let path = dir.join(segment_file_name(base, "log"));
    let file = Rc::new(checkpoint::open_dma_file(&path, true).await?);
    let size = file
        .file_size()
        .await
        .map_err(|e| StorageError::io(&path, e))?;
    let mut segment = Segment::new_empty(base, path, file, now_ms);
    segment.size_bytes = size;
    let trust_indexes = clean || !active;
    let mut loaded = trust_indexes && load_indexes(&mut segment, size);
    if !loaded && trust_indexes {
        report.indexes_rebuilt.push(base);
    }
    if !loaded {
        reset_indexes(&mut segment);
    }
    let (relative, position) = segment.index.last().unwrap_or((0, 0));
    let start = (position as u64, Offset(base.0 + relative as i64));
    let mut stop = scan_tail(&mut segment, start, size, index_interval_bytes, report).await?;
    if stop.is_some() && loaded {
        // The indexes led to bytes that are not a batch: decide nothing on
        // their word. Rebuild them from a full scan, which alone may cut.
        loaded = false;
        report.indexes_rebuilt.push(base);
        reset_indexes(&mut segment);
        stop = scan_tail(&mut segment, (0, base), size, index_interval_bytes, report).await?;
    }
    if let Some((position, reason)) = stop {
        cut(&segment, position, reason, size, report).await?;
    }
    if !loaded {
        segment.seal_time_index();
        if !active {
            write_file_durably(&segment.index_path(), &segment.index.encode()).await?;
            write_file_durably(&segment.time_index_path(), &segment.time_index.encode()).await?;
        }
    }
    Ok(segment)
}

/// Loads `.index` and `.timeindex` at open time; false if either is missing
/// or damaged.
fn load_indexes(segment: &mut Segment, size_bytes: u64) -> bool {
    let (Ok(index_bytes), Ok(time_bytes)) = (
        std::fs::read(segment.index_path()),
        std::fs::read(segment.time_index_path()),
    ) else {
        return false;
    };
    let Some(index) = OffsetIndex::decode(&index_bytes, size_bytes) else {
        return false;
    };
    let next_relative = i32::MAX as u64;
    let Some(time_index) = TimeIndex::decode(&time_bytes, next_relative) else {
        return false;
    };
    if let Some((timestamp, relative)) = time_index.last() {
        segment.max_timestamp_ms = timestamp;
        segment.max_timestamp_offset = Offset(segment.base_offset.0 + relative as i64);
    }
    segment.index = index;
    segment.time_index = time_index;
    true
}

/// Scans from `(position, offset)` to `end_bytes`, noting each valid batch;
/// returns where and why it stopped early, if it did.
async fn scan_tail(
    segment: &mut Segment,
    start: (u64, Offset),
    end_bytes: u64,
    index_interval_bytes: u64,
    report: &mut RecoveryReport,
) -> Result<Option<(u64, String)>> {
    segment.size_bytes = start.0;
    segment.next_offset = start.1;
    let mut scanner = Scanner::new(
        segment.file.clone(),
        segment.log_path.clone(),
        segment.base_offset,
        start,
        end_bytes,
    );
    loop {
        match scanner.next().await? {
            ScanStep::Batch {
                position, header, ..
            } => {
                segment.note_batch(&header, position, index_interval_bytes);
                report.scanned_bytes += header.total_bytes() as u64;
            }
            ScanStep::End => return Ok(None),
            ScanStep::Invalid { position, reason } => return Ok(Some((position, reason))),
        }
    }
}

/// Cuts the segment file at `position`, recording why.
async fn cut(
    segment: &Segment,
    position: u64,
    reason: String,
    file_size: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    let zeros_only = all_zeros(segment, position, file_size).await?;
    report.truncations.push(Truncation {
        segment_base_offset: segment.base_offset,
        position_bytes: position,
        cut_bytes: file_size - position,
        reason,
        zeros_only,
    });
    let io = |e: glommio::GlommioError<()>| StorageError::io(&segment.log_path, e);
    segment.file.truncate(position).await.map_err(io)?;
    segment.file.fdatasync().await.map_err(io)
}

fn reset_indexes(segment: &mut Segment) {
    segment.index = OffsetIndex::default();
    segment.time_index = TimeIndex::default();
    segment.max_timestamp_ms = -1;
    segment.max_timestamp_offset = segment.base_offset;
    segment.bytes_since_index = 0;
}

/// Whether `[from, to)` of the segment file holds only zero bytes.
async fn all_zeros(segment: &Segment, from: u64, to: u64) -> Result<bool> {
    let mut position = from;
    while position < to {
        let len = (to - position).min(1 << 20) as usize;
        let read = segment
            .file
            .read_at(position, len)
            .await
            .map_err(|e| StorageError::io(&segment.log_path, e))?;
        if read.is_empty() {
            return Ok(true);
        }
        if read.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        position += read.len() as u64;
    }
    Ok(true)
}

/// One line for what opening found: a new log, or a recovery and its
/// findings. A clean open of an existing log says nothing.
fn log_open(dir: &Path, report: &RecoveryReport, log_start_offset: Offset) {
    let dir = dir.display();
    if report.created {
        tracing::info!(%dir, log_start_offset = log_start_offset.0, "partition log created");
    } else if !report.clean_shutdown || report.damage().next().is_some() {
        tracing::info!(
            %dir,
            clean_shutdown = report.clean_shutdown,
            segments = report.segments,
            log_end_offset = report.log_end_offset.0,
            scanned_bytes = report.scanned_bytes,
            indexes_rebuilt = ?report.indexes_rebuilt,
            truncations = ?report.truncations,
            segments_dropped = ?report.segments_dropped,
            "partition log recovered"
        );
    }
}

async fn finish_open(
    dir: &Path,
    config: LogConfig,
    shard: &ShardStorage,
    mut segments: Vec<Segment>,
    checkpointed_start: Option<Offset>,
    mut report: RecoveryReport,
    marker: &PathBuf,
) -> Result<PartitionLog> {
    let active = segments.last_mut().expect("at least one segment");
    let log_end_offset = active.next_offset;
    let tail = read_tail(&active.file, &active.log_path, active.size_bytes).await?;
    let first_base = segments[0].base_offset;
    let log_start_offset = checkpointed_start
        .unwrap_or(first_base)
        .max(first_base)
        .min(log_end_offset);
    report.segments = segments.len();
    report.log_end_offset = log_end_offset;
    log_open(dir, &report, log_start_offset);
    // From here on a crash must not look clean: remove the marker durably.
    if marker.exists() {
        std::fs::remove_file(marker).map_err(|e| StorageError::io(marker, e))?;
    }
    checkpoint::sync_directory(dir).await?;
    let inner = Rc::new(LogInner {
        id: shard.next_log_id(),
        dir: dir.to_path_buf(),
        shard: shard.clone(),
        config: RefCell::new(config),
        state: RefCell::new(LogState {
            segments,
            log_start_offset,
            log_end_offset,
            leader_epochs: checkpoint::read_leader_epochs(dir),
            failed: None,
            closed: false,
            unsynced_records: 0,
            first_unsynced: None,
            recovery: report,
        }),
        lock: Semaphore::new(1),
        durability: RefCell::new(Durability {
            durable_end: log_end_offset,
            failed: None,
            waiters: Vec::new(),
        }),
        force_sync: Cell::new(false),
        compacted_end: Cell::new(Offset(-1)),
        read_ahead: RefCell::default(),
    });
    {
        let mut state = inner.state.borrow_mut();
        let active = state.segments.last_mut().expect("at least one segment");
        let appender = inner.new_appender(
            active.file.clone(),
            active.log_path.clone(),
            active.size_bytes,
            &tail,
        );
        active.appender = Some(appender);
    }
    shard.register(&inner);
    Ok(PartitionLog { inner })
}
