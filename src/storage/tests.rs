//! Unit tests of the partition log as a whole: append and read back, rolls,
//! group commit, clean and unclean reopen, timestamps, truncation and
//! retention. Each test runs its own small glommio executor.

use std::future::Future;
use std::path::Path;

use bytes::Bytes;

use super::batch::check_batch;
use super::batch::test_batches::batch;
use super::*;

/// Runs `body` on a fresh executor small enough for our 8 MiB memlock.
pub(crate) fn run<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .ring_depth(128)
        .spawn(body)
        .expect("executor")
        .join()
        .expect("test body");
}

pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        index_interval_bytes: 1024,
        retention_ms: None,
        ..LogConfig::default()
    }
}

pub(crate) async fn shard(dir: &Path) -> ShardStorage {
    let mut config = StorageConfig::new(dir);
    config.read_cache_bytes = 256 << 10;
    config.write_buffer_bytes = 64 << 10;
    config.preallocate_bytes = 256 << 10;
    ShardStorage::new(config)
}

/// Concatenates what a read returned, reading file regions with std::fs.
pub(crate) fn read_bytes(data: &ReadData) -> Vec<u8> {
    match data {
        ReadData::Empty => Vec::new(),
        ReadData::Memory(batches) => batches.concat(),
        ReadData::File(region) => {
            use std::os::unix::fs::FileExt;
            let mut bytes = vec![0u8; region.len as usize];
            region
                .file
                .read_exact_at(&mut bytes, region.position)
                .unwrap();
            bytes
        }
    }
}

/// (base offset, last offset) of each batch in `bytes`, checking CRCs.
pub(crate) fn batch_offsets(mut bytes: &[u8]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header = check_batch(bytes).expect("valid batch");
        out.push((header.base_offset, header.last_offset()));
        bytes = &bytes[header.total_bytes()..];
    }
    out
}

fn value(i: usize) -> Vec<u8> {
    vec![(i % 251) as u8; 100 + (i * 37) % 900]
}

#[test]
fn append_then_read_every_offset_across_rolls() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let log = PartitionLog::open(dir.join("t-0"), small_config(), &shard)
            .await
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..300 {
            let count = 1 + (i % 3) as i32;
            let info = log
                .append(
                    &batch(count, Some(b"k"), Some(&value(i)), 1000 + i as i64),
                    5,
                )
                .await
                .unwrap();
            assert_eq!(info.last_offset.0 - info.base_offset.0 + 1, count as i64);
            expected.push((info.base_offset.0, info.last_offset.0));
        }
        log.wait_durable(Offset(expected.last().unwrap().1))
            .await
            .unwrap();
        assert!(log.segment_count() > 3, "rolled: {}", log.segment_count());
        assert_eq!(log.log_end_offset().0, expected.last().unwrap().1 + 1);
        for offset in 0..log.log_end_offset().0 {
            for zero_copy in [true, false] {
                let options = ReadOptions {
                    max_bytes: 3000,
                    min_one_batch: true,
                    upper_offset: None,
                    zero_copy,
                };
                let result = log.read_with(Offset(offset), options).await.unwrap();
                let got = batch_offsets(&read_bytes(&result.data));
                assert!(!got.is_empty());
                assert!(
                    got[0].0 <= offset && offset <= got[0].1,
                    "offset {offset} got {got:?}"
                );
                let first = expected.iter().position(|e| e.0 == got[0].0).unwrap();
                assert_eq!(&expected[first..first + got.len()], &got[..]);
            }
        }
        let stats = shard.cache_stats();
        assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
        let end = log.read(log.log_end_offset(), 1000, true).await.unwrap();
        assert!(matches!(end.data, ReadData::Empty));
        let error = log
            .read(Offset(log.log_end_offset().0 + 1), 1000, true)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::OffsetOutOfRange);
        log.close().await.unwrap();
    });
}

