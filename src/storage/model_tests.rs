//! Property test: the partition log against a simple in-memory model under
//! random appends, reads by offset and timestamp, rolls, retention,
//! DeleteRecords, truncation, and clean or unclean restarts.

use proptest::prelude::*;

use super::batch::test_batches::batch;
use super::batch::{check_batch, set_base_offset};
use super::tests::{read_bytes, run};
use super::*;

#[derive(Clone, Debug)]
enum Op {
    Append {
        records: i32,
        value_bytes: usize,
        timestamp_ms: i64,
        key: u8,
    },
    Compact,
    Read {
        at: u16,
        max_bytes: usize,
        zero_copy: bool,
    },
    ByTime {
        timestamp_ms: i64,
    },
    Roll,
    Retention {
        bytes: u64,
    },
    DeleteRecords {
        at: u16,
    },
    Truncate {
        at: u16,
    },
    Restart {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..5i32, 0..3000usize, 0..1000i64, 0..4u8)
            .prop_map(|(records, value_bytes, timestamp_ms, key)| Op::Append { records, value_bytes, timestamp_ms, key }),
        1 => Just(Op::Compact),
        4 => (any::<u16>(), 1..20_000usize, any::<bool>())
            .prop_map(|(at, max_bytes, zero_copy)| Op::Read { at, max_bytes, zero_copy }),
        2 => (0..1100i64).prop_map(|timestamp_ms| Op::ByTime { timestamp_ms }),
        1 => Just(Op::Roll),
        1 => (0..60_000u64).prop_map(|bytes| Op::Retention { bytes }),
        1 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

#[derive(Clone, Debug)]
struct ModelBatch {
    base: i64,
    last: i64,
    timestamp_ms: i64,
    key: u8,
    /// The exact bytes, until compaction re-encodes the batch.
    bytes: Option<Vec<u8>>,
}

#[derive(Default)]
struct Model {
    batches: Vec<ModelBatch>,
    log_start: i64,
    log_end: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.log_end
    }

    /// An offset in [log_start, end] chosen by `at`.
    fn pick(&self, at: u16) -> i64 {
        let span = self.end() - self.log_start + 1;
        self.log_start + (at as i64 % span)
    }

    /// Compaction of the batches below `active_base`: per key, only the
    /// latest record survives (every record of a batch has the batch's key).
    fn compact(&mut self, active_base: i64) {
        let mut latest = std::collections::HashMap::new();
        for b in self.batches.iter().filter(|b| b.last < active_base) {
            latest.insert(b.key, b.last);
        }
        self.batches.retain_mut(|b| {
            if b.last >= active_base || latest[&b.key] == b.last && b.base == b.last {
                return true;
            }
            if latest[&b.key] != b.last {
                return false;
            }
            b.base = b.last;
            b.bytes = None;
            true
        });
    }

    fn by_time(&self, timestamp_ms: i64) -> Option<(Offset, i64)> {
        let found = self
            .batches
            .iter()
            .find(|b| b.last >= self.log_start && b.timestamp_ms >= timestamp_ms)?;
        Some((Offset(found.base.max(self.log_start)), found.timestamp_ms))
    }
}

fn config(segment_bytes: u64, index_interval_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        retention_ms: None,
        ..LogConfig::default()
    }
}

async fn check_read(
    log: &PartitionLog,
    model: &Model,
    offset: i64,
    max_bytes: usize,
    zero_copy: bool,
) {
    let options = ReadOptions {
        max_bytes,
        min_one_batch: true,
        upper_offset: None,
        zero_copy,
    };
    let result = log.read_with(Offset(offset), options).await.unwrap();
    let got = read_bytes(&result.data);
    if offset == model.end() {
        assert!(got.is_empty());
        return;
    }
    let Some(first) = model.batches.iter().position(|b| b.last >= offset) else {
        // A compaction gap at the end of the log (after a truncation into
        // it): nothing exists at or after this offset yet.
        assert!(got.is_empty(), "read at {offset} in a trailing gap");
        return;
    };
    assert!(!got.is_empty(), "read at {offset} returned nothing");
    let mut rest = &got[..];
    let mut taken = 0;
    for (i, expected) in model.batches[first..].iter().enumerate() {
        if rest.is_empty() {
            assert!(i > 0);
            break;
        }
        let header = check_batch(rest).unwrap();
        let len = header.total_bytes();
        assert_eq!(
            (header.base_offset, header.last_offset()),
            (expected.base, expected.last),
            "read at {offset}"
        );
        if let Some(bytes) = &expected.bytes {
            assert_eq!(&rest[..len], &bytes[..], "bytes of batch {}", expected.base);
        }
        taken += len;
        rest = &rest[len..];
    }
    assert!(
        rest.is_empty(),
        "read at {offset} returned more than the model"
    );
    assert!(taken <= max_bytes || got.len() == check_batch(&got).unwrap().total_bytes());
}

