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
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use uuid::Uuid;

use super::producer_state::{ProducerBatch, ProducerStateTable, SequenceCheck};
use super::replication::{IsrChange, Replication, Role, Transition};
use super::txn_index::{AbortedTxn, TxnIndex};
use super::TopicPartition;
use crate::cluster::metadata::PartitionState;
use crate::protocol::error_codes;
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
    /// Open and aborted transactions (`txn_index.rs`).
    txns: RefCell<TxnIndex>,
    watch: AppendWatch,
    removed: Cell<bool>,
    /// The largest batch max timestamp and that batch's base offset, for
    /// ListOffsets(-3). Not lowered by retention (Kafka does the same
    /// until the segment holding it is deleted).
    max_timestamp: Cell<Option<(i64, i64)>>,
    /// Role, followers' progress and the high watermark (see
    /// `replication.rs`).
    replication: RefCell<Replication>,
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
        Partition::open_replica(key, topic_id, log, -1, 0).await
    }

    /// Wraps an opened log as `node_id`'s replica whose high watermark was
    /// last checkpointed at `high_watermark`.
    pub async fn open_replica(
        key: TopicPartition,
        topic_id: Uuid,
        log: PartitionLog,
        node_id: i32,
        high_watermark: i64,
    ) -> Result<Partition, String> {
        let log_end = log.log_end_offset().0;
        let (producers, max_timestamp, txns) = replay(&log)
            .await
            .map_err(|error| format!("{}: replaying producer state: {error}", key.dir_name()))?;
        Ok(Partition {
            key,
            topic_id,
            log,
            append_permit: Semaphore::new(1),
            producers: RefCell::new(producers),
            txns: RefCell::new(txns),
            watch: AppendWatch::default(),
            removed: Cell::new(false),
            max_timestamp: Cell::new(max_timestamp),
            replication: RefCell::new(Replication::new(node_id, high_watermark.min(log_end))),
        })
    }

    /// The offset below which consumers may read (see `replication.rs`):
    /// what every in-sync replica has. A replica's own part is the end of
    /// what is on disk when the log syncs every append (the default), so a
    /// consumer never sees a record that a crash could take back, and a
    /// record is visible no sooner than an `acks=all` producer hears of it.
    /// With a relaxed flush policy (`flush.messages` > 1) the operator has
    /// chosen Kafka's behaviour: the log end offset.
    pub fn high_watermark(&self) -> i64 {
        let own_end = self.own_end();
        let mut replication = self.replication.borrow_mut();
        match replication.role() {
            Role::Unassigned => own_end,
            _ => replication.high_watermark(own_end),
        }
    }

    fn own_end(&self) -> i64 {
        if self.log.syncs_every_append() {
            self.log.durable_end_offset().0
        } else {
            self.log.log_end_offset().0
        }
    }

    /// The high watermark as last computed, for the checkpoint.
    pub fn stored_high_watermark(&self) -> i64 {
        self.replication.borrow().stored_high_watermark()
    }

    pub fn is_leader(&self) -> bool {
        !matches!(self.replication.borrow().role(), Role::Follower { .. })
    }

    /// The leader epoch this replica knows (0 before any image).
    pub fn leader_epoch(&self) -> i32 {
        self.replication.borrow().leader_epoch().unwrap_or(0)
    }

    /// The replica's role, as the controller decided it.
    pub fn role(&self) -> Role {
        self.replication.borrow().role().clone()
    }

    /// Follows the controller's decision; a new leadership starts a leader
    /// epoch at the log end. Wakes waiters: the ISR may have changed.
    pub async fn update_role(&self, state: &PartitionState) -> Result<Transition, StorageError> {
        let transition = self.replication.borrow_mut().update(state, Instant::now());
        if let Transition::BecameLeader { leader_epoch } = transition {
            self.log
                .assign_leader_epoch(leader_epoch, self.log.log_end_offset())
                .await?;
        }
        self.watch.notify();
        Ok(transition)
    }

    /// A follower fetched from `fetch_offset`: its progress moves, and with
    /// it perhaps the high watermark. Errors are Kafka's.
    pub fn record_follower_fetch(
        &self,
        replica: i32,
        fetch_offset: i64,
        leader_epoch: i32,
    ) -> Result<(), i16> {
        let known = self.replication.borrow().leader_epoch();
        match known {
            Some(epoch) if leader_epoch >= 0 && leader_epoch < epoch => {
                return Err(error_codes::FENCED_LEADER_EPOCH)
            }
            Some(epoch) if leader_epoch > epoch => return Err(error_codes::UNKNOWN_LEADER_EPOCH),
            _ => {}
        }
        let before = self.high_watermark();
        let log_end = self.log_end_offset();
        let known = self.replication.borrow_mut().record_fetch(
            replica,
            fetch_offset,
            log_end,
            Instant::now(),
        );
        if !known {
            return Err(error_codes::NOT_LEADER_OR_FOLLOWER);
        }
        if self.high_watermark() > before {
            self.watch.notify();
        }
        Ok(())
    }

    /// The ISR change to ask the controller for now, if any.
    pub fn isr_change(&self, lag_max: Duration) -> Option<IsrChange> {
        let high_watermark = self.high_watermark();
        self.replication
            .borrow_mut()
            .isr_change(high_watermark, lag_max, Instant::now())
    }

    /// The controller refused or was unreachable: ask again after `backoff`.
    pub fn isr_change_failed(&self, backoff: Duration) {
        self.replication
            .borrow_mut()
            .alter_failed(Instant::now(), backoff);
    }

    /// In-sync replicas as the controller committed them (1 before any
    /// image: a lone replica).
    pub fn isr_size(&self) -> usize {
        match self.replication.borrow().role() {
            Role::Unassigned => 1,
            _ => self.replication.borrow().isr_size(),
        }
    }

    /// Waits until the high watermark passes `last_offset` (`acks=all`).
    /// Kafka's errors: NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank
    /// below `min_insync` meanwhile, NOT_LEADER_OR_FOLLOWER when leadership
    /// moved, REQUEST_TIMED_OUT after `timeout`.
    pub async fn wait_committed(
        self: &Rc<Self>,
        last_offset: i64,
        min_insync: usize,
        timeout: Duration,
    ) -> Result<(), i16> {
        const RECHECK_MS: u64 = 100;
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_removed() || !self.is_leader() {
                return Err(error_codes::NOT_LEADER_OR_FOLLOWER);
            }
            if self.high_watermark() > last_offset {
                return Ok(());
            }
            if self.isr_size() < min_insync {
                return Err(error_codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(error_codes::REQUEST_TIMED_OUT);
            }
            let pause = deadline.min(now + Duration::from_millis(RECHECK_MS)) - now;
            futures_lite::future::or(self.wait_for_data_after(last_offset), async {
                glommio::timer::sleep(pause).await;
            })
            .await;
        }
    }

    /// Appends the leader's batches on this follower, at the leader's
    /// offsets.
    pub async fn append_as_follower(
        &self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<i64, StorageError> {
        let _permit = self
            .append_permit
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::Closed)?;
        let info = self.log.append_replica(records, now_ms).await?;
        let mut position = 0;
        while let Some(Ok(header)) = records.get(position..).map(BatchHeader::parse) {
            let batch = &records[position..position + header.total_bytes()];
            if let Some(producer) = producer_batch(batch)? {
                let producers = &mut self.producers.borrow_mut();
                producers.record(&producer, header.base_offset, header.last_offset());
            }
            if header.is_control() && header.is_transactional() {
                let epoch = batch_producer_epoch(batch);
                self.producers
                    .borrow_mut()
                    .bump_epoch(header.producer_id, epoch);
            }
            self.txns
                .borrow_mut()
                .observe(&header, batch, header.base_offset);
            self.note_timestamp(header.max_timestamp, header.base_offset);
            position += header.total_bytes();
        }
        self.watch.notify();
        Ok(info.last_offset.0)
    }

    /// Cuts this follower's log at `offset` (divergence from its leader) and
    /// rebuilds what was derived from the log.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, StorageError> {
        let _permit = self
            .append_permit
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::Closed)?;
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        let end = self.log.truncate_to(Offset(offset)).await?.0;
        let (producers, max_timestamp, txns) = replay(&self.log).await?;
        *self.producers.borrow_mut() = producers;
        *self.txns.borrow_mut() = txns;
        self.max_timestamp.set(max_timestamp);
        self.replication.borrow_mut().clamp_high_watermark(end);
        Ok(end)
    }

    /// A follower learns its leader's high watermark.
    pub fn set_follower_high_watermark(&self, leader_high_watermark: i64) {
        let log_end = self.log_end_offset();
        self.replication
            .borrow_mut()
            .set_follower_high_watermark(leader_high_watermark, log_end);
    }

    /// Resolves once the log end passes `offset`: what a follower's fetch
    /// waits for (it reads past the high watermark).
    pub fn wait_for_append_after(self: &Rc<Self>, offset: i64) -> AppendWait {
        AppendWait {
            partition: self.clone(),
            offset,
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
        self.observe_transactions(records, info.base_offset.0);
        self.watch.notify();
        Ok(AppendOutcome {
            base_offset: info.base_offset.0,
            last_offset: info.last_offset.0,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: info.log_start_offset.0,
            duplicate: false,
        })
    }

    /// Takes note of the transactional batches of `records`, appended from
    /// `base_offset` on.
    fn observe_transactions(&self, records: &[u8], base_offset: i64) {
        let mut txns = self.txns.borrow_mut();
        let mut position = 0;
        let mut offset = base_offset;
        while let Some(Ok(header)) = records.get(position..).map(BatchHeader::parse) {
            let Some(batch) = records.get(position..position + header.total_bytes()) else {
                break;
            };
            txns.observe(&header, batch, offset);
            offset += i64::from(header.last_offset_delta) + 1;
            position += header.total_bytes();
        }
    }

    /// Writes a transaction's COMMIT or ABORT control batch and waits until
    /// it is on disk. The producer's epoch here becomes the marker's (so
    /// an older producer instance is fenced on this partition too).
    pub async fn write_marker(
        &self,
        marker: &crate::txn::markers::TxnMarker,
        now_ms: i64,
    ) -> Result<i64, AppendError> {
        let batch = crate::txn::markers::control_batch(marker, now_ms)
            .map_err(|error| AppendError::Storage(StorageError::CorruptMessage(error)))?;
        let last_offset = {
            let _permit = self
                .append_permit
                .acquire_permit(1)
                .await
                .map_err(|_| AppendError::Storage(StorageError::Closed))?;
            let info = self.log.append(&batch, now_ms).await?;
            self.producers
                .borrow_mut()
                .bump_epoch(marker.producer_id, marker.producer_epoch);
            self.observe_transactions(&batch, info.base_offset.0);
            self.watch.notify();
            info.last_offset.0
        };
        self.log
            .wait_durable(Offset(last_offset))
            .await
            .map_err(|error| {
                AppendError::Storage(StorageError::CorruptMessage(error.to_string()))
            })?;
        Ok(last_offset)
    }

    /// The last stable offset: the first offset of the earliest open
    /// transaction, else the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.txns
            .borrow()
            .first_unstable_offset()
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Aborted transactions that overlap `[from, to)`, for read_committed
    /// fetches.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let mut txns = self.txns.borrow_mut();
        txns.trim(self.log_start_offset());
        txns.aborted_between(from, to)
    }

    /// The open transactions here: producer id and first offset.
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.txns.borrow().ongoing().collect()
    }

    /// Resolves once the high watermark passes `offset` (or the partition
    /// goes away). Race it with a timer for long polling.
    pub fn wait_for_data_after(self: &Rc<Self>, offset: i64) -> DataWait {
        DataWait {
            partition: self.clone(),
            offset,
            durable: None,
            durable_settled: false,
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
async fn replay(log: &PartitionLog) -> Result<Replayed, StorageError> {
    let mut table = ProducerStateTable::default();
    let mut txns = TxnIndex::default();
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
            if header.is_control() && header.is_transactional() {
                table.bump_epoch(header.producer_id, batch_producer_epoch(batch));
            }
            txns.observe(&header, batch, header.base_offset);
            if max_timestamp.is_none_or(|(max, _)| header.max_timestamp > max) {
                max_timestamp = Some((header.max_timestamp, header.base_offset));
            }
            offset = Offset(header.last_offset() + 1);
        }
    }
    Ok((table, max_timestamp, txns))
}

