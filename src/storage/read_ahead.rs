//! Read-ahead of cold log data into the shard cache.
//!
//! Owns: each log's read-ahead window ([`ReadAhead`]): how far past a
//! forward-reading consumer the segment files have been read into the shard
//! cache, and the chunk being read. A read that went to the disk opens a
//! window after what it read; a read that takes from the last chunk read
//! starts the next one, so the disk reads while the consumer takes what is
//! cached. Each chunk is a detached task of the shard's executor:
//! the shard waits on io_uring completions, never on the disk. Must read
//! only bytes already written to a segment file, insert only whole batches
//! whose CRC it checked, and insert nothing it read before an invalidation
//! of the cache landed (truncation, retention, compaction). It is advice:
//! on any error it stops, and the reader reads the disk itself.

use std::rc::Rc;

use glommio::sync::Semaphore;

use super::batch::BatchHeader;
use super::log::LogInner;
use super::reader::whole_batches;

/// Where a log's window ends, and when to extend it.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Base offset of the segment read ahead.
    segment: i64,
    /// File position after the last whole batch read.
    position: u64,
    /// The offset after that batch.
    next_offset: i64,
    /// A read returning batches up to this offset starts the next chunk.
    trigger_offset: i64,
}

/// One log's read-ahead state (in [`LogInner`]).
#[derive(Default)]
pub(crate) struct ReadAhead {
    window: Option<Window>,
    /// The chunk being read: its first offset, and a semaphore closed when
    /// it has landed in the cache (or failed).
    in_flight: Option<(i64, Rc<Semaphore>)>,
}

/// The chunk in flight that may hold `offset`: a reader that missed the
/// cache awaits it (`acquire` returns once it is closed) before reading the
/// disk itself.
pub(crate) fn in_flight_for(log: &LogInner, offset: i64) -> Option<Rc<Semaphore>> {
    let state = log.read_ahead.borrow();
    let (first, landed) = state.in_flight.as_ref()?;
    (offset >= *first).then(|| landed.clone())
}

/// After a read from the disk that ended at `position` of the segment based
/// at `segment`, with `next_offset` after its last batch: opens a window
/// there and reads its first chunk.
pub(crate) fn after_disk_read(log: &Rc<LogInner>, segment: i64, position: u64, next_offset: i64) {
    if log.shard.inner.config.read_ahead_bytes == 0 {
        return;
    }
    {
        let mut state = log.read_ahead.borrow_mut();
        if state.in_flight.is_some() {
            return;
        }
        state.window = Some(Window {
            segment,
            position,
            next_offset,
            trigger_offset: next_offset,
        });
    }
    extend(log, next_offset);
}

/// After a read that returned batches up to `read_to` (exclusive): reads
/// the window's next chunk if the reader has passed its trigger.
pub(crate) fn extend(log: &Rc<LogInner>, read_to: i64) {
    // Two chunks per reader are cached at a time: a chunk is at most an
    // eighth of the cache, so that a few readers do not evict each other's.
    let chunk_bytes = {
        let capacity = log.shard.inner.cache.borrow().stats().capacity_bytes as u64;
        log.shard.inner.config.read_ahead_bytes.min(capacity / 8)
    };
    if chunk_bytes == 0 {
        return;
    }
    let window = {
        let state = log.read_ahead.borrow();
        match state.window {
            Some(window) if state.in_flight.is_none() && read_to >= window.trigger_offset => window,
            _ => return,
        }
    };
    // Where the cache already holds what comes next (the reader has caught
    // up with what appends cached), the window has done its work.
    if log
        .shard
        .inner
        .cache
        .borrow()
        .contains(log.id, window.next_offset)
    {
        log.read_ahead.borrow_mut().window = None;
        return;
    }
    let landed = Rc::new(Semaphore::new(0));
    log.read_ahead.borrow_mut().in_flight = Some((window.next_offset, landed.clone()));
    let log = log.clone();
    glommio::spawn_local(async move {
        let next = read_chunk(&log, window, chunk_bytes).await;
        let mut state = log.read_ahead.borrow_mut();
        state.in_flight = None;
        state.window = next;
        drop(state);
        landed.close();
    })
    .detach();
}

