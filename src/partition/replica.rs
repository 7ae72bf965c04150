//! One partition replica on its owning shard: the storage log, the
//! idempotent-producer state, and the watch that wakes fetches waiting for
//! new data.
//!
//! Appends take the partition's append permit (FIFO), so the producer check,
//! the append and the state update are one step, and appends queued in
//! order are written in order.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use glommio::sync::Semaphore;
use uuid::Uuid;

use super::producer_state::{ProducerBatch, ProducerStateTable, SequenceCheck};
use super::TopicPartition;
use crate::storage::batch::BatchHeader;
use crate::storage::{DurableFuture, Offset, PartitionLog, ReadData, ReadOptions, StorageError};

/// Bytes read per step when replaying the log for producer state.
const REPLAY_READ_BYTES: usize = 1 << 20;

pub struct Partition {
    pub key: TopicPartition,
    pub topic_id: Uuid,
    pub log: PartitionLog,
    append_permit: Semaphore,
    producers: RefCell<ProducerStateTable>,
    watch: AppendWatch,
    removed: Cell<bool>,
    /// The largest batch max timestamp and that batch's base offset, for
    /// ListOffsets(-3). Not lowered by retention (Kafka does the same
    /// until the segment holding it is deleted).
    max_timestamp: Cell<Option<(i64, i64)>>,
}

/// The result of an append that was admitted.
#[derive(Clone, Copy, Debug)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: Option<i64>,
    pub log_start_offset: i64,
    /// A retried batch already in the log: nothing was written.
    pub duplicate: bool,
}

/// Why an append was refused.
#[derive(Debug)]
pub enum AppendError {
    Storage(StorageError),
    OutOfOrderSequence,
    InvalidProducerEpoch,
}

impl From<StorageError> for AppendError {
    fn from(error: StorageError) -> Self {
        AppendError::Storage(error)
    }
}

fn corrupt(error: crate::storage::batch::BatchError) -> StorageError {
    StorageError::CorruptMessage(error.to_string())
}

/// The producer fields of a v2 batch header (bytes 43..57), which the
/// storage engine has no use for.
fn producer_batch(records: &[u8]) -> Result<Option<ProducerBatch>, StorageError> {
    let header = BatchHeader::parse(records).map_err(corrupt)?;
    let field = |at: usize, len: usize| &records[at..at + len];
    let epoch = i16::from_be_bytes(field(51, 2).try_into().expect("2 bytes"));
    let base_sequence = i32::from_be_bytes(field(53, 4).try_into().expect("4 bytes"));
    Ok(ProducerBatch::new(
        header.producer_id,
        epoch,
        base_sequence,
        header.last_offset_delta,
    ))
}

impl Partition {
    /// Wraps an opened log, replaying it to rebuild producer state.
    pub async fn open(
        key: TopicPartition,
        topic_id: Uuid,
        log: PartitionLog,
    ) -> Result<Partition, String> {
        let (producers, max_timestamp) = replay(&log)
            .await
            .map_err(|error| format!("{}: replaying producer state: {error}", key.dir_name()))?;
        Ok(Partition {
            key,
            topic_id,
            log,
            append_permit: Semaphore::new(1),
            producers: RefCell::new(producers),
            watch: AppendWatch::default(),
            removed: Cell::new(false),
            max_timestamp: Cell::new(max_timestamp),
        })
    }

    /// The offset below which consumers may read: the end of what is on
    /// disk when the log syncs every append (the default), so a consumer
    /// never sees a record that a crash could take back, and a record is
    /// visible no sooner than an `acks=all` producer hears of it. With a
    /// relaxed flush policy (`flush.messages` > 1) the operator has chosen
    /// Kafka's single-replica behaviour: the log end offset.
    pub fn high_watermark(&self) -> i64 {
        if self.log.syncs_every_append() {
            self.log.durable_end_offset().0
        } else {
            self.log.log_end_offset().0
        }
    }

