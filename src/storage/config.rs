//! Configuration of logs (Kafka's per-topic settings) and of a shard's storage.
//!
//! Owns: [`LogConfig`] (one per partition log, Kafka's topic-level names with
//! units last) and [`StorageConfig`] (one per shard: cache size, write buffer
//! sizes, timers). Plain data: it does no I/O and must not read files.

use std::path::PathBuf;

/// Alignment of every direct-I/O buffer address, file position and length.
/// 4096 is safe on NVMe and on this machine's 512-byte virtual disk.
pub const ALIGN_BYTES: u64 = 4096;

/// Kafka's `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// Kafka's `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Per-log settings, named after Kafka's topic configs.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when it is older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: one offset-index entry per this many log bytes.
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `retention.ms`: delete closed segments whose newest record is older
    /// than this. `None` is Kafka's -1 (keep forever).
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete the oldest closed segments while the log is
    /// larger than this. `None` is Kafka's -1.
    pub retention_bytes: Option<u64>,
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps tombstones.
    pub delete_retention_ms: i64,
    /// `flush.messages`: sync once this many records are unsynced. The
    /// default, 1, syncs every append (grouped with all others on the shard),
    /// so `acks=all` is answered only after the data is on disk.
    pub flush_messages: u64,
    /// `flush.ms`: sync at the latest this long after the first unsynced
    /// append. `None` is Kafka's default (Long.MAX_VALUE).
    pub flush_ms: Option<i64>,
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: with CreateTime, a record more
    /// than this older than the broker's clock is refused. `None` is
    /// Long.MAX_VALUE (no bound).
    pub timestamp_before_max_ms: Option<i64>,
    /// `message.timestamp.after.max.ms`: with CreateTime, a record more than
    /// this ahead of the broker's clock is refused. `None`: no bound.
    pub timestamp_after_max_ms: Option<i64>,
    /// `min.cleanable.dirty.ratio`: the cleaner compacts a log once this
    /// share of its closed bytes is new since the last pass.
    pub min_cleanable_dirty_ratio: f64,
    /// `max.compaction.lag.ms`: a record older than this is compacted
    /// whatever the ratio (the active segment is rolled for it). `None` is
    /// Kafka's default (Long.MAX_VALUE).
    pub max_compaction_lag_ms: Option<i64>,
    /// `min.compaction.lag.ms`: a segment holding a record younger than
    /// this is not compacted yet (nor any after it).
    pub min_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            flush_messages: 1,
            flush_ms: None,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: None,
            timestamp_after_max_ms: None,
            min_cleanable_dirty_ratio: 0.5,
            max_compaction_lag_ms: None,
            min_compaction_lag_ms: 0,
        }
    }
}

impl LogConfig {
    /// True when every append is synced as soon as possible: the producer
    /// path should then await [`super::PartitionLog::wait_durable`] before
    /// answering `acks=all`.
    pub fn syncs_every_append(&self) -> bool {
        self.flush_messages <= 1
    }
}

/// Per-shard storage settings.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// `log.dirs` (one directory): partition directories live under it.
    pub data_dir: PathBuf,
    /// Bound of the shard's read cache, in bytes of cached batches.
    pub read_cache_bytes: usize,
    /// Size of one aligned write buffer of a segment appender.
    pub write_buffer_bytes: usize,
    /// Most full write buffers in flight per segment before appends wait.
    pub write_buffers_in_flight_max: usize,
    /// Largest preallocation step of segment files (fallocate), in bytes.
    /// The step grows with the segment (from one write buffer), so idle
    /// partitions hold little unused disk; 0 disables preallocation.
    pub preallocate_bytes: u64,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`.
    pub cleaner_backoff_ms: u64,
    /// `log.cleaner.io.max.bytes.per.second`: compaction pauses after each
    /// rewritten segment to stay under it.
    pub cleaner_io_bytes_per_second: f64,
    /// Bytes a reader into memory has read ahead of it per chunk, from the
    /// disk into the read cache (see `read_ahead.rs`); 0 disables it.
    pub read_ahead_bytes: u64,
}

impl StorageConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_dir: data_dir.into(),
            read_cache_bytes: 64 << 20,
            write_buffer_bytes: 1 << 20,
            write_buffers_in_flight_max: 4,
            preallocate_bytes: 8 << 20,
            retention_check_interval_ms: 300_000,
            cleaner_backoff_ms: 15_000,
            cleaner_io_bytes_per_second: f64::MAX,
            read_ahead_bytes: 4 << 20,
        }
    }
}

const _: () = assert!(ALIGN_BYTES.is_power_of_two());