#[test]
fn file_regions_cover_whole_written_batches() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let mut storage = StorageConfig::new(&dir);
        storage.read_cache_bytes = 0;
        storage.write_buffer_bytes = 64 << 10;
        let shard = ShardStorage::new(storage);
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let log = PartitionLog::open(dir.join("t-0"), config, &shard)
            .await
            .unwrap();
        for i in 0..200 {
            log.append(&batch(2, Some(b"k"), Some(&value(i)), 7), 5)
                .await
                .unwrap();
        }
        log.flush().await.unwrap();
        let result = log.read(Offset(101), 10_000, true).await.unwrap();
        let ReadData::File(region) = &result.data else {
            panic!("expected a file region")
        };
        assert_eq!(region.first_offset, Offset(100));
        let got = batch_offsets(&read_bytes(&result.data));
        assert_eq!(got.first().unwrap().0, 100);
        assert_eq!(got.last().unwrap().1 + 1, region.next_offset.0);
        assert!(region.len <= 10_000);
        // Every cut the region offers is a batch end, with the offset after
        // it; the last is the region's end.
        assert_eq!(region.cuts.last(), Some(&(region.len, region.next_offset)));
        for (index, &(len, next_offset)) in region.cuts.iter().enumerate() {
            let cut = region.clone().cut(index);
            assert_eq!((cut.len, cut.next_offset), (len, next_offset));
            let got = batch_offsets(&read_bytes(&ReadData::File(cut)));
            assert_eq!(got.last().unwrap().1 + 1, next_offset.0);
        }
        let bounded = ReadOptions {
            max_bytes: 1 << 20,
            min_one_batch: true,
            upper_offset: Some(Offset(120)),
            zero_copy: true,
        };
        let got = batch_offsets(&read_bytes(
            &log.read_with(Offset(101), bounded).await.unwrap().data,
        ));
        assert_eq!(got.last().unwrap().1, 119);
        log.close().await.unwrap();
    });
}

#[test]
fn group_commit_syncs_many_appends_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let logs = [
            PartitionLog::open(dir.join("a-0"), small_config(), &shard)
                .await
                .unwrap(),
            PartitionLog::open(dir.join("b-0"), small_config(), &shard)
                .await
                .unwrap(),
        ];
        let mut tasks = Vec::new();
        for producer in 0..16 {
            let log = logs[producer % 2].clone();
            tasks.push(glommio::spawn_local(async move {
                for i in 0..20 {
                    let info = log
                        .append(&batch(1, Some(b"k"), Some(&value(i)), 1), 1)
                        .await
                        .unwrap();
                    log.wait_durable(info.last_offset).await.unwrap();
                    assert!(log.durable_end_offset() > info.last_offset);
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        let stats = shard.flush_stats();
        assert_eq!(stats.records, 320);
        assert!(stats.syncs < 320 / 2, "grouped: {stats:?}");
        for log in &logs {
            assert_eq!(log.durable_end_offset(), log.log_end_offset());
            log.close().await.unwrap();
        }
    });
}

async fn contents(log: &PartitionLog) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let options = ReadOptions {
            max_bytes: 1 << 20,
            min_one_batch: true,
            upper_offset: None,
            zero_copy: false,
        };
        let data = log.read_with(offset, options).await.unwrap().data;
        let got = batch_offsets(&read_bytes(&data));
        assert!(!got.is_empty());
        offset = Offset(got.last().unwrap().1 + 1);
        out.extend(got);
    }
    out
}

#[test]
fn reopen_after_clean_close_and_after_crash() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let path = dir.join("t-0");
        let log = PartitionLog::open(&path, small_config(), &shard)
            .await
            .unwrap();
        for i in 0..150 {
            log.append(&batch(2, Some(b"k"), Some(&value(i)), i as i64), 5)
                .await
                .unwrap();
        }
        log.flush().await.unwrap();
        let before = contents(&log).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, small_config(), &shard)
            .await
            .unwrap();
        let report = log.recovery_report();
        assert!(
            report.clean_shutdown && report.truncations.is_empty(),
            "{report:?}"
        );
        assert_eq!(contents(&log).await, before);
        // Crash: synced appends, then unsynced ones, then drop without close.
        for i in 0..10 {
            log.append(&batch(1, Some(b"k"), Some(&value(i)), 9), 5)
                .await
                .unwrap();
        }
        log.flush().await.unwrap();
        let synced_end = log.log_end_offset();
        let synced = contents(&log).await;
        drop(log);
        let log = PartitionLog::open(&path, small_config(), &shard)
            .await
            .unwrap();
        let report = log.recovery_report();
        assert!(!report.clean_shutdown);
        assert_eq!(report.damage().count(), 0, "{report:?}");
        assert_eq!(log.log_end_offset(), synced_end);
        assert_eq!(contents(&log).await, synced);
        log.close().await.unwrap();
    });
}