async fn apply(
    log: &mut PartitionLog,
    model: &mut Model,
    op: &Op,
    shard: &ShardStorage,
    dir: &std::path::Path,
    cfg: &LogConfig,
) {
    match *op {
        Op::Append {
            records,
            value_bytes,
            timestamp_ms,
            key,
        } => {
            let mut bytes = batch(
                records,
                Some(&[key]),
                Some(&vec![7u8; value_bytes]),
                timestamp_ms,
            );
            let info = log.append(&bytes, 1).await.unwrap();
            assert_eq!(info.base_offset.0, model.end());
            set_base_offset(&mut bytes, info.base_offset.0);
            model.log_end = info.last_offset.0 + 1;
            model.batches.push(ModelBatch {
                base: info.base_offset.0,
                last: info.last_offset.0,
                timestamp_ms,
                key,
                bytes: Some(bytes),
            });
        }
        Op::Compact => {
            log.compact(1).await.unwrap();
            let active_base = log.segment_base_offsets().last().unwrap().0;
            model.compact(active_base);
        }
        Op::Read {
            at,
            max_bytes,
            zero_copy,
        } => check_read(log, model, model.pick(at), max_bytes, zero_copy).await,
        Op::ByTime { timestamp_ms } => {
            assert_eq!(
                log.offset_for_timestamp(timestamp_ms).await.unwrap(),
                model.by_time(timestamp_ms),
                "ts {timestamp_ms}"
            );
        }
        Op::Roll => log.roll(1).await.unwrap(),
        Op::Retention { bytes } => {
            log.set_config(LogConfig {
                retention_bytes: Some(bytes),
                ..cfg.clone()
            });
            let report = log.apply_retention(1).await.unwrap();
            log.set_config(cfg.clone());
            let start = report.log_start_offset.0;
            assert!(start >= model.log_start);
            // Whole segments go: no batch straddles the new start.
            let straddles = model
                .batches
                .iter()
                .any(|b| b.base < start && b.last >= start);
            assert!(start == model.log_start || !straddles);
            model.log_start = start;
            model.batches.retain(|b| b.last >= start);
        }
        Op::DeleteRecords { at } => {
            let offset = model.pick(at);
            let start = log.delete_records_before(Offset(offset)).await.unwrap().0;
            let requested = offset.max(model.log_start);
            // Deleting whole segments may move the start further, to the
            // next segment's base (as Kafka does), but past no data.
            assert!(start >= requested);
            assert!(!model
                .batches
                .iter()
                .any(|b| b.last >= requested && b.last < start));
            model.log_start = start;
            model.batches.retain(|b| b.last >= model.log_start);
        }
        Op::Truncate { at } => {
            let offset = model.pick(at);
            let new_end = log.truncate_to(Offset(offset)).await.unwrap();
            if offset < model.end() {
                // The batch holding the offset goes whole; an offset in a
                // compaction gap becomes the new end itself.
                let cut = model.batches.iter().position(|b| b.last >= offset);
                let expected = cut.map_or(offset, |cut| model.batches[cut].base.min(offset));
                assert_eq!(new_end.0, expected, "truncate to {offset}");
                model.batches.truncate(cut.unwrap_or(model.batches.len()));
                model.log_start = model.log_start.min(new_end.0);
                model.log_end = new_end.0;
            }
        }
        Op::Restart { clean } => {
            if clean {
                log.close().await.unwrap();
            } else {
                log.flush().await.unwrap();
            }
            *log = PartitionLog::open(dir, cfg.clone(), shard).await.unwrap();
            assert_eq!(log.recovery_report().damage().count(), 0);
        }
    }
    assert_eq!(log.log_end_offset().0, model.end(), "after {op:?}");
    assert_eq!(log.log_start_offset().0, model.log_start, "after {op:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(
        ops in prop::collection::vec(op(), 1..60),
        segment_bytes in 8_192u64..40_000,
        index_interval_bytes in 256u64..4096,
        cache_bytes in prop_oneof![Just(0usize), Just(1usize << 20)],
    ) {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        run(move || async move {
            let mut storage = StorageConfig::new(&dir);
            storage.read_cache_bytes = cache_bytes;
            storage.write_buffer_bytes = 16 << 10;
            storage.preallocate_bytes = 64 << 10;
            let shard = ShardStorage::new(storage);
            let cfg = config(segment_bytes, index_interval_bytes);
            let path = dir.join("t-0");
            let mut log = PartitionLog::open(&path, cfg.clone(), &shard).await.unwrap();
            let mut model = Model::default();
            for op in &ops {
                apply(&mut log, &mut model, op, &shard, &path, &cfg).await;
            }
            let end = model.end();
            for offset in model.log_start..end {
                check_read(&log, &model, offset, 5000, offset % 2 == 0).await;
            }
            log.close().await.unwrap();
        });
    }
}
