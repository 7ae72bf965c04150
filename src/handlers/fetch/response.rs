//! Fetch's response: the reads in the order to answer them, cut to the
//! response's `max_bytes` (KIP-74), with zero-copy placeholders for file
//! regions. No I/O.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchResponse, ProducerId, ResponseKind, TopicName};

use super::PartitionRead;
use crate::handlers::{str_bytes, Answer};
use crate::partition::txn_index::AbortedTxn;
use crate::protocol::{error_codes, splice};
use crate::storage::{FileRegion, ReadData};

/// The response in request order, its records within `max_bytes` (KIP-74):
/// each partition's read is cut to the whole batches that fit what is left,
/// except that the first batch of the first partition with data is always
/// returned whole, so that the client progresses. A partition none of whose
/// batches fit is answered without records (its high watermark still
/// reported); the client fetches it next time.
pub(super) fn build(
    order: Vec<(String, Vec<i32>)>,
    mut reads: BTreeMap<(String, i32), PartitionRead>,
    max_bytes: usize,
) -> Answer {
    let mut regions: Vec<FileRegion> = Vec::new();
    let mut total_bytes = 0usize;
    let mut topics = Vec::with_capacity(order.len());
    for (name, indexes) in order {
        let mut partitions = Vec::with_capacity(indexes.len());
        for index in indexes {
            let read = reads
                .remove(&(name.clone(), index))
                .unwrap_or_else(|| PartitionRead::error(error_codes::UNKNOWN_TOPIC_OR_PARTITION));
            let left = max_bytes.saturating_sub(total_bytes);
            let data = fit(read.data, left as u64, total_bytes == 0);
            total_bytes += data.len_bytes() as usize;
            let records = records_bytes(data, &mut regions);
            partitions.push(
                PartitionData::default()
                    .with_partition_index(index)
                    .with_error_code(read.error_code)
                    .with_high_watermark(read.high_watermark)
                    .with_last_stable_offset(read.last_stable_offset)
                    .with_log_start_offset(read.log_start_offset)
                    .with_aborted_transactions(read.aborted.map(aborted_transactions))
                    .with_records(Some(records)),
            );
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(str_bytes(name)))
                .with_partitions(partitions),
        );
    }
    Answer {
        body: ResponseKind::Fetch(
            FetchResponse::default()
                .with_session_id(0)
                .with_responses(topics),
        ),
        regions,
    }
}

/// How much of a read to keep: `ends` are the lengths at which it may be
/// cut (whole batches), ascending. The index of the longest cut within
/// `left` bytes; the first cut even past `left` if `take_first`; `None` to
/// keep nothing.
fn aborted_transactions(aborted: Vec<AbortedTxn>) -> Vec<AbortedTransaction> {
    aborted
        .into_iter()
        .map(|txn| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(txn.producer_id))
                .with_first_offset(txn.first_offset)
        })
        .collect()
}

fn fitting_cut(ends: impl IntoIterator<Item = u64>, left: u64, take_first: bool) -> Option<usize> {
    let mut kept = None;
    for (index, end) in ends.into_iter().enumerate() {
        if end <= left || (index == 0 && take_first) {
            kept = Some(index);
        } else {
            break;
        }
    }
    kept
}

/// A read cut to the whole batches within `left` bytes (see `fitting_cut`).
fn fit(data: ReadData, left: u64, take_first: bool) -> ReadData {
    match data {
        ReadData::Empty => ReadData::Empty,
        ReadData::Memory(mut batches) => {
            let ends = batches.iter().scan(0u64, |end, batch| {
                *end += batch.len() as u64;
                Some(*end)
            });
            match fitting_cut(ends, left, take_first) {
                Some(index) => {
                    batches.truncate(index + 1);
                    ReadData::Memory(batches)
                }
                None => ReadData::Empty,
            }
        }
        ReadData::File(region) => {
            if region.len <= left {
                return ReadData::File(region);
            }
            let mut ends: Vec<u64> = region.cuts.iter().map(|&(len, _)| len).collect();
            if ends.is_empty() {
                ends.push(region.len);
            }
            match fitting_cut(ends, left, take_first) {
                Some(index) => ReadData::File(region.cut(index)),
                None => ReadData::Empty,
            }
        }
    }
}