#[test]
fn offset_for_timestamp_finds_first_record_at_or_after() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let log = PartitionLog::open(dir.join("t-0"), small_config(), &shard)
            .await
            .unwrap();
        for i in 0..200i64 {
            log.append(
                &batch(1, Some(b"k"), Some(&value(i as usize)), 1000 + 10 * i),
                5,
            )
            .await
            .unwrap();
        }
        assert_eq!(
            log.offset_for_timestamp(0).await.unwrap(),
            Some((Offset(0), 1000))
        );
        assert_eq!(
            log.offset_for_timestamp(1500).await.unwrap(),
            Some((Offset(50), 1500))
        );
        assert_eq!(
            log.offset_for_timestamp(1501).await.unwrap(),
            Some((Offset(51), 1510))
        );
        assert_eq!(log.offset_for_timestamp(99_999).await.unwrap(), None);
        log.close().await.unwrap();
    });
}

#[test]
fn truncate_then_append_continues_at_the_cut() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let path = dir.join("t-0");
        let log = PartitionLog::open(&path, small_config(), &shard)
            .await
            .unwrap();
        for i in 0..200 {
            log.append(&batch(2, Some(b"k"), Some(&value(i)), 1), 5)
                .await
                .unwrap();
        }
        let segments = log.segment_count();
        assert_eq!(log.truncate_to(Offset(101)).await.unwrap(), Offset(100));
        assert!(log.segment_count() < segments);
        let info = log
            .append(&batch(1, Some(b"k"), Some(b"new"), 1), 5)
            .await
            .unwrap();
        assert_eq!(info.base_offset, Offset(100));
        let got = contents(&log).await;
        assert_eq!(got.len(), 51);
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, small_config(), &shard)
            .await
            .unwrap();
        assert_eq!(contents(&log).await, got);
        log.close().await.unwrap();
    });
}

#[test]
fn retention_and_delete_records_drop_closed_segments() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let config = LogConfig {
            retention_bytes: Some(100 << 10),
            ..small_config()
        };
        let log = PartitionLog::open(dir.join("t-0"), config, &shard)
            .await
            .unwrap();
        for i in 0..600 {
            log.append(&batch(1, Some(b"k"), Some(&value(i)), i as i64), 5)
                .await
                .unwrap();
        }
        let size = log.size_bytes();
        let report = log.apply_retention(10).await.unwrap();
        assert!(!report.deleted_segments.is_empty());
        assert!(log.size_bytes() < size && log.size_bytes() >= 100 << 10);
        assert_eq!(log.log_start_offset(), report.log_start_offset);
        let error = log.read(Offset(0), 100, true).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::OffsetOutOfRange);
        // retention.ms: everything but the active segment is old.
        log.set_config(LogConfig {
            retention_ms: Some(1000),
            retention_bytes: None,
            ..small_config()
        });
        let report = log.apply_retention(10_000).await.unwrap();
        assert!(!report.deleted_segments.is_empty());
        assert_eq!(log.segment_count(), 1);
        let start = log.delete_records_before(Offset(590)).await.unwrap();
        assert_eq!(start, Offset(590));
        let got = contents(&log).await;
        assert_eq!(got.first().unwrap().0, 590);
        log.close().await.unwrap();
    });
}

#[test]
fn log_append_time_rewrites_max_timestamp() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let config = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..small_config()
        };
        let log = PartitionLog::open(dir.join("t-0"), config, &shard)
            .await
            .unwrap();
        let info = log
            .append(&batch(3, Some(b"k"), Some(b"v"), 1), 777)
            .await
            .unwrap();
        assert_eq!(info.log_append_time_ms, Some(777));
        let data = read_bytes(&log.read(Offset(0), 1000, true).await.unwrap().data);
        let header = check_batch(&data).unwrap();
        assert_eq!(header.max_timestamp, 777);
        assert!(header.is_log_append_time());
        let refused = log
            .append(&Bytes::from_static(b"garbage"), 1)
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::CorruptMessage);
        log.close().await.unwrap();
    });
}

/// A batch of records with the given (key, value) pairs, encoded by
/// kafka-protocol with `compression`.
fn keyed_batch(
    pairs: &[(&str, Option<&str>)],
    timestamp_ms: i64,
    compression: kafka_protocol::records::Compression,
) -> Vec<u8> {
    let records: Vec<super::batch::test_batches::KeyValue> = pairs
        .iter()
        .map(|(key, value)| (Some(key.as_bytes()), value.map(str::as_bytes)))
        .collect();
    super::batch::test_batches::encoded_batch(&records, timestamp_ms, compression)
}

