//! Idempotent producing: a producer ID and epoch from InitProducerId, and
//! per-partition sequence numbers stamped on every batch, so that a batch
//! sent again (after a lost connection or a leader change) is recognised
//! by the broker as one it already wrote and is not written twice.
//!
//! The rules are Kafka's: sequences start at 0 per partition, a batch's
//! base sequence is the previous batch's base plus its record count, and
//! they wrap from `i32::MAX` to 0. A retried batch keeps its sequence; at
//! most [`IN_FLIGHT_MAX`] batches per partition may be unanswered, as the
//! broker remembers only that many per producer.

use std::collections::BTreeMap;

use anyhow::Result;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

use crate::cluster::{retrying, Cluster};
use crate::errors::{codes, KafkaError};
use crate::retry::{classify, Refresh};

/// The most batches in flight per partition with idempotence.
pub const IN_FLIGHT_MAX: usize = 5;

/// Who a batch says it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

impl ProducerIdentity {
    /// A producer without idempotence.
    pub const NONE: ProducerIdentity = ProducerIdentity { id: -1, epoch: -1 };

    pub fn is_idempotent(&self) -> bool {
        self.id >= 0
    }
}

/// Asks the cluster for a producer ID and epoch (InitProducerId, no
/// transactional ID), retrying while the broker cannot hand one out yet.
pub fn init_producer_id(cluster: &mut Cluster) -> Result<ProducerIdentity> {
    let timeout_ms = cluster.timeout().as_millis().min(i32::MAX as u128) as i32;
    retrying(cluster, |cluster| {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = cluster.any()?.call(&request, 4)?;
        KafkaError::check(response.error_code, None, "InitProducerId")?;
        Ok(ProducerIdentity {
            id: response.producer_id.0,
            epoch: response.producer_epoch,
        })
    })
}

/// `sequence + count`, wrapping past `i32::MAX` to 0 as Kafka does.
pub fn increment(sequence: i32, count: i32) -> i32 {
    debug_assert!(sequence >= 0 && count >= 0);
    if sequence > i32::MAX - count {
        count - (i32::MAX - sequence) - 1
    } else {
        sequence + count
    }
}

/// The Kafka sequence of the `n`th record (from 0) of a partition.
pub fn sequence_of(n: u64) -> i32 {
    (n % (1u64 << 31)) as i32
}

/// The next sequence number per partition (any key: a partition number,
/// or a topic and partition).
#[derive(Debug, Clone, Default)]
pub struct Sequences<K: Ord> {
    next: BTreeMap<K, i32>,
}

impl<K: Ord + Clone> Sequences<K> {
    pub fn new() -> Sequences<K> {
        Sequences {
            next: BTreeMap::new(),
        }
    }

    /// The base sequence of a new batch of `records` in `partition`;
    /// moves that partition's sequence past it.
    pub fn assign(&mut self, partition: &K, records: i32) -> i32 {
        let next = self.next.entry(partition.clone()).or_insert(0);
        let base = *next;
        *next = increment(base, records);
        base
    }

    pub fn peek(&self, partition: &K) -> i32 {
        self.next.get(partition).copied().unwrap_or(0)
    }

    /// After a new producer epoch: every partition starts at 0 again.
    pub fn reset(&mut self) {
        self.next.clear();
    }
}

/// What a produce answer means for an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Written (now, or before: DUPLICATE_SEQUENCE_NUMBER).
    Written,
    /// Send it again, with the same sequence, after refreshing this.
    Retry(Refresh),
    Failed,
}

/// How an idempotent producer treats a partition's error code. An
/// OUT_OF_ORDER_SEQUENCE_NUMBER answer means an earlier batch of the
/// partition did not arrive (it is being retried): this one is retried
/// after it.
pub fn batch_outcome(code: i16, idempotent: bool) -> BatchOutcome {
    match code {
        codes::NONE => BatchOutcome::Written,
        codes::DUPLICATE_SEQUENCE_NUMBER if idempotent => BatchOutcome::Written,
        codes::OUT_OF_ORDER_SEQUENCE_NUMBER if idempotent => BatchOutcome::Retry(Refresh::Nothing),
        code => match classify(code) {
            Some(refresh) => BatchOutcome::Retry(refresh),
            None => BatchOutcome::Failed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_advance_per_partition_and_wrap() {
        let mut sequences = Sequences::new();
        assert_eq!(sequences.assign(&0, 10), 0);
        assert_eq!(sequences.assign(&0, 5), 10);
        assert_eq!(sequences.assign(&1, 3), 0);
        assert_eq!(sequences.peek(&0), 15);
        assert_eq!(increment(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(increment(i32::MAX, 1), 0);
        assert_eq!(increment(i32::MAX - 2, 5), 2);
        sequences.reset();
        assert_eq!(sequences.assign(&0, 1), 0);
    }

    #[test]
    fn record_numbers_map_to_wrapping_sequences() {
        assert_eq!(sequence_of(0), 0);
        assert_eq!(sequence_of(i32::MAX as u64), i32::MAX);
        assert_eq!(sequence_of(i32::MAX as u64 + 1), 0);
        // A batch's last sequence follows the same wrap as `increment`.
        let first = sequence_of(i32::MAX as u64 - 1);
        assert_eq!(increment(first, 3), sequence_of(i32::MAX as u64 + 2));
    }

    #[test]
    fn produce_answers_for_idempotent_batches() {
        assert_eq!(batch_outcome(0, true), BatchOutcome::Written);
        assert_eq!(
            batch_outcome(codes::DUPLICATE_SEQUENCE_NUMBER, true),
            BatchOutcome::Written
        );
        assert_eq!(
            batch_outcome(codes::OUT_OF_ORDER_SEQUENCE_NUMBER, true),
            BatchOutcome::Retry(Refresh::Nothing)
        );
        assert_eq!(
            batch_outcome(codes::OUT_OF_ORDER_SEQUENCE_NUMBER, false),
            BatchOutcome::Failed
        );
        assert_eq!(
            batch_outcome(codes::NOT_LEADER_OR_FOLLOWER, false),
            BatchOutcome::Retry(Refresh::Metadata)
        );
        assert_eq!(
            batch_outcome(codes::INVALID_PRODUCER_EPOCH, true),
            BatchOutcome::Failed
        );
    }
}
