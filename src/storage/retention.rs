//! Retention: deleting whole closed segments by age (`retention.ms`), size
//! (`retention.bytes`) and log start offset (DeleteRecords).
//!
//! Owns: choosing which closed segments go, advancing and checkpointing the
//! log start offset, and removing the files. Runs on the owning shard from
//! the maintenance timer, under the log's lock. Must never delete the active
//! segment, and must checkpoint the new log start offset before deleting
//! files (a crash in between leaves extra files, never a wrong start).

use super::checkpoint;
use super::error::Result;
use super::log::PartitionLog;
use super::segment::Segment;
use super::truncate::remove_segment_files;
use super::Offset;

/// What a retention pass deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_segments: Vec<Offset>,
    pub deleted_bytes: u64,
    pub log_start_offset: Offset,
}

/// How many of the oldest closed segments retention removes.
fn count_expired(log: &PartitionLog, now_ms: i64) -> usize {
    let config = log.config();
    let state = log.inner.state.borrow();
    let closed = &state.segments[..state.segments.len() - 1];
    let mut count = closed
        .iter()
        .take_while(|s| s.next_offset <= state.log_start_offset)
        .count();
    if !config.cleanup_policy.deletes() {
        return count;
    }
    if let Some(retention_ms) = config.retention_ms {
        let by_time = closed
            .iter()
            .take_while(|s| s.max_timestamp_ms >= 0 && now_ms - s.max_timestamp_ms > retention_ms)
            .count();
        count = count.max(by_time);
    }
    if let Some(retention_bytes) = config.retention_bytes {
        let mut excess = state.segments.iter().map(|s| s.size_bytes).sum::<u64>() as i64
            - retention_bytes as i64;
        let mut by_size = 0;
        for segment in closed {
            if excess - (segment.size_bytes as i64) < 0 {
                break;
            }
            excess -= segment.size_bytes as i64;
            by_size += 1;
        }
        count = count.max(by_size);
    }
    count
}

/// Deletes expired closed segments; takes the log's lock.
pub(crate) async fn apply(log: &PartitionLog, now_ms: i64) -> Result<RetentionReport> {
    let _permit = log.exclusive().await?;
    log.inner.check_usable()?;
    let count = count_expired(log, now_ms);
    delete_oldest(log, count).await
}

/// Deletes the segments wholly below the log start offset. Caller holds the
/// log's lock.
pub(crate) async fn delete_segments_below_start(log: &PartitionLog) -> Result<RetentionReport> {
    let count = {
        let state = log.inner.state.borrow();
        let closed = &state.segments[..state.segments.len() - 1];
        closed
            .iter()
            .take_while(|s| s.next_offset <= state.log_start_offset)
            .count()
    };
    delete_oldest(log, count).await
}

async fn delete_oldest(log: &PartitionLog, count: usize) -> Result<RetentionReport> {
    let mut report = RetentionReport {
        log_start_offset: log.log_start_offset(),
        ..RetentionReport::default()
    };
    if count == 0 {
        return Ok(report);
    }
    let new_start = {
        let state = log.inner.state.borrow();
        assert!(count < state.segments.len(), "never the active segment");
        state.segments[count]
            .base_offset
            .max(state.log_start_offset)
    };
    checkpoint::write_log_start_offset(&log.inner.dir, new_start).await?;
    let removed: Vec<Segment> = {
        let mut state = log.inner.state.borrow_mut();
        state.log_start_offset = new_start;
        state.segments.drain(..count).collect()
    };
    let cache = &log.inner.shard.inner.cache;
    cache
        .borrow_mut()
        .invalidate(log.inner.id, i64::MIN, new_start.0);
    for segment in &removed {
        remove_segment_files(segment).await;
        report.deleted_segments.push(segment.base_offset);
        report.deleted_bytes += segment.size_bytes;
    }
    report.log_start_offset = new_start;
    Ok(report)
}
