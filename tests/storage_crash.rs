//! Crash and fault tests of the storage engine: a writer killed with SIGKILL
//! in the middle of appends, and injected faults (short write, torn last
//! block, EIO on write and on fdatasync, corrupt bytes in a segment, damaged
//! index). Each checks that recovery keeps every synced batch, serves
//! nothing corrupt, and reports what it cut.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice::storage::batch::check_batch;
use sluice::storage::batch::test_batches::batch;
use sluice::storage::fault::{self, Fault, FaultPoint};
use sluice::storage::{
    LogConfig, Offset, PartitionLog, ReadData, ReadOptions, ShardStorage, StorageConfig,
};

fn run<F, Fut>(body: F)
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

fn shard(dir: &Path) -> ShardStorage {
    let mut config = StorageConfig::new(dir);
    config.read_cache_bytes = 0; // every read goes to disk
    config.write_buffer_bytes = 64 << 10;
    config.preallocate_bytes = 1 << 20;
    ShardStorage::new(config)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10,
        index_interval_bytes: 2048,
        ..LogConfig::default()
    }
}

/// Reads the whole log both ways (memory, with CRC checks in the log; and
/// file regions, checked here) and returns the (base, last) offsets.
async fn read_all_checked(log: &PartitionLog) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let mut seen = Vec::new();
        for zero_copy in [false, true] {
            let options = ReadOptions {
                max_bytes: 64 << 10,
                min_one_batch: true,
                upper_offset: None,
                zero_copy,
            };
            let data = log.read_with(offset, options).await.expect("read").data;
            let bytes = match &data {
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
                ReadData::Empty => panic!("empty read below the log end at {offset}"),
            };
            let mut rest = &bytes[..];
            let mut batches = Vec::new();
            while !rest.is_empty() {
                let header = check_batch(rest).expect("served batch is valid");
                batches.push((header.base_offset, header.last_offset()));
                rest = &rest[header.total_bytes()..];
            }
            seen.push(batches);
        }
        let batches = seen.swap_remove(0);
        assert!(batches[0].0 <= offset.0 && offset.0 <= batches[0].1);
        offset = Offset(batches.last().unwrap().1 + 1);
        out.extend(batches);
    }
    out
}

fn value(i: usize) -> Vec<u8> {
    vec![(i % 199) as u8; 500 + (i * 131) % 3000]
}

/// Appends `count` batches and waits for each to be durable.
async fn append_synced(log: &PartitionLog, count: usize) -> Offset {
    let mut last = Offset(-1);
    for i in 0..count {
        let info = log
            .append(&batch(2, Some(b"k"), Some(&value(i)), 1), 1)
            .await
            .unwrap();
        last = info.last_offset;
    }
    log.wait_durable(last).await.unwrap();
    last
}

fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