/// What replaying a log rebuilds.
type Replayed = (ProducerStateTable, Option<(i64, i64)>, TxnIndex);

/// The producer epoch of a v2 batch (bytes 51..53).
fn batch_producer_epoch(batch: &[u8]) -> i16 {
    batch
        .get(51..53)
        .map_or(-1, |bytes| i16::from_be_bytes([bytes[0], bytes[1]]))
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
    /// The sync came (or the log failed first): from here only the watch
    /// (an append, a follower's progress, removal) or the caller's timer
    /// ends the wait; a fetch reports a failure when it reads.
    durable_settled: bool,
}

impl Future for DataWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let partition = &this.partition;
        if partition.passed_or_watch(partition.high_watermark(), this.offset, context) {
            return Poll::Ready(());
        }
        if partition.log_end_offset() > this.offset && !this.durable_settled {
            let durable = this
                .durable
                .get_or_insert_with(|| partition.log.wait_durable(Offset(this.offset)));
            match Pin::new(durable).poll(context) {
                // The sync moves this replica's part of the high watermark;
                // with followers in the ISR it may still wait for them.
                Poll::Ready(Ok(())) if partition.high_watermark() > this.offset => {
                    return Poll::Ready(())
                }
                Poll::Ready(Ok(())) => this.durable_settled = true,
                Poll::Ready(Err(_)) => this.durable_settled = true,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// Waits for the log end to pass an offset (a follower's fetch).
pub struct AppendWait {
    partition: Rc<Partition>,
    offset: i64,
}

impl Future for AppendWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let partition = &self.partition;
        if partition.passed_or_watch(partition.log_end_offset(), self.offset, context) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Partition {
    /// True when `end` passed `offset` or the partition is gone; otherwise
    /// registers the task with the watch (appends, follower progress,
    /// removal wake it).
    fn passed_or_watch(&self, end: i64, offset: i64, context: &Context<'_>) -> bool {
        if end > offset || self.is_removed() {
            return true;
        }
        self.watch
            .waiters
            .borrow_mut()
            .push(context.waker().clone());
        false
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