/// The bytes to put in the response: the batches themselves, or a
/// placeholder standing for a file region (`regions` gets the region).
fn records_bytes(data: ReadData, regions: &mut Vec<FileRegion>) -> Bytes {
    match data {
        ReadData::Empty => Bytes::new(),
        ReadData::Memory(batches) if batches.len() == 1 => {
            batches.into_iter().next().unwrap_or_default()
        }
        ReadData::Memory(batches) => {
            let mut joined = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
            batches
                .iter()
                .for_each(|batch| joined.extend_from_slice(batch));
            joined.freeze()
        }
        ReadData::File(region) => match splice::placeholder(regions.len(), region.len as usize) {
            Some(placeholder) => {
                regions.push(region);
                placeholder
            }
            None => {
                tracing::warn!("no placeholder for a zero-copy region; answering without records");
                Bytes::new()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::Offset;

    fn batches(sizes: &[usize]) -> ReadData {
        ReadData::Memory(sizes.iter().map(|&n| Bytes::from(vec![0u8; n])).collect())
    }

    fn sizes(data: &ReadData) -> Vec<usize> {
        match data {
            ReadData::Memory(batches) => batches.iter().map(Bytes::len).collect(),
            ReadData::Empty => Vec::new(),
            ReadData::File(region) => vec![region.len as usize],
        }
    }

    fn region(cuts: &[u64]) -> FileRegion {
        FileRegion {
            path: "/dev/null".into(),
            file: Arc::new(std::fs::File::open("/dev/null").unwrap()),
            position: 100,
            len: *cuts.last().unwrap(),
            first_offset: Offset(10),
            next_offset: Offset(10 + cuts.len() as i64),
            cuts: (1..)
                .zip(cuts)
                .map(|(i, &len)| (len, Offset(10 + i)))
                .collect(),
        }
    }

    fn read(data: ReadData) -> PartitionRead {
        PartitionRead {
            error_code: error_codes::NONE,
            high_watermark: 42,
            last_stable_offset: 42,
            aborted: None,
            log_start_offset: 0,
            data,
        }
    }

    #[test]
    fn fitting_cut_keeps_whole_batches_within_the_budget() {
        assert_eq!(fitting_cut([10, 20, 30], 25, false), Some(1));
        assert_eq!(fitting_cut([10, 20, 30], 30, false), Some(2));
        assert_eq!(fitting_cut([10, 20, 30], 9, false), None);
        // The first batch of the response is kept even past the budget,
        // but nothing after it.
        assert_eq!(fitting_cut([10, 20, 30], 9, true), Some(0));
        assert_eq!(fitting_cut([10, 20, 30], 0, true), Some(0));
        assert_eq!(fitting_cut([], 100, true), None);
    }

    #[test]
    fn fit_drops_trailing_memory_batches() {
        assert_eq!(
            sizes(&fit(batches(&[400, 400, 400]), 1000, false)),
            [400, 400]
        );
        assert_eq!(
            sizes(&fit(batches(&[400, 400]), 399, false)),
            Vec::<usize>::new()
        );
        assert_eq!(sizes(&fit(batches(&[900, 900]), 500, true)), [900]);
        assert_eq!(sizes(&fit(ReadData::Empty, 0, true)), Vec::<usize>::new());
    }

    #[test]
    fn fit_cuts_a_file_region_at_a_known_batch_end() {
        let ReadData::File(cut) = fit(ReadData::File(region(&[300, 700, 1000])), 800, false) else {
            panic!("expected a region")
        };
        assert_eq!(
            (cut.position, cut.len, cut.next_offset),
            (100, 700, Offset(12))
        );
        assert_eq!(cut.cuts, [(300, Offset(11)), (700, Offset(12))]);
        let ReadData::File(first) = fit(ReadData::File(region(&[300, 700])), 10, true) else {
            panic!("expected a region")
        };
        assert_eq!((first.len, first.next_offset), (300, Offset(11)));
        let whole = fit(ReadData::File(region(&[300, 700])), 700, false);
        assert_eq!(whole.len_bytes(), 700);
        let none = fit(ReadData::File(region(&[300, 700])), 299, false);
        assert!(matches!(none, ReadData::Empty));
    }

    /// Issue 14's case: reads of several batches each, up to the partition
    /// limit; the response holds at most `max_bytes` of them.
    #[test]
    fn build_keeps_the_response_within_max_bytes() {
        let order = vec![("a".to_string(), vec![0, 1, 2]), ("b".to_string(), vec![0])];
        let mut reads = BTreeMap::new();
        reads.insert(("a".to_string(), 0), read(ReadData::Empty));
        reads.insert(("a".to_string(), 1), read(batches(&[512_100, 512_100])));
        reads.insert(("a".to_string(), 2), read(batches(&[512_100, 512_100])));
        reads.insert(
            ("b".to_string(), 0),
            read(batches(&[100_000, 300_000, 100, 90_000])),
        );
        let answer = build(order, reads, 1_000_000);
        let ResponseKind::Fetch(response) = answer.body else {
            panic!("a fetch response")
        };
        let lens: Vec<(usize, i64)> = response
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
            .map(|p| (p.records.as_ref().map_or(0, Bytes::len), p.high_watermark))
            .collect();
        assert_eq!(
            lens,
            [(0, 42), (512_100, 42), (0, 42), (400_100, 42)],
            "a-1 loses its second batch, a-2 does not fit, b-0 fits three of four batches"
        );
    }

    #[test]
    fn build_returns_the_first_batch_whole_even_past_max_bytes() {
        let order = vec![("a".to_string(), vec![0, 1])];
        let mut reads = BTreeMap::new();
        reads.insert(("a".to_string(), 0), read(batches(&[2_000, 10])));
        reads.insert(("a".to_string(), 1), read(batches(&[10])));
        let answer = build(order, reads, 1_000);
        let ResponseKind::Fetch(response) = answer.body else {
            panic!("a fetch response")
        };
        let lens: Vec<usize> = response.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .collect();
        assert_eq!(lens, [2_000, 0]);
    }
}
