//! Property test: the partition log against a simple in-memory model under
//! random appends, reads by offset and timestamp, rolls, retention,
//! DeleteRecords, truncation, and clean or unclean restarts.

use proptest::prelude::*;

use super::batch::set_base_offset;
use super::batch::test_batches::batch;
use super::tests::{read_bytes, run};
use super::*;

#[derive(Clone, Debug)]
enum Op {
    Append {
        records: i32,
        value_bytes: usize,
        timestamp_ms: i64,
    },
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
        6 => (1..5i32, 0..3000usize, 0..1000i64)
            .prop_map(|(records, value_bytes, timestamp_ms)| Op::Append { records, value_bytes, timestamp_ms }),
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
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Model {
    batches: Vec<ModelBatch>,
    log_start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.log_start, |b| b.last + 1)
    }

    /// An offset in [log_start, end] chosen by `at`.
    fn pick(&self, at: u16) -> i64 {
        let span = self.end() - self.log_start + 1;
        self.log_start + (at as i64 % span)
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
    let first = model.batches.iter().position(|b| b.last >= offset).unwrap();
    let mut expected = Vec::new();
    for (i, b) in model.batches[first..].iter().enumerate() {
        if i > 0 && expected.len() + b.bytes.len() > max_bytes {
            break;
        }
        expected.extend_from_slice(&b.bytes);
    }
    assert!(!got.is_empty(), "read at {offset} returned nothing");
    assert!(
        got.len() <= expected.len() && got[..] == expected[..got.len()],
        "read at {offset}"
    );
    assert!(got.len() == expected.len() || got.len() >= model.batches[first].bytes.len());
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
        } => {
            let mut bytes = batch(
                records,
                Some(b"key"),
                Some(&vec![7u8; value_bytes]),
                timestamp_ms,
            );
            let info = log.append(&bytes, 1).await.unwrap();
            assert_eq!(info.base_offset.0, model.end());
            set_base_offset(&mut bytes, info.base_offset.0);
            model.batches.push(ModelBatch {
                base: info.base_offset.0,
                last: info.last_offset.0,
                timestamp_ms,
                bytes,
            });
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
            assert!(
                start == model.end()
                    || model.batches.iter().any(|b| b.base == start)
                    || start == model.log_start
            );
            model.log_start = start;
            model.batches.retain(|b| b.last >= start);
        }
        Op::DeleteRecords { at } => {
            let offset = model.pick(at);
            log.delete_records_before(Offset(offset)).await.unwrap();
            model.log_start = offset.max(model.log_start);
            model.batches.retain(|b| b.last >= model.log_start);
        }
        Op::Truncate { at } => {
            let offset = model.pick(at);
            let new_end = log.truncate_to(Offset(offset)).await.unwrap();
            if offset < model.end() {
                let cut = model.batches.iter().position(|b| b.last >= offset).unwrap();
                assert_eq!(new_end.0, model.batches[cut].base);
                model.batches.truncate(cut);
                model.log_start = model.log_start.min(new_end.0);
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