/// Every record readable in the log: (offset, key, value).
async fn records_of(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let options = ReadOptions {
            max_bytes: 1 << 20,
            min_one_batch: true,
            upper_offset: None,
            zero_copy: offset.0 % 2 == 0,
        };
        let data = log.read_with(offset, options).await.unwrap().data;
        let mut bytes = Bytes::from(read_bytes(&data));
        assert!(!bytes.is_empty(), "empty read at {offset}");
        for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
            for record in set.records {
                let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                offset = Offset(record.offset + 1);
                if record.offset >= log.log_start_offset().0 {
                    out.push((record.offset, text(record.key).unwrap(), text(record.value)));
                }
            }
        }
    }
    out
}

#[test]
fn compaction_keeps_the_last_record_per_key_and_preserves_offsets() {
    use kafka_protocol::records::Compression;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let path = dir.join("compacted-0");
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            segment_bytes: 4096,
            index_interval_bytes: 256,
            delete_retention_ms: 1000,
            ..small_config()
        };
        let log = PartitionLog::open(&path, config.clone(), &shard)
            .await
            .unwrap();
        let codecs = [
            Compression::None,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Gzip,
        ];
        for round in 0..40 {
            let values: Vec<String> = (0..4)
                .map(|k| format!("v{k}-{round}-{}", "x".repeat(40)))
                .collect();
            let mut pairs: Vec<(String, Option<String>)> = (0..4)
                .map(|k| (format!("k{}", (round + k) % 10), Some(values[k].clone())))
                .collect();
            if round == 5 {
                pairs.push(("gone".into(), Some("soon deleted".into())));
            }
            if round == 20 {
                pairs.push(("gone".into(), None)); // old tombstone: removed
            }
            if round == 38 {
                pairs.push(("k4".into(), None)); // recent tombstone: kept
            }
            let refs: Vec<(&str, Option<&str>)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect();
            let timestamp_ms = if round < 30 { 0 } else { 100_000 };
            log.append(&keyed_batch(&refs, timestamp_ms, codecs[round % 4]), 1)
                .await
                .unwrap();
        }
        // Keyless records are refused on a compacted log.
        let keyless = super::batch::test_batches::batch(1, None, Some(b"v"), 1);
        assert_eq!(
            log.append(&keyless, 1).await.unwrap_err().kind(),
            ErrorKind::InvalidRecord
        );
        log.roll(1).await.unwrap();
        let before = records_of(&log).await;
        let end = log.log_end_offset();
        let report = log.compact(100_500).await.unwrap();
        assert!(
            !report.segments_rewritten.is_empty() && report.bytes_after < report.bytes_before,
            "{report:?}"
        );
        assert_eq!(log.log_end_offset(), end);
        let after = records_of(&log).await;
        // The expected survivors: the last record of each key (tombstones
        // written at timestamp 0 are past delete.retention.ms).
        let mut last = std::collections::HashMap::new();
        for (offset, key, value) in &before {
            last.insert(key.clone(), (*offset, value.clone()));
        }
        let mut expected: Vec<(i64, String, Option<String>)> = last
            .into_iter()
            .filter(|(key, _)| key != "gone")
            .map(|(key, (offset, value))| (offset, key, value))
            .collect();
        expected.sort();
        assert_eq!(after, expected);
        assert!(after
            .iter()
            .any(|(_, key, value)| key == "k4" && value.is_none()));
        // Offsets inside removed ranges still read (the next batch).
        for offset in 0..end.0 {
            let data = log.read(Offset(offset), 100, true).await.unwrap().data;
            assert!(!read_bytes(&data).is_empty());
        }
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, config.clone(), &shard)
            .await
            .unwrap();
        assert_eq!(records_of(&log).await, expected);
        // A second pass finds nothing new to do.
        assert!(log
            .compact(100_500)
            .await
            .unwrap()
            .segments_rewritten
            .is_empty());
        log.close().await.unwrap();
    });
}

/// Resolves `future` or panics after `ms` milliseconds.
async fn within<T>(ms: u64, future: impl Future<Output = T>) -> T {
    let timeout = async {
        glommio::timer::sleep(std::time::Duration::from_millis(ms)).await;
        panic!("timed out after {ms} ms");
    };
    futures_lite::future::or(future, timeout).await
}

