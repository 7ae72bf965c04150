//! Storage engine: partition logs on direct-I/O segments (issue 3).
//!
//! Owns everything on disk for partition data: Kafka's layout
//! (`<data_dir>/<topic>-<partition>/<base_offset:020>.log|.index|.timeindex`
//! plus `log-start-offset-checkpoint` and `leader-epoch-checkpoint`), the
//! append path with group commit, reads by offset and timestamp, recovery,
//! retention, compaction and the shard read cache. Everything is per shard:
//! types hold `Rc`/`RefCell`, are not `Send`, and never block the executor
//! on the request path (open/recovery may use `std::fs`, noted where used).
//!
//! Architecture Invariant: storage knows no Kafka API. It stores v2 record
//! batches as received (any codec) with only the base offset, and for
//! LogAppendTime the max timestamp and CRC, rewritten; it answers by offset
//! and timestamp. Errors carry an [`ErrorKind`] the protocol layer maps to
//! CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE, OFFSET_OUT_OF_RANGE
//! or KAFKA_STORAGE_ERROR.
//!
//! Architecture Invariant: untrusted bytes (produce payloads, disk contents)
//! never panic; `assert!` guards only our own invariants.
//!
//! # API the broker calls
//!
//! ```text
//! prime_direct_io(data_dir).await                          // once, before any other DmaFile (see shard.rs)
//! ShardStorage::new(StorageConfig) -> ShardStorage          // once per shard, on its executor
//! PartitionLog::open(dir, LogConfig, &ShardStorage).await -> Result<PartitionLog>
//! PartitionLog::dir_for(&shard, topic, partition) -> PathBuf   // <data_dir>/<topic>-<partition>
//! log.append(&records, now_ms).await -> Result<AppendInfo>  // one produce payload, all or nothing
//! log.wait_durable(last_offset).await -> Result<()>        // acks=all (group commit)
//! log.config().syncs_every_append()                         // whether acks=all should wait
//! log.flush().await                                         // force a sync now
//! log.read(offset, max_bytes, min_one_batch).await -> Result<ReadResult>  // Memory or File region
//! log.read_with(offset, ReadOptions { upper_offset, zero_copy, .. }).await
//! log.offset_for_timestamp(ts).await -> Result<Option<(Offset, i64)>>
//! log.log_start_offset(), log.log_end_offset(), log.durable_end_offset()
//! log.delete_records_before(offset).await -> Result<Offset>
//! log.truncate_to(offset).await -> Result<Offset>
//! log.assign_leader_epoch(epoch, offset).await, log.leader_epochs()
//! log.roll(now_ms).await, log.segment_base_offsets(), log.size_bytes()
//! log.apply_retention(now_ms).await, log.compact(now_ms).await, log.run_maintenance(now_ms).await
//! log.recovery_report() -> RecoveryReport
//! log.close().await (clean-shutdown marker), log.remove().await
//! shard.spawn_maintenance() / shard.run_maintenance(now_ms)   // the cleaner (log.cleaner.backoff.ms), retention + compaction timer
//! shard.cache_stats(), shard.flush_stats(), shard.stop()
//! ```
//!
//! Errors: [`StorageError::kind`] gives the Kafka error to answer.
//! Reads return whole batches, starting with the batch that contains the
//! offset; [`ReadData::Memory`] holds one `Bytes` per batch.
//!
//! Decisions, each with its reason:
//! - Offset-index keys are batch *base* offsets, so every entry is a batch
//!   boundary and a read scans forward from it; Kafka keys by last offset,
//!   which needs the same forward scan.
//! - Unclean recovery scans the whole active segment (not only from its last
//!   index entry) so that damage anywhere in unsynced-at-roll data is found;
//!   closed segments were synced and their indexes written when they rolled.
//! - Appends are synchronous up to the copy into the aligned buffer; writes
//!   run in spawned tasks and the group-commit flusher syncs them, so a
//!   producer never waits for another partition's I/O.
//! - Preallocation grows with the segment (one write buffer up to
//!   `preallocate_bytes`): a shard holds thousands of mostly idle partitions,
//!   and a fixed 64 MiB per active segment once filled the disk.
//! - Fault injection is compiled in (one thread-local read per write when
//!   unarmed) so that integration tests can use it; see [`fault`].