#[test]
fn sigkill_in_the_middle_of_appends_keeps_every_synced_batch() {
    let writer = example_path("storage_writer");
    assert!(writer.exists(), "build the example first: {writer:?}");
    let temp = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(&writer)
            .args([
                temp.path().to_str().unwrap(),
                "4",
                &(1000 + 3000 * round).to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut synced_max = -1i64;
        let started = Instant::now();
        for line in stdout.lines() {
            let line = line.unwrap();
            let offset: i64 = line.strip_prefix("synced ").unwrap().parse().unwrap();
            synced_max = synced_max.max(offset);
            if started.elapsed() > Duration::from_millis(700) {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(synced_max > 0, "the writer synced something");
        let dir = temp.path().to_path_buf();
        run(move || async move {
            let shard = shard(&dir);
            let log = PartitionLog::open(dir.join("crash-0"), config(), &shard)
                .await
                .unwrap();
            let report = log.recovery_report();
            assert!(!report.clean_shutdown);
            assert!(
                log.log_end_offset().0 > synced_max,
                "lost synced data: {report:?}"
            );
            let batches = read_all_checked(&log).await;
            assert_eq!(batches.first().unwrap().0, 0);
            assert!(batches.windows(2).all(|w| w[0].1 + 1 == w[1].0));
            eprintln!(
                "round {round}: synced {synced_max}, recovered {}, {report:?}",
                log.log_end_offset()
            );
            log.close().await.unwrap();
        });
    }
}

/// Appends synced batches, arms `fault`, appends more (which fail), then
/// crashes (drops the log) and recovers.
fn fault_then_recover(point: FaultPoint, fault: Fault, skip: u32) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir);
        let path = dir.join("t-0");
        let log = PartitionLog::open(&path, config(), &shard).await.unwrap();
        let synced = append_synced(&log, 100).await;
        fault::arm(point, fault, skip);
        let mut failed = false;
        for i in 0..200 {
            match log
                .append(&batch(2, Some(b"k"), Some(&value(i)), 1), 1)
                .await
            {
                Ok(info) => {
                    if log.wait_durable(info.last_offset).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        fault::clear();
        assert!(failed, "the injected {fault:?} surfaced as an error");
        let error = log
            .append(&batch(1, Some(b"k"), Some(b"v"), 1), 1)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), sluice::storage::ErrorKind::StorageError);
        drop(log);
        let log = PartitionLog::open(&path, config(), &shard).await.unwrap();
        let report = log.recovery_report();
        assert!(log.log_end_offset() > synced, "{report:?}");
        let batches = read_all_checked(&log).await;
        assert!(batches.last().unwrap().1 >= synced.0);
        eprintln!(
            "{fault:?}: recovered to {}; {report:?}",
            log.log_end_offset()
        );
        let info = log
            .append(&batch(1, Some(b"k"), Some(b"after"), 1), 1)
            .await
            .unwrap();
        log.wait_durable(info.last_offset).await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn eio_on_write_fails_the_log_and_recovery_keeps_synced_data() {
    fault_then_recover(FaultPoint::SegmentWrite, Fault::Eio, 0);
}

#[test]
fn short_write_is_cut_by_recovery() {
    fault_then_recover(FaultPoint::SegmentWrite, Fault::ShortWrite, 3);
}

#[test]
fn torn_last_block_is_cut_by_recovery() {
    fault_then_recover(FaultPoint::SegmentWrite, Fault::TornLastBlock, 2);
}

#[test]
fn eio_on_fdatasync_fails_waiters_and_recovery_keeps_synced_data() {
    fault_then_recover(FaultPoint::SegmentSync, Fault::Eio, 0);
}

fn flip_bytes(path: &Path, position: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes[position..position + 16] {
        *b ^= 0x5A;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_bytes_in_the_middle_of_the_active_segment_are_cut_and_reported() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir);
        let path = dir.join("t-0");
        let log = PartitionLog::open(
            &path,
            LogConfig {
                segment_bytes: 1 << 30,
                ..config()
            },
            &shard,
        )
        .await
        .unwrap();
        append_synced(&log, 60).await;
        drop(log); // crash
        let segment = path.join(format!("{:020}.log", 0));
        flip_bytes(&segment, 50_000);
        let log = PartitionLog::open(&path, config(), &shard).await.unwrap();
        let report = log.recovery_report();
        let damage: Vec<_> = report.damage().cloned().collect();
        assert_eq!(damage.len(), 1, "{report:?}");
        assert!(damage[0].position_bytes <= 50_000 && damage[0].cut_bytes > 0);
        let batches = read_all_checked(&log).await;
        assert_eq!(batches.last().unwrap().1 + 1, log.log_end_offset().0);
        assert!(log.log_end_offset().0 > 0 && log.log_end_offset().0 < 120);
        log.close().await.unwrap();
    });
}

#[test]
fn damaged_index_is_rebuilt_and_corrupt_closed_segment_is_cut() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir);
        let path = dir.join("t-0");
        let log = PartitionLog::open(&path, config(), &shard).await.unwrap();
        append_synced(&log, 400).await;
        assert!(log.segment_count() >= 3);
        let expected = read_all_checked(&log).await;
        log.close().await.unwrap();
        // Garbage in the first segment's index: rebuilt, nothing lost.
        let first_index = path.join(format!("{:020}.index", 0));
        std::fs::write(&first_index, b"not an index").unwrap();
        let log = PartitionLog::open(&path, config(), &shard).await.unwrap();
        assert_eq!(log.recovery_report().indexes_rebuilt, vec![Offset(0)]);
        assert_eq!(read_all_checked(&log).await, expected);
        log.close().await.unwrap();
        // Corrupt bytes in the first (closed) segment, index missing: the
        // rebuild finds the damage, cuts there and drops later segments.
        flip_bytes(&path.join(format!("{:020}.log", 0)), 100_000);
        std::fs::remove_file(&first_index).unwrap();
        let log = PartitionLog::open(&path, config(), &shard).await.unwrap();
        let report = log.recovery_report();
        assert_eq!(report.damage().count(), 1, "{report:?}");
        assert!(!report.segments_dropped.is_empty());
        let batches = read_all_checked(&log).await;
        assert_eq!(&batches[..], &expected[..batches.len()]);
        log.close().await.unwrap();
    });
}

#[test]
fn plausible_but_wrong_index_is_rebuilt_not_trusted_to_cut() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    run(move || async move {
        let shard = shard(&dir);
        let path = dir.join("t-0");
        let log = PartitionLog::open(&path, config(), &shard).await.unwrap();
        append_synced(&log, 40).await;
        let expected = read_all_checked(&log).await;
        log.close().await.unwrap();
        // Well-formed entries (increasing, inside the file) that point into
        // the middle of batches of the active segment.
        let mut index = Vec::new();
        for (relative, position) in [(1u32, 100u32), (3, 5000)] {
            index.extend_from_slice(&relative.to_be_bytes());
            index.extend_from_slice(&position.to_be_bytes());
        }
        let active_base = log.segment_base_offsets().last().unwrap().0;
        std::fs::write(path.join(format!("{active_base:020}.index")), index).unwrap();
        let log = PartitionLog::open(&path, config(), &shard).await.unwrap();
        let report = log.recovery_report();
        assert!(report.truncations.is_empty(), "{report:?}");
        assert_eq!(report.indexes_rebuilt, vec![Offset(active_base)]);
        assert_eq!(read_all_checked(&log).await, expected);
        log.close().await.unwrap();
    });
}
