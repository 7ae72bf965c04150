//! The transactions of one partition's log: which producers have a
//! transaction open here (from its first offset), and which transactions
//! were aborted, with their offset ranges (Kafka's `.txnindex`).
//!
//! Owned by the partition's [`Partition`](super::replica::Partition) on its
//! owning shard, updated under its append permit as batches are appended
//! (leader or follower), and rebuilt from the log whenever producer state
//! is (open, truncation): the log is the durable copy, so there is no
//! separate index file to keep in step. Pure: no I/O.
//!
//! The last stable offset (LSO) is the first offset of the earliest open
//! transaction, else the high watermark; read_committed consumers read
//! below it and drop the records of the aborted transactions it reports.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::storage::batch::BatchHeader;

/// An aborted transaction: its producer and its offsets, marker included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TxnIndex {
    /// Producer id -> first offset of its open transaction.
    ongoing: BTreeMap<i64, i64>,
    /// In marker order (so by `last_offset`).
    aborted: Vec<AbortedTxn>,
}

/// The control type of a control batch (Kafka's `ControlRecordKey`: ABORT
/// 0, COMMIT 1); `None` if it cannot be read.
pub fn control_type(batch: &[u8]) -> Option<i16> {
    let mut bytes = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).ok()?;
    let key = set.records.first()?.key.as_ref()?;
    (key.len() >= 4).then(|| i16::from_be_bytes([key[2], key[3]]))
}

impl TxnIndex {
    /// Takes note of one appended batch (`batch` is its bytes, `header`
    /// parsed from them, with its offsets in the log).
    pub fn observe(&mut self, header: &BatchHeader, batch: &[u8], base_offset: i64) {
        if !header.is_transactional() || header.producer_id < 0 {
            return;
        }
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        if !header.is_control() {
            self.ongoing
                .entry(header.producer_id)
                .or_insert(base_offset);
            return;
        }
        let first = self.ongoing.remove(&header.producer_id);
        if control_type(batch) == Some(super::super::txn::markers::CONTROL_TYPE_ABORT) {
            self.aborted.push(AbortedTxn {
                producer_id: header.producer_id,
                // A marker with no data before it aborts nothing here.
                first_offset: first.unwrap_or(base_offset),
                last_offset,
            });
        }
    }

    /// The first offset of the earliest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().min().copied()
    }

    /// Aborted transactions that overlap `[from, to)`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|aborted| aborted.last_offset >= from && aborted.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below `log_start_offset`.
    pub fn trim(&mut self, log_start_offset: i64) {
        self.aborted
            .retain(|aborted| aborted.last_offset >= log_start_offset);
    }

    /// The open transactions: producer id and first offset.
    pub fn ongoing(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing
            .iter()
            .map(|(producer, first)| (*producer, *first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::markers::{control_batch, TxnMarker};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn data_batch(producer_id: i64, count: i64) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|offset| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: offset as i32,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.to_vec()
    }

    fn marker(producer_id: i64, commit: bool) -> Vec<u8> {
        let marker = TxnMarker {
            producer_id,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 0,
        };
        control_batch(&marker, 0).unwrap().to_vec()
    }

    fn observe(index: &mut TxnIndex, batch: &[u8], base_offset: i64) {
        let header = BatchHeader::parse(batch).unwrap();
        index.observe(&header, batch, base_offset);
    }

    #[test]
    fn open_transactions_hold_the_lso_and_aborts_are_indexed() {
        let mut index = TxnIndex::default();
        observe(&mut index, &data_batch(1, 3), 0); // 0..=2, pid 1
        observe(&mut index, &data_batch(2, 2), 3); // 3..=4, pid 2
        observe(&mut index, &data_batch(1, 1), 5); // 5, pid 1 again
        assert_eq!(index.first_unstable_offset(), Some(0));
        observe(&mut index, &marker(1, false), 6); // abort pid 1
        assert_eq!(index.first_unstable_offset(), Some(3));
        observe(&mut index, &marker(2, true), 7); // commit pid 2
        assert_eq!(index.first_unstable_offset(), None);
        let aborted = AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 6,
        };
        assert_eq!(index.aborted_between(0, 8), vec![aborted]);
        assert_eq!(index.aborted_between(7, 8), vec![]);
        index.trim(7);
        assert_eq!(index.aborted_between(0, 8), vec![]);
    }
}
