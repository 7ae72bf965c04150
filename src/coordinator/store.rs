//! Where `__consumer_offsets` records go: the [`OffsetsLog`] trait, and
//! [`MemoryLog`], the implementation that keeps them in memory.
//!
//! Shard-local: one log per coordinator shard, holding the records of the
//! offsets partitions that shard owns. An implementation must keep the
//! order of appends per partition and be committed (durable; with
//! replication, under the high watermark) when `append` returns `Ok`;
//! `read` returns a partition's records in append order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use super::errors;
use super::records::LogRecord;

pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Why an append did not commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// This node does not lead the partition (any more): the group moved.
    NotLeader(String),
    /// The storage failed.
    Storage(String),
}

impl AppendError {
    /// The error code a request whose records did not commit answers.
    pub fn code(&self) -> i16 {
        match self {
            AppendError::NotLeader(_) => errors::NOT_COORDINATOR,
            AppendError::Storage(_) => errors::KAFKA_STORAGE_ERROR,
        }
    }
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::NotLeader(message) | AppendError::Storage(message) => f.write_str(message),
        }
    }
}

/// What a partition holds: its records (those of committed transactions
/// included, at their commit marker), oldest first, and the records of
/// transactions still open, by producer id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadRecords {
    pub records: Vec<LogRecord>,
    pub pending: BTreeMap<i64, Vec<LogRecord>>,
}

pub trait OffsetsLog {
    /// Appends `records` (possibly of several partitions), in order, and
    /// returns once they are committed.
    fn append(&self, records: Vec<LogRecord>) -> LocalFuture<'_, Result<(), AppendError>>;
    /// Appends `records` of one partition as one transactional batch of
    /// `producer`'s (id, epoch): they count once its COMMIT marker follows.
    fn append_transactional(
        &self,
        records: Vec<LogRecord>,
        producer: (i64, i16),
    ) -> LocalFuture<'_, Result<(), AppendError>>;
    /// Every record of `partition`, oldest first.
    fn read(&self, partition: i32) -> LocalFuture<'_, Result<ReadRecords, String>>;
}

/// Records in memory: survives nothing but the process. Used by tests and
/// until `__consumer_offsets` partitions are backed by the storage engine.
#[derive(Default)]
pub struct MemoryLog {
    partitions: RefCell<BTreeMap<i32, Vec<LogRecord>>>,
}

impl OffsetsLog for MemoryLog {
    fn append(&self, records: Vec<LogRecord>) -> LocalFuture<'_, Result<(), AppendError>> {
        let mut partitions = self.partitions.borrow_mut();
        for record in records {
            partitions.entry(record.partition).or_default().push(record);
        }
        Box::pin(async { Ok(()) })
    }

    /// Kept as plain records: the memory log has no markers.
    fn append_transactional(
        &self,
        records: Vec<LogRecord>,
        _producer: (i64, i16),
    ) -> LocalFuture<'_, Result<(), AppendError>> {
        self.append(records)
    }

    fn read(&self, partition: i32) -> LocalFuture<'_, Result<ReadRecords, String>> {
        let records = self
            .partitions
            .borrow()
            .get(&partition)
            .cloned()
            .unwrap_or_default();
        Box::pin(async move {
            Ok(ReadRecords {
                records,
                pending: BTreeMap::new(),
            })
        })
    }
}
