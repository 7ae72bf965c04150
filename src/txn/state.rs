//! The transaction coordinator's state machine: every transactional id of
//! the `__transaction_state` partitions one shard leads, and Kafka's rules
//! for moving them (`TransactionCoordinator`, `TransactionMetadata`).
//!
//! Pure: no I/O and no clock. Each operation returns a [`Step`]: the answer,
//! the record to make durable before answering, the markers to write after
//! it. The id is marked `pending` until the runtime settles the step
//! ([`TxnManager::settle`]), so a concurrent request for it answers
//! CONCURRENT_TRANSACTIONS, as Kafka's `pendingState` does.

use std::collections::{BTreeMap, BTreeSet};

use super::errors;
use super::records;
use crate::coordinator::records::LogRecord;

/// Kafka's `TransactionState`, with its `TransactionStatus` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// One transactional id.
#[derive(Clone, Debug, PartialEq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (KIP-360 retries); -1 if none.
    pub last_producer_epoch: i16,
    pub timeout_ms: u64,
    pub state: TxnState,
    /// The partitions of the open (or ending) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the open transaction began (-1: none).
    pub start_ms: i64,
    /// A step for it awaits its record (not stored).
    pub pending: bool,
}

impl TxnMetadata {
    pub fn new(id: &str, producer_id: i64, epoch: i16, timeout_ms: u64, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: id.to_string(),
            producer_id,
            producer_epoch: epoch,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            start_ms: -1,
            pending: false,
        }
    }
}

/// Control records to write to every partition of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// What an operation decided.
#[derive(Debug, Default)]
pub struct Step {
    /// The id it changed, with its metadata before the change (`None`: it
    /// did not exist), to restore if the record fails.
    pub changed: Option<(String, Option<TxnMetadata>)>,
    pub record: Option<LogRecord>,
    pub markers: Option<MarkerJob>,
}

/// What the coordinator is configured with.
#[derive(Clone, Copy, Debug)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`.
    pub log_partitions: i32,
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: u64,
}

pub struct TxnManager {
    config: TxnConfig,
    txns: BTreeMap<String, TxnMetadata>,
}

/// The answer of an operation: producer id and epoch, or an error code.
pub type Answer = Result<(i64, i16), i16>;

