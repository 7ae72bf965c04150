//! Log compaction for `cleanup.policy=compact` (and `compact,delete`).
//!
//! Owns: the key map (latest offset per key over the closed segments) and
//! the rewrite of each closed segment that holds superseded records or
//! tombstones older than `delete.retention.ms`. Offsets are preserved
//! (records keep theirs; a batch whose records all go is dropped, leaving a
//! gap reads step over). Batches that keep every record are copied as they
//! are; others are re-encoded with their codec. Runs on the owning shard from
//! the maintenance timer, yielding between batches so the shard keeps
//! serving; the log's lock is taken only to swap a rewritten segment in.
//! Transactions (the batch attributes and control markers of the record
//! format) are respected as Kafka's cleaner does: aborted records go, open
//! transactions are kept whole, markers are kept.
//! Must never touch the active segment, and must leave a crash at any point
//! recoverable: the old index is removed before the cleaned file is renamed
//! over the old one, so a mismatched index is never read (it is rebuilt).

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::io::DmaFile;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use super::batch::{self, check_batch, BatchHeader};
use super::checkpoint;
use super::error::{Result, StorageError};
use super::log::PartitionLog;
use super::segment::{ScanStep, Scanner, Segment};
use super::Offset;

/// What one compaction pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub segments_rewritten: Vec<Offset>,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Clone)]
struct ClosedView {
    base_offset: Offset,
    next_offset: Offset,
    path: PathBuf,
    file: Rc<DmaFile>,
    size_bytes: u64,
    max_timestamp_ms: i64,
}

fn closed_views(log: &PartitionLog) -> Vec<ClosedView> {
    let state = log.inner.state.borrow();
    let closed = &state.segments[..state.segments.len() - 1];
    closed
        .iter()
        .map(|s| ClosedView {
            base_offset: s.base_offset,
            next_offset: s.next_offset,
            path: s.log_path.clone(),
            file: s.file.clone(),
            size_bytes: s.size_bytes,
            max_timestamp_ms: s.max_timestamp_ms,
        })
        .collect()
}

fn decode(bytes: &Bytes, view: &ClosedView, position: u64) -> Result<Vec<Record>> {
    let mut buf = bytes.clone();
    RecordBatchDecoder::decode(&mut buf)
        .map(|set| set.records)
        .map_err(|e| StorageError::CorruptOnDisk {
            path: view.path.clone(),
            position_bytes: position,
            reason: format!("cannot decode records: {e}"),
        })
}

/// Calls `each` for every batch of a closed segment, in order.
async fn for_each_batch(
    view: &ClosedView,
    mut each: impl FnMut(u64, BatchHeader, Bytes) -> Result<()>,
) -> Result<()> {
    let start = (0, view.base_offset);
    let mut scanner = Scanner::new(
        view.file.clone(),
        view.path.clone(),
        view.base_offset,
        start,
        view.size_bytes,
    );
    loop {
        match scanner.next().await? {
            ScanStep::Batch {
                position,
                header,
                bytes,
            } => each(position, header, bytes)?,
            ScanStep::End => return Ok(()),
            ScanStep::Invalid { position, reason } => {
                return Err(StorageError::CorruptOnDisk {
                    path: view.path.clone(),
                    position_bytes: position,
                    reason,
                })
            }
        }
        glommio::yield_if_needed().await;
    }
}

/// The latest offset of every key in the closed segments.
async fn build_key_map(views: &[ClosedView]) -> Result<KeyMap> {
    let mut map = KeyMap::default();
    for view in views {
        for_each_batch(view, |position, header, bytes| {
            if header.is_control() {
                map.end_transaction(&header, control_is_commit(&bytes, view, position)?);
                return Ok(());
            }
            let records = decode(&bytes, view, position)?;
            let keys = records
                .into_iter()
                .filter_map(|record| Some((Bytes::copy_from_slice(&record.key?), record.offset)));
            if header.is_transactional() {
                map.open
                    .entry(header.producer_id)
                    .or_insert_with(|| (header.base_offset, Vec::new()))
                    .1
                    .extend(keys);
            } else {
                map.latest.extend(keys);
            }
            Ok(())
        })
        .await?;
    }
    Ok(map)
}