    /// The offset the next appended record gets (at or past the high
    /// watermark).
    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset().0
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset().0
    }

    /// Appends the record batches of one produce request for this
    /// partition. Durability is awaited separately ([`PartitionLog::wait_durable`]).
    pub async fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendOutcome, AppendError> {
        let _permit = self
            .append_permit
            .acquire_permit(1)
            .await
            .map_err(|_| AppendError::Storage(StorageError::Closed))?;
        let producer = producer_batch(records)?;
        if let Some(batch) = &producer {
            match self.producers.borrow().check(batch) {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate {
                    first_offset,
                    last_offset,
                } => {
                    return Ok(AppendOutcome {
                        base_offset: first_offset,
                        last_offset,
                        log_append_time_ms: None,
                        log_start_offset: self.log_start_offset(),
                        duplicate: true,
                    })
                }
                SequenceCheck::OutOfOrder => return Err(AppendError::OutOfOrderSequence),
                SequenceCheck::InvalidEpoch => return Err(AppendError::InvalidProducerEpoch),
            }
        }
        let info = self.log.append(records, now_ms).await?;
        if let Some(batch) = &producer {
            self.producers
                .borrow_mut()
                .record(batch, info.base_offset.0, info.last_offset.0);
        }
        for (timestamp, base_offset) in batch_timestamps(records, info.base_offset.0) {
            let timestamp = info.log_append_time_ms.unwrap_or(timestamp);
            self.note_timestamp(timestamp, base_offset);
        }
        self.watch.notify();
        Ok(AppendOutcome {
            base_offset: info.base_offset.0,
            last_offset: info.last_offset.0,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: info.log_start_offset.0,
            duplicate: false,
        })
    }

    /// Resolves once the high watermark passes `offset` (or the partition
    /// goes away). Race it with a timer for long polling.
    pub fn wait_for_data_after(self: &Rc<Self>, offset: i64) -> DataWait {
        DataWait {
            partition: self.clone(),
            offset,
            durable: None,
            durable_failed: false,
        }
    }

    fn note_timestamp(&self, timestamp: i64, base_offset: i64) {
        if self
            .max_timestamp
            .get()
            .is_none_or(|(max, _)| timestamp > max)
        {
            self.max_timestamp.set(Some((timestamp, base_offset)));
        }
    }

    /// The offset and timestamp of the record with the largest timestamp
    /// (ListOffsets -3): the batch is known, the record is found in it.
    pub async fn offset_of_max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let Some((timestamp, base_offset)) = self.max_timestamp.get() else {
            return Ok(None);
        };
        if base_offset < self.log_start_offset() {
            return Ok(None);
        }
        let options = ReadOptions {
            max_bytes: 1,
            min_one_batch: true,
            upper_offset: None,
            zero_copy: false,
        };
        let read = self.log.read_with(Offset(base_offset), options).await?;
        let ReadData::Memory(batches) = read.data else {
            return Ok(Some((base_offset, timestamp)));
        };
        let Some(mut batch) = batches.into_iter().next() else {
            return Ok(Some((base_offset, timestamp)));
        };
        let records = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch)
            .map_err(|error| StorageError::CorruptMessage(error.to_string()))?;
        let offset = records
            .records
            .iter()
            .find(|record| record.timestamp >= timestamp)
            .map_or(base_offset, |record| record.offset);
        Ok(Some((offset, timestamp)))
    }

    /// True once the partition was deleted (or moved away).
    pub fn is_removed(&self) -> bool {
        self.removed.get()
    }

    pub async fn close_and_remove(&self) -> Result<(), String> {
        self.removed.set(true);
        self.watch.notify();
        self.log
            .remove()
            .await
            .map_err(|error| format!("{}: {error}", self.key.dir_name()))?;
        super::remove_dir(self.log.dir().to_path_buf())
            .await
            .map_err(|error| format!("{}: {error}", self.key.dir_name()))
    }
}

/// (max timestamp, base offset) of each batch in `records`, whose first
/// batch was written at `base_offset`. The storage engine validated them.
fn batch_timestamps(records: &[u8], base_offset: i64) -> Vec<(i64, i64)> {
    let mut found = Vec::new();
    let mut position = 0;
    let mut offset = base_offset;
    while let Some(Ok(header)) = records.get(position..).map(BatchHeader::parse) {
        found.push((header.max_timestamp, offset));
        offset += i64::from(header.last_offset_delta) + 1;
        position += header.total_bytes();
    }
    found
}