/// Reads one chunk of at most `chunk_bytes` (or one whole batch, if that
/// is larger) from the window's end into the cache; the window after it,
/// or `None` where it stops (the written end, a closed log, an error, an
/// invalidation meanwhile).
async fn read_chunk(log: &LogInner, mut window: Window, chunk_bytes: u64) -> Option<Window> {
    let generation = log.shard.inner.cache.borrow().generation();
    let (view, readable) = loop {
        if log.is_closed() {
            return None;
        }
        let (index, readable, next_base) = {
            let mut state = log.state.borrow_mut();
            let index = state
                .segments
                .iter()
                .position(|s| s.base_offset.0 == window.segment)?;
            let next_base = state.segments.get(index + 1).map(|s| s.base_offset.0);
            (index, state.segments[index].readable_bytes(), next_base)
        };
        if window.position < readable {
            break (log.view(index)?, readable);
        }
        // This segment is read to its written end: on to the next one.
        let next = next_base?;
        window.segment = next;
        window.position = 0;
        window.next_offset = window.next_offset.max(next);
    };
    let left = readable - window.position;
    let mut bytes = log
        .read_range(&view, window.position, chunk_bytes.min(left) as usize)
        .await
        .ok()?;
    let first = BatchHeader::parse(&bytes).ok()?;
    if first.total_bytes() > bytes.len() && first.total_bytes() as u64 <= left {
        // A batch larger than the chunk: read it whole.
        bytes = log
            .read_range(&view, window.position, first.total_bytes())
            .await
            .ok()?;
    }
    // A batch cut by the chunk's end is read again with the next chunk.
    let (batches, _) = whole_batches(&bytes);
    let (first, last) = (batches.first()?.0, batches.last()?.0);
    if !log.cache_disk_read(generation, bytes.len(), true, &batches) {
        return None;
    }
    let read: usize = batches.iter().map(|(_, batch)| batch.len()).sum();
    Some(Window {
        segment: window.segment,
        position: window.position + read as u64,
        next_offset: last.last_offset() + 1,
        // The next chunk starts as soon as a reader takes from this one:
        // one chunk is read while the reader consumes the one before.
        trigger_offset: first.base_offset,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::batch::test_batches::batch;
    use super::super::tests::{batch_offsets, run, small_config};
    use super::super::*;

    async fn shard(dir: &Path, read_ahead_bytes: u64) -> ShardStorage {
        let mut config = StorageConfig::new(dir);
        config.read_cache_bytes = 1 << 20;
        config.write_buffer_bytes = 64 << 10;
        config.preallocate_bytes = 256 << 10;
        config.read_ahead_bytes = read_ahead_bytes;
        ShardStorage::new(config)
    }

    fn value(i: usize, round: u8) -> Vec<u8> {
        vec![round.wrapping_add((i % 251) as u8); 100 + (i * 37) % 900]
    }

    /// Appends 300 batches (several segments), then reopens the log on a
    /// shard with an empty cache.
    async fn cold_log(dir: &Path, read_ahead_bytes: u64) -> (ShardStorage, PartitionLog) {
        let first = shard(dir, read_ahead_bytes).await;
        let log = PartitionLog::open(dir.join("t-0"), small_config(), &first)
            .await
            .unwrap();
        for i in 0..300 {
            log.append(&batch(1, None, Some(&value(i, 0)), i as i64), 1)
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        let cold = shard(dir, read_ahead_bytes).await;
        let log = PartitionLog::open(dir.join("t-0"), small_config(), &cold)
            .await
            .unwrap();
        assert!(log.segment_count() > 2, "segments: {}", log.segment_count());
        (cold, log)
    }

    /// The batches a 2000-byte read into memory at `offset` returns.
    async fn read_memory(log: &PartitionLog, offset: i64) -> Vec<bytes::Bytes> {
        let options = ReadOptions {
            max_bytes: 2000,
            min_one_batch: true,
            upper_offset: None,
            zero_copy: false,
        };
        let result = log.read_with(Offset(offset), options).await.unwrap();
        match result.data {
            ReadData::Memory(batches) => batches,
            other => panic!("a read into memory at {offset}: {other:?}"),
        }
    }

    async fn read_from(log: &PartitionLog, offset: i64) -> Vec<(i64, i64)> {
        batch_offsets(&read_memory(log, offset).await.concat())
    }

    /// Reads every offset in order; returns how many reads it took.
    async fn read_forward(log: &PartitionLog) -> usize {
        let (mut offset, mut reads) = (0, 0);
        while offset < log.log_end_offset().0 {
            let got = read_from(log, offset).await;
            assert_eq!(got.first().map(|b| b.0), Some(offset), "read at {offset}");
            offset = got.last().unwrap().1 + 1;
            reads += 1;
        }
        reads
    }

    #[test]
    fn a_forward_reader_finds_what_follows_a_disk_read_in_the_cache() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        run(move || async move {
            let (off_shard, off) = cold_log(&dir.join("off"), 0).await;
            let without = read_forward(&off).await;
            let misses_without = off_shard.cache_stats().misses;
            let (on_shard, on) = cold_log(&dir.join("on"), 16 << 10).await;
            let with = read_forward(&on).await;
            let misses_with = on_shard.cache_stats().misses;
            // Without read-ahead every read past what the last disk read
            // brought in misses; with it, about one wait per 16 KiB chunk
            // (about 170 KiB in all) is left. (The reads differ in number:
            // a cached run ends where a chunk has not landed yet.)
            assert!(
                misses_without >= 40,
                "misses without: {misses_without} of {without} reads"
            );
            assert!(
                misses_with <= 20,
                "misses with read-ahead: {misses_with} of {with} reads"
            );
        });
    }

    #[test]
    fn what_was_read_ahead_before_a_truncation_is_not_served() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        run(move || async move {
            let (_shard, log) = cold_log(&dir, 16 << 10).await;
            // A disk read starts the read-ahead; the truncation and the new
            // appends race with its chunks.
            assert_eq!(read_from(&log, 0).await[0].0, 0);
            log.truncate_to(Offset(10)).await.unwrap();
            for i in 10..300 {
                log.append(&batch(1, None, Some(&value(i, 7)), i as i64), 1)
                    .await
                    .unwrap();
            }
            let mut offset = 0;
            while offset < 300 {
                for bytes in read_memory(&log, offset).await {
                    let mut bytes = bytes.clone();
                    let set =
                        kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
                    let record = &set.records[0];
                    let round = if record.offset < 10 { 0 } else { 7 };
                    let expected = value(record.offset as usize, round);
                    assert_eq!(
                        record.value.as_deref(),
                        Some(&expected[..]),
                        "offset {}",
                        record.offset
                    );
                    offset = record.offset + 1;
                }
            }
        });
    }
}