/// What compaction knows of the keys and the transactions of the closed
/// segments. A transactional record counts as its key's latest only once
/// its COMMIT marker is seen; the records of aborted transactions are
/// removed and never shadow a committed value; those of transactions with
/// no marker yet are kept whole (Kafka cleans only below the last stable
/// offset).
#[derive(Default)]
struct KeyMap {
    latest: HashMap<Bytes, i64>,
    /// Producer id -> first offset and keys of its transaction without a
    /// marker so far.
    open: HashMap<i64, (i64, Vec<(Bytes, i64)>)>,
    /// Aborted transactions: producer id, first offset, marker offset.
    aborted: Vec<(i64, i64, i64)>,
}

impl KeyMap {
    fn end_transaction(&mut self, marker: &BatchHeader, commit: bool) {
        let Some((first, keys)) = self.open.remove(&marker.producer_id) else {
            return;
        };
        if !commit {
            self.aborted
                .push((marker.producer_id, first, marker.base_offset));
            return;
        }
        for (key, offset) in keys {
            let latest = self.latest.entry(key).or_insert(offset);
            *latest = (*latest).max(offset);
        }
    }

    /// What becomes of a transactional data batch: `Some(true)` kept whole
    /// (its transaction is open), `Some(false)` removed (aborted), `None`
    /// compacted like any batch (committed).
    fn transactional_fate(&self, header: &BatchHeader) -> Option<bool> {
        let producer = header.producer_id;
        if self
            .open
            .get(&producer)
            .is_some_and(|(first, _)| header.base_offset >= *first)
        {
            return Some(true);
        }
        let aborted = self.aborted.iter().any(|(id, first, last)| {
            *id == producer && (*first..=*last).contains(&header.base_offset)
        });
        aborted.then_some(false)
    }
}

/// Whether a control batch is a COMMIT marker (its record's key is
/// `ControlRecordKey`: version, then type 1 COMMIT or 0 ABORT).
fn control_is_commit(bytes: &Bytes, view: &ClosedView, position: u64) -> Result<bool> {
    let records = decode(bytes, view, position)?;
    let key = records.first().and_then(|record| record.key.clone());
    Ok(key.is_some_and(|key| key.len() >= 4 && i16::from_be_bytes([key[2], key[3]]) == 1))
}

/// How much the cleaner wants this compacted log now: `Some(priority)` when
/// the closed bytes written since the last pass are at least
/// `min.cleanable.dirty.ratio` of all closed bytes (the priority is that
/// share), or when a closed segment not yet compacted is older than
/// `max.compaction.lag.ms` (infinite priority). Kafka's cleaner measures the
/// same share, per log, and cleans the dirtiest first.
pub(crate) fn cleaning_priority(log: &PartitionLog, now_ms: i64) -> Option<f64> {
    let config = log.config();
    if !config.cleanup_policy.compacts() {
        return None;
    }
    let compacted_end = log.inner.compacted_end.get();
    let state = log.inner.state.borrow();
    let closed = &state.segments[..state.segments.len() - 1];
    let total: u64 = closed.iter().map(|s| s.size_bytes).sum();
    let dirty: Vec<_> = closed
        .iter()
        .filter(|s| s.next_offset > compacted_end)
        .collect();
    if total == 0 || dirty.is_empty() {
        return None;
    }
    let overdue = config.max_compaction_lag_ms.is_some_and(|lag| {
        dirty
            .iter()
            .any(|segment| now_ms.saturating_sub(segment.created_ms) >= lag)
    });
    if overdue {
        return Some(f64::INFINITY);
    }
    let ratio = dirty.iter().map(|s| s.size_bytes).sum::<u64>() as f64 / total as f64;
    (ratio >= config.min_cleanable_dirty_ratio).then_some(ratio)
}

/// Whether the active segment holds records older than
/// `max.compaction.lag.ms`: then it must be rolled, since only closed
/// segments are compacted.
pub(crate) fn active_overdue(log: &PartitionLog, now_ms: i64) -> bool {
    let config = log.config();
    let Some(lag) = config
        .max_compaction_lag_ms
        .filter(|_| config.cleanup_policy.compacts())
    else {
        return false;
    };
    let state = log.inner.state.borrow();
    let active = state.segments.last().expect("active segment");
    active.size_bytes > 0 && now_ms.saturating_sub(active.created_ms) >= lag
}

