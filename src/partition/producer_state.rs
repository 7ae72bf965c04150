//! Idempotent-producer state of one partition: per producer ID, its epoch
//! and the sequence ranges and offsets of its last five batches.
//!
//! Runs on the partition's owning shard, under the partition's append lock,
//! so a check and the append it admits are one step. Pure logic: no I/O.
//! Rules are Kafka's (`ProducerStateManager`/`ProducerAppendInfo`):
//! - an older epoch is fenced: INVALID_PRODUCER_EPOCH;
//! - a newer epoch must start at sequence 0 (unless the producer was unknown);
//! - in one epoch a batch must start right after the last one's sequence;
//! - a batch equal to one of the last five is a duplicate: answered with the
//!   offsets it was first written at, and not written again.

use std::collections::{BTreeMap, VecDeque};

/// Batches remembered per producer, as in Kafka (and librdkafka's and the
/// Java client's maximum in-flight requests with idempotence).
pub const BATCHES_REMEMBERED_MAX: usize = 5;

/// What a batch tells of its producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

impl ProducerBatch {
    /// From a batch header's fields; `None` for a non-idempotent batch.
    pub fn new(
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        last_offset_delta: i32,
    ) -> Option<ProducerBatch> {
        if producer_id < 0 || base_sequence < 0 {
            return None;
        }
        Some(ProducerBatch {
            producer_id,
            producer_epoch,
            first_sequence: base_sequence,
            last_sequence: increment_sequence(base_sequence, last_offset_delta),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BatchMetadata {
    first_sequence: i32,
    last_sequence: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

/// The verdict on a batch about to be appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already written at these offsets: answer them, write nothing.
    Duplicate {
        first_offset: i64,
        last_offset: i64,
    },
    OutOfOrder,
    InvalidEpoch,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProducerStateTable {
    producers: BTreeMap<i64, ProducerEntry>,
}

/// Sequences wrap from `i32::MAX` to 0, as in Kafka.
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn check(&self, batch: &ProducerBatch) -> SequenceCheck {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return SequenceCheck::Accept;
        };
        if batch.producer_epoch < entry.epoch {
            return SequenceCheck::InvalidEpoch;
        }
        if batch.producer_epoch > entry.epoch {
            return if batch.first_sequence == 0 {
                SequenceCheck::Accept
            } else {
                SequenceCheck::OutOfOrder
            };
        }
        if let Some(seen) = entry.batches.iter().find(|seen| {
            seen.first_sequence == batch.first_sequence && seen.last_sequence == batch.last_sequence
        }) {
            return SequenceCheck::Duplicate {
                first_offset: seen.first_offset,
                last_offset: seen.last_offset,
            };
        }
        match entry.batches.back() {
            Some(last) if batch.first_sequence != increment_sequence(last.last_sequence, 1) => {
                SequenceCheck::OutOfOrder
            }
            _ => SequenceCheck::Accept,
        }
    }

    /// A transaction marker of `epoch` was written for `producer_id`: an
    /// older epoch is fenced from now on; the new one starts afresh.
    pub fn bump_epoch(&mut self, producer_id: i64, epoch: i16) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
    }

    /// Records an appended batch (after [`check`](Self::check) accepted it,
    /// or while replaying the log, where every batch is taken as written).
    pub fn record(&mut self, batch: &ProducerBatch, first_offset: i64, last_offset: i64) {
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            first_offset,
            last_offset,
        });
        while entry.batches.len() > BATCHES_REMEMBERED_MAX {
            entry.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first: i32, count: i32) -> ProducerBatch {
        ProducerBatch::new(7, epoch, first, count - 1).unwrap()
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(increment_sequence(5, 1), 6);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn non_idempotent_batches_have_no_producer() {
        assert_eq!(ProducerBatch::new(-1, -1, -1, 3), None);
    }

    #[test]
    fn checks_follow_kafkas_rules() {
        let mut table = ProducerStateTable::default();
        // An unknown producer may start anywhere (its state may have expired).
        assert_eq!(table.check(&batch(0, 10, 5)), SequenceCheck::Accept);
        table.record(&batch(0, 10, 5), 100, 104);
        let cases = [
            (batch(0, 15, 2), SequenceCheck::Accept),
            (batch(0, 16, 2), SequenceCheck::OutOfOrder),
            (
                batch(0, 10, 5),
                SequenceCheck::Duplicate {
                    first_offset: 100,
                    last_offset: 104,
                },
            ),
            (batch(0, 10, 4), SequenceCheck::OutOfOrder),
            (batch(1, 0, 3), SequenceCheck::Accept),
            (batch(1, 4, 3), SequenceCheck::OutOfOrder),
        ];
        for (candidate, expected) in cases {
            assert_eq!(table.check(&candidate), expected, "{candidate:?}");
        }
        table.record(&batch(1, 0, 3), 105, 107);
        assert_eq!(table.check(&batch(0, 15, 2)), SequenceCheck::InvalidEpoch);
        assert_eq!(table.check(&batch(1, 3, 1)), SequenceCheck::Accept);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for index in 0..7 {
            table.record(
                &batch(0, index, 1),
                1000 + i64::from(index),
                1000 + i64::from(index),
            );
        }
        assert_eq!(table.check(&batch(0, 1, 1)), SequenceCheck::OutOfOrder);
        assert_eq!(
            table.check(&batch(0, 2, 1)),
            SequenceCheck::Duplicate {
                first_offset: 1002,
                last_offset: 1002
            }
        );
        assert_eq!(table.check(&batch(0, 7, 1)), SequenceCheck::Accept);
    }
}