mod appender;
pub mod batch;
mod cache;
pub(crate) mod checkpoint;
mod compaction;
mod config;
mod error;
pub mod fault;
mod flusher;
mod index;
mod leader_epochs;
mod log;
mod notify;
mod read_ahead;
mod reader;
mod record_checks;
mod recovery;
mod retention;
mod segment;
mod shard;
mod truncate;

pub use cache::CacheStats;
pub use checkpoint::EpochEntry;
pub use compaction::CompactionReport;
pub use config::{CleanupPolicy, LogConfig, StorageConfig, TimestampType, ALIGN_BYTES};
pub use error::{ErrorKind, RecordError, Result, StorageError};
pub use flusher::FlushStats;
pub use log::{AppendInfo, DurableFuture, PartitionLog};
pub use reader::{FileRegion, ReadData, ReadOptions, ReadResult};
pub use record_checks::{RecordChecks, TimestampWindow, KEYLESS_ON_COMPACTED};
pub use recovery::{RecoveryReport, Truncation};
pub use retention::RetentionReport;
pub use shard::{prime_direct_io, ShardStorage};

use std::path::PathBuf;

/// A Kafka offset. Distinct from positions (bytes in a file) and counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What one maintenance pass did to one log.
#[derive(Clone, Debug, Default)]
pub struct MaintenanceReport {
    pub dir: PathBuf,
    pub retention: RetentionReport,
    pub compaction: CompactionReport,
    pub error: Option<String>,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    /// Retention (and, for compacted logs, compaction) for this log.
    pub async fn run_maintenance(&self, now_ms: i64) -> MaintenanceReport {
        let mut report = MaintenanceReport {
            dir: self.dir().to_path_buf(),
            ..MaintenanceReport::default()
        };
        match retention::apply(self, now_ms).await {
            Ok(retention) => report.retention = retention,
            Err(error) => report.error = Some(error.to_string()),
        }
        if report.error.is_none() && self.config().cleanup_policy.compacts() {
            match compaction::compact(self, now_ms).await {
                Ok(compaction) => report.compaction = compaction,
                Err(error) => report.error = Some(error.to_string()),
            }
        }
        report
    }

    /// The cleaner's pass over this log: rolls an active segment older than
    /// `max.compaction.lag.ms`, then compacts if the log is dirty enough
    /// (see `compaction::cleaning_priority`). `None` when there was nothing
    /// to do.
    pub async fn clean_if_due(&self, now_ms: i64) -> Option<Result<CompactionReport>> {
        if compaction::active_overdue(self, now_ms) {
            if let Err(error) = self.roll(now_ms).await {
                return Some(Err(error));
            }
        }
        compaction::cleaning_priority(self, now_ms)?;
        Some(self.compact(now_ms).await)
    }

    /// The cleaner's priority for this log now, if it is due (dirtiest
    /// first; overdue by `max.compaction.lag.ms` before any).
    pub fn cleaning_priority(&self, now_ms: i64) -> Option<f64> {
        compaction::cleaning_priority(self, now_ms)
            .or_else(|| compaction::active_overdue(self, now_ms).then_some(f64::INFINITY))
    }

    /// Compacts the closed segments (`cleanup.policy=compact`): keeps the
    /// last record per key, drops tombstones older than
    /// `delete.retention.ms`, preserves offsets. Runs whatever the policy.
    pub async fn compact(&self, now_ms: i64) -> Result<CompactionReport> {
        self.inner.check_usable()?;
        compaction::compact(self, now_ms).await
    }

    /// Deletes closed segments past `retention.ms` / `retention.bytes` or
    /// below the log start offset.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<RetentionReport> {
        retention::apply(self, now_ms).await
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
pub(crate) mod tests;