#[test]
fn flush_policy_follows_flush_messages_and_flush_ms() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let by_count = LogConfig {
            flush_messages: 5,
            flush_ms: None,
            ..small_config()
        };
        let log = PartitionLog::open(dir.join("count-0"), by_count, &shard)
            .await
            .unwrap();
        assert!(!log.config().syncs_every_append());
        for i in 0..4 {
            log.append(&batch(1, Some(b"k"), Some(&value(i)), 1), 1)
                .await
                .unwrap();
        }
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            log.durable_end_offset(),
            Offset(0),
            "four records stay unsynced"
        );
        assert_eq!(shard.flush_stats().syncs, 0);
        let info = log
            .append(&batch(1, Some(b"k"), Some(b"fifth"), 1), 1)
            .await
            .unwrap();
        within(2000, log.wait_durable(info.last_offset))
            .await
            .unwrap();
        assert_eq!(shard.flush_stats().records, 5);

        let by_time = LogConfig {
            flush_messages: u64::MAX,
            flush_ms: Some(100),
            ..small_config()
        };
        let log = PartitionLog::open(dir.join("time-0"), by_time, &shard)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let info = log
            .append(&batch(1, Some(b"k"), Some(b"v"), 1), 1)
            .await
            .unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(30)).await;
        assert_eq!(
            log.durable_end_offset(),
            Offset(0),
            "not synced before flush.ms"
        );
        within(2000, log.wait_durable(info.last_offset))
            .await
            .unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(100));
        log.close().await.unwrap();
    });
}

#[test]
fn leader_epochs_are_checkpointed_and_truncated() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir).await;
        let path = dir.join("t-0");
        let log = PartitionLog::open(&path, small_config(), &shard)
            .await
            .unwrap();
        log.assign_leader_epoch(1, Offset(0)).await.unwrap();
        for i in 0..10 {
            log.append(&batch(1, Some(b"k"), Some(&value(i)), 1), 1)
                .await
                .unwrap();
        }
        log.assign_leader_epoch(2, Offset(10)).await.unwrap();
        log.assign_leader_epoch(2, Offset(12)).await.unwrap(); // not newer: ignored
        for i in 0..10 {
            log.append(&batch(1, Some(b"k"), Some(&value(i)), 1), 1)
                .await
                .unwrap();
        }
        let epochs = |list: Vec<EpochEntry>| {
            list.iter()
                .map(|e| (e.epoch, e.start_offset.0))
                .collect::<Vec<_>>()
        };
        assert_eq!(epochs(log.leader_epochs()), vec![(1, 0), (2, 10)]);
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, small_config(), &shard)
            .await
            .unwrap();
        assert_eq!(epochs(log.leader_epochs()), vec![(1, 0), (2, 10)]);
        log.truncate_to(Offset(7)).await.unwrap();
        assert_eq!(epochs(log.leader_epochs()), vec![(1, 0)]);
        drop(log); // crash: the truncated epochs were checkpointed
        let log = PartitionLog::open(&path, small_config(), &shard)
            .await
            .unwrap();
        assert_eq!(epochs(log.leader_epochs()), vec![(1, 0)]);
        assert_eq!(log.log_end_offset(), Offset(7));
        log.close().await.unwrap();
    });
}

#[test]
fn segment_ms_rolls_and_the_maintenance_timer_applies_retention() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let mut storage = StorageConfig::new(&dir);
        storage.retention_check_interval_ms = 20;
        let shard = ShardStorage::new(storage);
        let config = LogConfig {
            segment_ms: 100,
            segment_bytes: 1 << 30,
            ..small_config()
        };
        let log = PartitionLog::open(dir.join("t-0"), config.clone(), &shard)
            .await
            .unwrap();
        for now_ms in [0, 50, 99, 100, 150, 250] {
            log.append(&batch(1, Some(b"k"), Some(b"v"), now_ms), now_ms)
                .await
                .unwrap();
        }
        // Rolled when the active segment reached 100 ms of age, twice.
        assert_eq!(
            log.segment_base_offsets(),
            vec![Offset(0), Offset(3), Offset(5)]
        );
        log.set_config(LogConfig {
            retention_bytes: Some(1),
            ..config
        });
        let timer = shard.spawn_maintenance();
        glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(
            log.segment_base_offsets(),
            vec![Offset(5)],
            "the timer deleted closed segments"
        );
        assert_eq!(log.log_start_offset(), Offset(5));
        drop(timer);
        log.close().await.unwrap();
    });
}