/// Compacts the closed segments written since the last pass (all of them
/// after a restart).
pub(crate) async fn compact(log: &PartitionLog, now_ms: i64) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    // Kafka's uncleanable range: from the first closed segment holding a
    // record younger than min.compaction.lag.ms on, nothing is compacted,
    // and its records are not in the key map either.
    let min_lag_ms = log.config().min_compaction_lag_ms;
    let views: Vec<ClosedView> = closed_views(log)
        .into_iter()
        .take_while(|view| min_lag_ms <= 0 || view.max_timestamp_ms <= now_ms - min_lag_ms)
        .collect();
    let Some(end) = views.last().map(|v| v.next_offset) else {
        return Ok(report);
    };
    if end <= log.inner.compacted_end.get() {
        return Ok(report);
    }
    let map = build_key_map(&views).await?;
    let horizon_ms = now_ms - log.config().delete_retention_ms;
    for view in &views {
        if let Some(segment) = rewrite(log, view, &map, horizon_ms, &mut report).await? {
            report.segments_rewritten.push(view.base_offset);
            report.bytes_before += view.size_bytes;
            report.bytes_after += segment.size_bytes;
            swap(log, view, segment).await?;
            throttle(log, view.size_bytes).await;
        }
    }
    log.inner.compacted_end.set(end);
    Ok(report)
}

/// Pauses after rewriting `bytes` so that the shard's cleaner stays under
/// `log.cleaner.io.max.bytes.per.second`.
async fn throttle(log: &PartitionLog, bytes: u64) {
    let rate = log.inner.shard.inner.config.cleaner_io_bytes_per_second;
    if rate.is_finite() && rate > 0.0 && rate < f64::MAX {
        let pause = std::time::Duration::from_secs_f64(bytes as f64 / rate);
        glommio::timer::sleep(pause).await;
    }
}

/// The records of a batch compaction keeps.
fn retained<'a>(
    records: &'a [Record],
    latest: &HashMap<Bytes, i64>,
    horizon_ms: i64,
    max_timestamp: i64,
    report: &mut CompactionReport,
) -> Vec<&'a Record> {
    let mut kept = Vec::with_capacity(records.len());
    for record in records {
        let Some(key) = &record.key else {
            kept.push(record); // keyless (written before the policy changed)
            continue;
        };
        let is_latest = latest.get(key) == Some(&record.offset);
        let expired_tombstone = record.value.is_none() && max_timestamp < horizon_ms;
        if is_latest && !expired_tombstone {
            kept.push(record);
        } else {
            report.records_removed += 1;
            report.tombstones_removed += u64::from(is_latest && expired_tombstone);
        }
    }
    kept
}

/// Re-encodes `kept` records of the batch `original` with its codec and
/// header fields the encoder does not carry over.
fn encode(kept: &[&Record], original: &BatchHeader) -> Result<Bytes> {
    let compression = match original.codec() {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    };
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, kept.iter().copied(), &options)
        .map_err(|e| StorageError::InvalidRecord(format!("cannot re-encode batch: {e}")))?;
    let total = BatchHeader::parse(&out).map_err(|e| StorageError::InvalidRecord(e.to_string()))?;
    if total.total_bytes() != out.len() {
        return Err(StorageError::InvalidRecord(
            "re-encoding split the batch".into(),
        ));
    }
    if original.base_sequence < 0 {
        batch::set_base_sequence(&mut out, original.base_sequence);
    }
    if original.is_log_append_time() {
        batch::set_log_append_time(&mut out, original.max_timestamp);
    }
    Ok(out.freeze())
}

