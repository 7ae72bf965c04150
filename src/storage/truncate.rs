//! Truncation of a log's end (follower divergence, leader epoch change).
//!
//! Owns: `truncate_to`, which removes whole batches at and after an offset:
//! later segments are deleted, the segment holding the offset is cut at the
//! batch boundary, indexes, cache, durability and leader epochs follow. Runs
//! under the log's lock on the owning shard. Must not leave an appender
//! writing past the cut: writes are drained before the file is cut.

use super::checkpoint;
use super::error::Result;
use super::log::PartitionLog;
use super::segment::{ScanStep, Scanner, Segment};
use super::Offset;

pub(crate) async fn truncate_to(log: &PartitionLog, offset: Offset) -> Result<Offset> {
    if offset >= log.log_end_offset() {
        return Ok(log.log_end_offset());
    }
    log.seal_active(false).await?;
    let removed = remove_segments_from(log, offset);
    // Newest first: a crash part way leaves a prefix of the log, never a
    // later segment after a hole (which would resurrect truncated data).
    for segment in removed.iter().rev() {
        remove_segment_files(segment).await;
    }
    let new_end = cut_last_segment(log, offset).await?;
    log.reopen_active().await?;
    record_end_in_segment_name(log, new_end).await?;
    let inner = &log.inner;
    {
        let mut state = inner.state.borrow_mut();
        state.log_end_offset = new_end;
        state.log_start_offset = state.log_start_offset.min(new_end);
        state.leader_epochs.retain(|e| e.start_offset < new_end);
    }
    let compacted_end = inner.compacted_end.get().min(new_end);
    inner.compacted_end.set(compacted_end);
    // Sealing synced everything up to the old end, and the cut was synced:
    // all that remains is on disk.
    let waiters = {
        let mut durability = inner.durability.borrow_mut();
        durability.durable_end = new_end;
        std::mem::take(&mut durability.waiters)
    };
    waiters.into_iter().for_each(std::task::Waker::wake);
    let cache = &inner.shard.inner.cache;
    cache.borrow_mut().invalidate(inner.id, i64::MIN, i64::MAX);
    let epochs = log.leader_epochs();
    checkpoint::write_leader_epochs(&inner.dir, &epochs).await?;
    checkpoint::write_log_start_offset(&inner.dir, log.log_start_offset()).await?;
    Ok(new_end)
}

/// Takes out every segment whose base offset is above `offset` (keeping at
/// least the first segment).
fn remove_segments_from(log: &PartitionLog, offset: Offset) -> Vec<Segment> {
    let mut state = log.inner.state.borrow_mut();
    let keep = state
        .segments
        .partition_point(|s| s.base_offset <= offset)
        .max(1);
    state.segments.split_off(keep)
}

pub(crate) async fn remove_segment_files(segment: &Segment) {
    // Indexes first, so that no index outlives its `.log`: a later segment
    // with the same base must not find a stale index.
    for path in [
        segment.index_path(),
        segment.time_index_path(),
        segment.log_path.clone(),
    ] {
        if let Err(error) = glommio::io::remove(&path).await {
            tracing::warn!(?path, %error, "could not remove segment file");
        }
    }
}

/// Cuts the last segment before the batch containing `offset`; returns the
/// new log end offset.
async fn cut_last_segment(log: &PartitionLog, offset: Offset) -> Result<Offset> {
    let (file, path, base, size, start) = {
        let state = log.inner.state.borrow();
        let last = state.segments.last().expect("a segment");
        let relative = (offset.0 - last.base_offset.0).clamp(0, u32::MAX as i64) as u32;
        let start = last.index.lookup(relative).unwrap_or((0, 0));
        let start = (start.1 as u64, last.base_offset.0 + start.0 as i64);
        (
            last.file.clone(),
            last.log_path.clone(),
            last.base_offset,
            last.size_bytes,
            start,
        )
    };
    let mut scanner = Scanner::new(
        file.clone(),
        path.clone(),
        base,
        (start.0, Offset(start.1)),
        size,
    );
    // (cut position, new log end): the batch holding `offset` goes whole; an
    // offset in a compaction gap or past the segment's batches is the new end.
    let mut cut = (size, offset);
    loop {
        match scanner.next().await? {
            ScanStep::Batch {
                position, header, ..
            } if header.last_offset() >= offset.0 => {
                cut = (position, Offset(header.base_offset).min(offset));
                break;
            }
            ScanStep::Batch { .. } => {}
            ScanStep::End => break,
            ScanStep::Invalid { position, .. } => {
                cut = (position, scanner.next_offset().min(offset));
                break;
            }
        }
    }
    let (position, new_end) = cut;
    let new_end = new_end.max(base);
    let io = |e: glommio::GlommioError<()>| super::error::StorageError::io(&path, e);
    file.truncate(position).await.map_err(io)?;
    file.fdatasync().await.map_err(io)?;
    rebuild_tail(log, new_end, position).await
}

/// Re-derives the last segment's indexes, size and timestamps after a cut
/// at `position`, by rescanning from its last index entry below the cut.
async fn rebuild_tail(log: &PartitionLog, new_end: Offset, position: u64) -> Result<Offset> {
    let (file, path, base, start) = {
        let mut state = log.inner.state.borrow_mut();
        let last = state.segments.last_mut().expect("a segment");
        let relative = last.relative(new_end.max(last.base_offset));
        last.index.truncate_from_offset(relative);
        last.time_index.truncate_from_offset(relative);
        let (entry_offset, entry_position) = last.index.last().unwrap_or((0, 0));
        let start = (
            entry_position as u64,
            Offset(last.base_offset.0 + entry_offset as i64),
        );
        (
            last.file.clone(),
            last.log_path.clone(),
            last.base_offset,
            start,
        )
    };
    let mut scanner = Scanner::new(file, path, base, start, position);
    let mut headers = Vec::new();
    while let ScanStep::Batch {
        position, header, ..
    } = scanner.next().await?
    {
        headers.push((position, header));
    }
    let interval = log.inner.config.borrow().index_interval_bytes;
    let mut state = log.inner.state.borrow_mut();
    let last = state.segments.last_mut().expect("a segment");
    last.size_bytes = start.0;
    last.next_offset = start.1;
    last.bytes_since_index = 0;
    (last.max_timestamp_ms, last.max_timestamp_offset) = match last.time_index.last() {
        Some((timestamp, relative)) => (timestamp, Offset(base.0 + relative as i64)),
        None => (-1, base),
    };
    for (position, header) in headers {
        last.note_batch(&header, position, interval);
    }
    last.size_bytes = position;
    Ok(new_end)
}

/// When the new end lies past the last batch (a compaction gap), the only
/// durable record of it is a segment based there: start one.
async fn record_end_in_segment_name(log: &PartitionLog, new_end: Offset) -> Result<()> {
    let batches_end = {
        let state = log.inner.state.borrow();
        state.segments.last().expect("a segment").next_offset
    };
    if batches_end >= new_end {
        return Ok(());
    }
    log.seal_active(false).await?;
    let segment = log.new_segment(new_end, super::now_ms()).await?;
    log.inner.state.borrow_mut().segments.push(segment);
    Ok(())
}