impl TxnManager {
    pub fn new(config: TxnConfig) -> TxnManager {
        TxnManager {
            config,
            txns: BTreeMap::new(),
        }
    }

    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id)
    }

    pub fn all(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.txns.values()
    }

    fn partition_of(&self, transactional_id: &str) -> i32 {
        super::partition_for_txn(transactional_id, self.config.log_partitions)
    }

    /// Whether InitProducerId for `transactional_id` needs a fresh producer
    /// id (unknown id, or its epoch is exhausted).
    pub fn needs_producer_id(&self, transactional_id: &str) -> bool {
        self.txns
            .get(transactional_id)
            .is_none_or(|m| m.producer_epoch >= i16::MAX - 1)
    }

    /// Marks `id` pending with `after`, remembering `before` for a revert.
    fn change(&mut self, after: TxnMetadata, markers: Option<MarkerJob>) -> Step {
        let id = after.transactional_id.clone();
        let record = records::record(self.partition_of(&id), &after);
        let before = self.txns.insert(
            id.clone(),
            TxnMetadata {
                pending: true,
                ..after
            },
        );
        Step {
            changed: Some((id, before)),
            record: Some(record),
            markers,
        }
    }

    /// The step's record committed (`ok`) or failed: clears `pending`, or
    /// restores what was there before.
    pub fn settle(&mut self, step: &Step, ok: bool) {
        let Some((id, before)) = &step.changed else {
            return;
        };
        if ok {
            if let Some(metadata) = self.txns.get_mut(id) {
                metadata.pending = false;
            }
            return;
        }
        match before {
            Some(before) => self.txns.insert(id.clone(), before.clone()),
            None => self.txns.remove(id),
        };
    }

    /// InitProducerId with a transactional id. `expected` is the KIP-360
    /// producer id and epoch (v3+), `new_producer_id` one to use if
    /// [`needs_producer_id`](Self::needs_producer_id) said so.
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i64,
        expected: Option<(i64, i16)>,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> (Answer, Step) {
        if timeout_ms <= 0 || timeout_ms as u64 > self.config.max_timeout_ms {
            return (Err(errors::INVALID_TRANSACTION_TIMEOUT), Step::default());
        }
        let timeout_ms = timeout_ms as u64;
        let Some(current) = self.txns.get(transactional_id).cloned() else {
            let Some(producer_id) = new_producer_id else {
                return (Err(errors::COORDINATOR_NOT_AVAILABLE), Step::default());
            };
            let metadata = TxnMetadata::new(transactional_id, producer_id, 0, timeout_ms, now_ms);
            return (Ok((producer_id, 0)), self.change(metadata, None));
        };
        if current.pending {
            return (Err(errors::CONCURRENT_TRANSACTIONS), Step::default());
        }
        if let Some((producer_id, epoch)) = expected {
            let is_current = producer_id == current.producer_id && epoch == current.producer_epoch;
            let is_retry =
                producer_id == current.producer_id && epoch == current.last_producer_epoch;
            if is_retry && current.state != TxnState::Ongoing {
                // The bump it asks for already happened: answer it again.
                return (
                    Ok((current.producer_id, current.producer_epoch)),
                    Step::default(),
                );
            }
            if !is_current {
                return (Err(errors::PRODUCER_FENCED), Step::default());
            }
        }
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                (Err(errors::CONCURRENT_TRANSACTIONS), Step::default())
            }
            TxnState::Ongoing => {
                // A new producer instance: fence the old one with a bumped
                // epoch and abort what it left open; the client retries.
                let step = self.abort_fencing(current, now_ms);
                (Err(errors::CONCURRENT_TRANSACTIONS), step)
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                let mut next = current.clone();
                match new_producer_id {
                    Some(producer_id) if current.producer_epoch >= i16::MAX - 1 => {
                        next.producer_id = producer_id;
                        next.producer_epoch = 0;
                        next.last_producer_epoch = -1;
                    }
                    _ if current.producer_epoch >= i16::MAX - 1 => {
                        return (Err(errors::COORDINATOR_NOT_AVAILABLE), Step::default())
                    }
                    _ => {
                        next.last_producer_epoch = current.producer_epoch;
                        next.producer_epoch = current.producer_epoch + 1;
                    }
                }
                next.timeout_ms = timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.start_ms = -1;
                next.last_update_ms = now_ms;
                let answer = Ok((next.producer_id, next.producer_epoch));
                (answer, self.change(next, None))
            }
        }
    }

    /// Bumps the epoch of an open transaction (fencing its producer) and
    /// prepares its abort: Kafka's timeout and fencing path.
    fn abort_fencing(&mut self, current: TxnMetadata, now_ms: i64) -> Step {
        let mut next = current.clone();
        if current.producer_epoch < i16::MAX - 1 {
            next.last_producer_epoch = current.producer_epoch;
            next.producer_epoch = current.producer_epoch + 1;
        }
        next.state = TxnState::PrepareAbort;
        next.last_update_ms = now_ms;
        let markers = marker_job(&next, false);
        self.change(next, Some(markers))
    }

    /// The checks every in-transaction request makes of its producer.
    fn check_producer(&self, id: &str, producer_id: i64, epoch: i16) -> Result<TxnMetadata, i16> {
        let Some(current) = self.txns.get(id) else {
            return Err(errors::INVALID_PRODUCER_ID_MAPPING);
        };
        if current.producer_id != producer_id {
            return Err(errors::INVALID_PRODUCER_ID_MAPPING);
        }
        if current.producer_epoch != epoch {
            return Err(errors::PRODUCER_FENCED);
        }
        if current.pending
            || matches!(
                current.state,
                TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
            )
        {
            return Err(errors::CONCURRENT_TRANSACTIONS);
        }
        Ok(current.clone())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, which adds the group's
    /// `__consumer_offsets` partition).
    pub fn add_partitions(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> (Result<(), i16>, Step) {
        let current = match self.check_producer(id, producer_id, epoch) {
            Ok(current) => current,
            Err(code) => return (Err(code), Step::default()),
        };
        let ongoing = current.state == TxnState::Ongoing;
        if ongoing && partitions.iter().all(|p| current.partitions.contains(p)) {
            return (Ok(()), Step::default());
        }
        let mut next = current;
        if !ongoing {
            next.start_ms = now_ms;
            next.partitions.clear();
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        next.last_update_ms = now_ms;
        (Ok(()), self.change(next, None))
    }

    /// EndTxn: prepares the commit or abort; the markers follow.
    pub fn end_txn(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> (Result<(), i16>, Step) {
        if let Some(current) = self.txns.get(id) {
            // A retry of an EndTxn that already completed or is completing.
            let same = current.producer_id == producer_id && current.producer_epoch == epoch;
            match (current.state, commit) {
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if same => {
                    return (Ok(()), Step::default())
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) if same => {
                    return (Err(errors::CONCURRENT_TRANSACTIONS), Step::default())
                }
                _ => {}
            }
        }
        let current = match self.check_producer(id, producer_id, epoch) {
            Ok(current) => current,
            Err(code) => return (Err(code), Step::default()),
        };
        if current.state != TxnState::Ongoing {
            return (Err(errors::INVALID_TXN_STATE), Step::default());
        }
        let mut next = current;
        next.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        next.last_update_ms = now_ms;
        let markers = marker_job(&next, commit);
        (Ok(()), self.change(next, Some(markers)))
    }

    /// The markers of `job` are written: the transaction completes.
    pub fn complete(&mut self, job: &MarkerJob, now_ms: i64) -> Step {
        let Some(current) = self.txns.get(&job.transactional_id) else {
            return Step::default();
        };
        let prepared = if job.commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        if current.pending
            || current.state != prepared
            || current.producer_id != job.producer_id
            || current.producer_epoch != job.producer_epoch
        {
            return Step::default();
        }
        let mut next = current.clone();
        next.state = if job.commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.start_ms = -1;
        next.last_update_ms = now_ms;
        self.change(next, None)
    }

    /// Transactions open longer than their timeout: fenced and aborted.
    pub fn expire(&mut self, now_ms: i64) -> Vec<Step> {
        let expired: Vec<TxnMetadata> = self
            .txns
            .values()
            .filter(|m| m.state == TxnState::Ongoing && !m.pending)
            .filter(|m| now_ms.saturating_sub(m.start_ms) > m.timeout_ms as i64)
            .cloned()
            .collect();
        expired
            .into_iter()
            .map(|current| self.abort_fencing(current, now_ms))
            .collect()
    }

    /// Whether a transactional Produce to `partitions` is allowed: the
    /// producer is current and its open transaction holds them.
    pub fn verify(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), i16> {
        let Some(current) = self.txns.get(id) else {
            return Err(errors::INVALID_PRODUCER_ID_MAPPING);
        };
        if current.producer_id != producer_id {
            return Err(errors::INVALID_PRODUCER_ID_MAPPING);
        }
        if current.producer_epoch != epoch {
            return Err(errors::INVALID_PRODUCER_EPOCH);
        }
        let open = current.state == TxnState::Ongoing;
        if !open || !partitions.iter().all(|p| current.partitions.contains(p)) {
            return Err(errors::INVALID_TXN_STATE);
        }
        Ok(())
    }

    /// Replaces the ids of `partition` with what its records say (oldest
    /// first); returns the markers of transactions that were preparing.
    pub fn load(&mut self, partition: i32, records: &[LogRecord]) -> (usize, Vec<MarkerJob>) {
        self.unload(partition);
        let mut loaded: BTreeMap<String, TxnMetadata> = BTreeMap::new();
        for record in records {
            match records::decode(&record.key, record.value.as_deref()) {
                Ok((id, Some(metadata))) => {
                    loaded.insert(id, metadata);
                }
                Ok((id, None)) => {
                    loaded.remove(&id);
                }
                Err(error) => tracing::warn!(partition, %error, "skipping a transaction record"),
            }
        }
        let mut resume = Vec::new();
        for metadata in loaded.values() {
            match metadata.state {
                TxnState::PrepareCommit => resume.push(marker_job(metadata, true)),
                TxnState::PrepareAbort => resume.push(marker_job(metadata, false)),
                _ => {}
            }
        }
        let count = loaded.len();
        self.txns.extend(loaded);
        (count, resume)
    }

    /// Drops the ids of `partition` (its leadership moved away).
    pub fn unload(&mut self, partition: i32) {
        let partitions = self.config.log_partitions;
        self.txns
            .retain(|id, _| super::partition_for_txn(id, partitions) != partition);
    }
}

fn marker_job(metadata: &TxnMetadata, commit: bool) -> MarkerJob {
    MarkerJob {
        transactional_id: metadata.transactional_id.clone(),
        producer_id: metadata.producer_id,
        producer_epoch: metadata.producer_epoch,
        commit,
        partitions: metadata.partitions.iter().cloned().collect(),
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
