//! Record batches as Fetch answers them: the Fetch request for some
//! partitions of one topic, the answer's bytes split into whole batches,
//! and each batch decoded into its records (control batches skipped).
//! Pure functions over bytes: no connection here, nothing printed.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::topic_name;

/// A record batch header: base offset (8), length (4), leader epoch (4),
/// magic (1), CRC (4), attributes (2), last offset delta (4).
const BATCH_HEADER_BYTES: usize = 27;
const BATCH_LENGTH_AT: usize = 8;
pub const BATCH_MAGIC_AT: usize = 16;
const BATCH_ATTRIBUTES_AT: usize = 21;
const BATCH_LAST_OFFSET_DELTA_AT: usize = 23;
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// A Fetch of `topic`'s `partitions` (partition, fetch offset, partition
/// max bytes), outside any fetch session, as a consumer (replica -1).
pub fn fetch_request(
    topic: &str,
    partitions: &[(i32, i64, i32)],
    wait_ms: u64,
    max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(wait_ms.min(i32::MAX as u64) as i32)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(partition, offset, partition_max_bytes)| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )])
}

/// Whole record batches of a fetched partition, in order; a batch cut off
/// by the fetch size limit is left out (it is fetched again next time).
pub fn split_batches(mut data: Bytes) -> Vec<Bytes> {
    let mut batches = Vec::new();
    while data.len() >= BATCH_HEADER_BYTES {
        let length_bytes = &data[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4];
        let length = i32::from_be_bytes(length_bytes.try_into().expect("4 bytes"));
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let total = BATCH_LENGTH_AT + 4 + length;
        if length < BATCH_HEADER_BYTES - BATCH_LENGTH_AT - 4 || data.len() < total {
            break;
        }
        batches.push(data.split_to(total));
    }
    batches
}

/// One decoded batch: its records (none for a control batch) and the
/// offset after its last record.
pub struct Batch {
    pub records: Vec<Record>,
    pub next_offset: i64,
}

pub fn decode_batch(mut batch: Bytes) -> Result<Batch> {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "split_batches keeps whole headers"
    );
    let base_offset = i64::from_be_bytes(batch[..8].try_into().expect("8 bytes"));
    let magic = batch[BATCH_MAGIC_AT];
    if magic != 2 {
        bail!("record batch at offset {base_offset} has message format v{magic}, not v2");
    }
    let attributes_bytes = &batch[BATCH_ATTRIBUTES_AT..BATCH_ATTRIBUTES_AT + 2];
    let attributes = i16::from_be_bytes(attributes_bytes.try_into().expect("2 bytes"));
    let delta_bytes = &batch[BATCH_LAST_OFFSET_DELTA_AT..BATCH_LAST_OFFSET_DELTA_AT + 4];
    let last_offset_delta = i32::from_be_bytes(delta_bytes.try_into().expect("4 bytes"));
    let next_offset = base_offset
        .saturating_add(i64::from(last_offset_delta.max(0)))
        .saturating_add(1);
    if attributes & ATTRIBUTE_CONTROL != 0 {
        return Ok(Batch {
            records: Vec::new(),
            next_offset,
        });
    }
    let set = RecordBatchDecoder::decode(&mut batch)
        .with_context(|| format!("decoding the record batch at offset {base_offset}"))?;
    Ok(Batch {
        records: set.records,
        next_offset,
    })
}