/// Rebuilds producer state and the max timestamp from every batch in the
/// log.
async fn replay(
    log: &PartitionLog,
) -> Result<(ProducerStateTable, Option<(i64, i64)>), StorageError> {
    let mut table = ProducerStateTable::default();
    let mut max_timestamp: Option<(i64, i64)> = None;
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let options = ReadOptions {
            max_bytes: REPLAY_READ_BYTES,
            min_one_batch: true,
            upper_offset: Some(end),
            zero_copy: false,
        };
        let read = log.read_with(offset, options).await?;
        let ReadData::Memory(batches) = read.data else {
            break;
        };
        if batches.is_empty() {
            break;
        }
        for batch in &batches {
            let header = BatchHeader::parse(batch).map_err(corrupt)?;
            if let Some(producer) = producer_batch(batch)? {
                table.record(&producer, header.base_offset, header.last_offset());
            }
            if max_timestamp.is_none_or(|(max, _)| header.max_timestamp > max) {
                max_timestamp = Some((header.max_timestamp, header.base_offset));
            }
            offset = Offset(header.last_offset() + 1);
        }
    }
    Ok((table, max_timestamp))
}

/// Wakes fetches waiting on this partition.
#[derive(Default)]
struct AppendWatch {
    version: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl AppendWatch {
    fn notify(&self) {
        self.version.set(self.version.get() + 1);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// Waits for the high watermark to pass an offset: an append wakes it
/// through the partition's watch; when the record is appended but not yet
/// on disk, the sync that covers it wakes it through the log.
pub struct DataWait {
    partition: Rc<Partition>,
    offset: i64,
    durable: Option<DurableFuture>,
    /// The log failed before the sync: only removal (or the caller's
    /// timer) ends the wait; the fetch reports the failure when it reads.
    durable_failed: bool,
}

impl Future for DataWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let partition = &this.partition;
        if partition.high_watermark() > this.offset || partition.is_removed() {
            return Poll::Ready(());
        }
        partition
            .watch
            .waiters
            .borrow_mut()
            .push(context.waker().clone());
        if partition.log_end_offset() > this.offset && !this.durable_failed {
            let durable = this
                .durable
                .get_or_insert_with(|| partition.log.wait_durable(Offset(this.offset)));
            match Pin::new(durable).poll(context) {
                Poll::Ready(Ok(())) => return Poll::Ready(()),
                Poll::Ready(Err(_)) => this.durable_failed = true,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::test_batches::batch;
    use crate::storage::tests::{run, shard, small_config};
    use crate::storage::{LogConfig, ShardStorage};

    async fn open_partition(
        dir: &std::path::Path,
        config: LogConfig,
        storage: &ShardStorage,
    ) -> Rc<Partition> {
        let log = PartitionLog::open(dir.join("t-0"), config, storage)
            .await
            .unwrap();
        let key = TopicPartition {
            topic: "t".to_string(),
            partition: 0,
        };
        Rc::new(Partition::open(key, Uuid::nil(), log).await.unwrap())
    }

    /// Consumers read only what is on disk: the high watermark trails the
    /// log end until the sync, and a waiting fetch wakes at the sync.
    #[test]
    fn high_watermark_is_the_synced_end_and_waiters_wake_at_the_sync() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        run(move || async move {
            let storage = shard(&dir).await;
            let partition = open_partition(&dir, small_config(), &storage).await;
            let outcome = partition
                .append(&batch(3, None, Some(b"v"), 1000), 1)
                .await
                .unwrap();
            assert_eq!((outcome.base_offset, outcome.last_offset), (0, 2));
            assert_eq!(partition.log_end_offset(), 3);
            assert_eq!(partition.high_watermark(), 0, "nothing synced yet");
            // Waiting from offset 0 ends when the sync covers the batch.
            partition.wait_for_data_after(0).await;
            assert_eq!(partition.high_watermark(), 3);
            partition.log.close().await.unwrap();
        });
    }

    /// With a relaxed flush policy the operator chose Kafka's behaviour:
    /// records are readable as soon as they are appended.
    #[test]
    fn relaxed_flush_policy_reads_up_to_the_log_end() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        run(move || async move {
            let storage = shard(&dir).await;
            let config = LogConfig {
                flush_messages: 1000,
                ..small_config()
            };
            let partition = open_partition(&dir, config, &storage).await;
            partition
                .append(&batch(2, None, Some(b"v"), 1000), 1)
                .await
                .unwrap();
            assert_eq!(partition.high_watermark(), 2);
            assert_eq!(partition.log.durable_end_offset().0, 0);
            partition.log.close().await.unwrap();
        });
    }
}