/// Writes the cleaned copy of one closed segment to `<base>.log.cleaned`;
/// `None` if nothing in it would change.
async fn rewrite(
    log: &PartitionLog,
    view: &ClosedView,
    map: &KeyMap,
    horizon_ms: i64,
    report: &mut CompactionReport,
) -> Result<Option<Segment>> {
    let mut outputs: Vec<Bytes> = Vec::new();
    let mut changed = false;
    let mut pass = CompactionReport::default();
    for_each_batch(view, |position, header, bytes| {
        let fate = header
            .is_transactional()
            .then(|| map.transactional_fate(&header))
            .flatten();
        if header.is_control() || fate == Some(true) {
            outputs.push(bytes);
            return Ok(());
        }
        let records = decode(&bytes, view, position)?;
        if fate == Some(false) {
            pass.records_removed += records.len() as u64;
            changed = true;
            return Ok(());
        }
        let kept = retained(
            &records,
            &map.latest,
            horizon_ms,
            header.max_timestamp,
            &mut pass,
        );
        if kept.len() == records.len() {
            outputs.push(bytes);
        } else {
            changed = true;
            if !kept.is_empty() {
                outputs.push(encode(&kept, &header)?);
            }
        }
        Ok(())
    })
    .await?;
    if !changed {
        return Ok(None);
    }
    report.records_removed += pass.records_removed;
    report.tombstones_removed += pass.tombstones_removed;
    write_segment(log, view, outputs).await.map(Some)
}

/// Writes batches into a new segment file through a direct-I/O appender.
async fn write_segment(
    log: &PartitionLog,
    view: &ClosedView,
    batches: Vec<Bytes>,
) -> Result<Segment> {
    let temporary = view.path.with_extension("log.cleaned");
    let file = Rc::new(checkpoint::create_dma_file(&temporary).await?);
    let mut segment = Segment::new_empty(
        view.base_offset,
        view.path.clone(),
        file.clone(),
        super::now_ms(),
    );
    let mut appender = log
        .inner
        .new_appender(file.clone(), temporary.clone(), 0, &[]);
    let interval = log.config().index_interval_bytes;
    for bytes in batches {
        let header = check_batch(&bytes).map_err(|e| StorageError::InvalidRecord(e.to_string()))?;
        let position = segment.size_bytes;
        appender.append(&bytes);
        segment.note_batch(&header, position, interval);
        if let Some(wait) = appender.backpressure() {
            wait.wait().await.map_err(StorageError::LogFailed)?;
        }
    }
    appender.flush_tail();
    for completion in appender.pending_writes() {
        completion.wait().await.map_err(StorageError::LogFailed)?;
    }
    let io = |e: glommio::GlommioError<()>| StorageError::io(&temporary, e);
    file.truncate(segment.size_bytes).await.map_err(io)?;
    file.fdatasync().await.map_err(io)?;
    segment.seal_time_index();
    Ok(segment)
}

/// Puts a cleaned segment in place of the one it was made from, if that one
/// is still there (retention or truncation may have removed it meanwhile).
async fn swap(log: &PartitionLog, view: &ClosedView, mut cleaned: Segment) -> Result<()> {
    let temporary = view.path.with_extension("log.cleaned");
    let _permit = log.exclusive().await?;
    let still_there = {
        let state = log.inner.state.borrow();
        let closed = &state.segments[..state.segments.len() - 1];
        closed
            .iter()
            .any(|s| s.base_offset == view.base_offset && Rc::ptr_eq(&s.file, &view.file))
    };
    if !still_there {
        let _ = glommio::io::remove(&temporary).await;
        return Ok(());
    }
    for path in [cleaned.index_path(), cleaned.time_index_path()] {
        if let Err(error) = glommio::io::remove(&path).await {
            tracing::debug!(?path, %error, "no index to remove");
        }
    }
    let dir = log.inner.dir.clone();
    checkpoint::sync_directory(&dir).await?;
    glommio::io::rename(&temporary, &view.path)
        .await
        .map_err(|e| StorageError::io(&temporary, e))?;
    checkpoint::sync_directory(&dir).await?;
    checkpoint::write_file_durably(&cleaned.index_path(), &cleaned.index.encode()).await?;
    checkpoint::write_file_durably(&cleaned.time_index_path(), &cleaned.time_index.encode())
        .await?;
    cleaned.next_offset = view.next_offset;
    let mut state = log.inner.state.borrow_mut();
    if let Some(slot) = state
        .segments
        .iter_mut()
        .find(|s| s.base_offset == view.base_offset)
    {
        *slot = cleaned;
    }
    drop(state);
    let cache = &log.inner.shard.inner.cache;
    cache
        .borrow_mut()
        .invalidate(log.inner.id, view.base_offset.0, view.next_offset.0);
    Ok(())
}
