//! Where `__consumer_offsets` records go: the [`OffsetsLog`] trait, and
//! [`MemoryLog`], the implementation that keeps them in memory.
//!
//! Shard-local: one log per coordinator shard, holding the records of the
//! offsets partitions that shard owns. An implementation must keep the
//! order of appends per partition and be durable when `append` returns
//! `Ok`; `read` returns a partition's records in append order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use super::records::LogRecord;

pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

pub trait OffsetsLog {
    /// Appends `records` (possibly of several partitions), in order.
    fn append(&self, records: Vec<LogRecord>) -> LocalFuture<'_, Result<(), String>>;
    /// Every record of `partition`, oldest first.
    fn read(&self, partition: i32) -> LocalFuture<'_, Result<Vec<LogRecord>, String>>;
}

/// Records in memory: survives nothing but the process. Used by tests and
/// until `__consumer_offsets` partitions are backed by the storage engine.
#[derive(Default)]
pub struct MemoryLog {
    partitions: RefCell<BTreeMap<i32, Vec<LogRecord>>>,
}

impl OffsetsLog for MemoryLog {
    fn append(&self, records: Vec<LogRecord>) -> LocalFuture<'_, Result<(), String>> {
        let mut partitions = self.partitions.borrow_mut();
        for record in records {
            partitions.entry(record.partition).or_default().push(record);
        }
        Box::pin(async { Ok(()) })
    }

    fn read(&self, partition: i32) -> LocalFuture<'_, Result<Vec<LogRecord>, String>> {
        let records = self
            .partitions
            .borrow()
            .get(&partition)
            .cloned()
            .unwrap_or_default();
        Box::pin(async move { Ok(records) })
    }
}
