//! [`PartitionOffsetsLog`]: the [`OffsetsLog`] on the storage engine. Each
//! append becomes one uncompressed v2 record batch on the group's
//! `__consumer_offsets` partition (owned by this shard, by construction of
//! the coordinator's placement), answered once it is committed
//! ([`append_committed`], the one place that decides what "committed"
//! means); `read` waits for a partition to open, then walks it from its
//! start and decodes every batch.
//!
//! Runs on a coordinator shard. It touches only the `__consumer_offsets`
//! partitions of this shard and knows nothing of groups: keys and values
//! are opaque here.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

use super::records::LogRecord;
use super::store::{AppendError, LocalFuture, OffsetsLog};
use super::OFFSETS_TOPIC;
use crate::partition::replica::Partition;
use crate::storage::batch::BatchHeader;
use crate::storage::{Offset, ReadData, ReadOptions};

/// How much one read of a partition asks for while loading.
const LOAD_READ_BYTES_MAX: usize = 1 << 20;

/// How long a load waits for its `__consumer_offsets` partition to open on
/// this shard (right after the topic is created, or leadership arrives,
/// the image can be ahead of the partition table), and how often it looks.
const OPEN_WAIT_MS: u64 = 10_000;
const OPEN_POLL_MS: u64 = 5;

#[derive(Default)]
pub struct PartitionOffsetsLog;

impl OffsetsLog for PartitionOffsetsLog {
    fn append(&self, records: Vec<LogRecord>) -> LocalFuture<'_, Result<(), AppendError>> {
        Box::pin(async move {
            let mut by_partition: BTreeMap<i32, Vec<LogRecord>> = BTreeMap::new();
            for record in records {
                by_partition
                    .entry(record.partition)
                    .or_default()
                    .push(record);
            }
            for (partition, records) in by_partition {
                append_committed(partition, records).await?;
            }
            Ok(())
        })
    }

    fn read(&self, partition: i32) -> LocalFuture<'_, Result<Vec<LogRecord>, String>> {
        Box::pin(read_partition(partition))
    }
}

fn encode_batch(records: &[LogRecord], now_ms: i64) -> Result<Bytes, String> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch wherever `offset - sequence`
            // changes; keeping it constant (base sequence stays -1, no
            // producer) puts every record in one batch.
            sequence: NO_SEQUENCE.wrapping_add(index as i32),
            timestamp: now_ms,
            key: Some(record.key.clone()),
            value: record.value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Appends `records` to `partition` of `__consumer_offsets` as one batch
/// and returns once they are committed: today, synced to disk on this
/// node; with replication, once the partition's high watermark passes them
/// (the change to make here, and only here). Refuses (NotLeader) when this
/// node does not lead the partition in its image: a coordinator that lost
/// its partition must not write into what is now a follower's copy.
pub async fn append_committed(partition: i32, records: Vec<LogRecord>) -> Result<(), AppendError> {
    append_committed_to(OFFSETS_TOPIC, partition, records).await
}

/// [`append_committed`] for any internal compacted topic this shard's
/// coordinators write (`__consumer_offsets`, `__transaction_state`).
pub async fn append_committed_to(
    topic: &'static str,
    partition: i32,
    records: Vec<LogRecord>,
) -> Result<(), AppendError> {
    let shard = crate::shard::current();
    let name = format!("{topic}-{partition}");
    if shard.image().leader_of(topic, partition) != Some(shard.config.node_id) {
        return Err(AppendError::NotLeader(format!(
            "{name}: this broker does not lead it"
        )));
    }
    let Some(log) = shard.partitions.get(topic, partition) else {
        return Err(AppendError::Storage(format!("{name} is not on this shard")));
    };
    let now_ms = crate::storage::now_ms();
    let batch = encode_batch(&records, now_ms).map_err(AppendError::Storage)?;
    let outcome = log
        .append(&batch, now_ms)
        .await
        .map_err(|error| AppendError::Storage(format!("{name}: {error:?}")))?;
    let configs = shard
        .image()
        .topic(topic)
        .map(|topic| topic.configs.clone())
        .unwrap_or_default();
    let min_insync = shard
        .effective_config()
        .topic_config(&configs)
        .min_insync_replicas;
    let timeout = std::time::Duration::from_millis(OFFSETS_COMMIT_TIMEOUT_MS);
    // Committed: the high watermark passed it (every in-sync replica has it
    // on disk), as Kafka commits offsets with acks=all.
    let durable = log.log.wait_durable(Offset(outcome.last_offset));
    let failed_sync = async move {
        match durable.await {
            Err(error) => Err(AppendError::Storage(format!("{name}: {error}"))),
            Ok(()) => std::future::pending().await,
        }
    };
    let replicated = async {
        log.wait_committed(outcome.last_offset, min_insync.max(1) as usize, timeout)
            .await
            .map_err(|code| match code {
                crate::protocol::error_codes::NOT_LEADER_OR_FOLLOWER => {
                    AppendError::NotLeader(format!("{topic}-{partition}: leadership moved"))
                }
                code => AppendError::Storage(format!(
                    "{topic}-{partition}: not committed ({})",
                    crate::protocol::response_errors::error_name(code)
                )),
            })
    };
    futures_lite::future::or(replicated, failed_sync).await
}

/// Kafka's `offsets.commit.timeout.ms` default.
const OFFSETS_COMMIT_TIMEOUT_MS: u64 = 5_000;

/// `partition` of `__consumer_offsets` on this shard, once it is open
/// (bounded wait).
async fn open_partition(topic: &str, partition: i32) -> Result<Rc<Partition>, String> {
    let shard = crate::shard::current();
    for _ in 0..OPEN_WAIT_MS / OPEN_POLL_MS {
        if let Some(log) = shard.partitions.get(topic, partition) {
            return Ok(log);
        }
        glommio::timer::sleep(std::time::Duration::from_millis(OPEN_POLL_MS)).await;
    }
    Err(format!("{topic}-{partition} is not open on {}", shard.id()))
}

async fn read_partition(partition: i32) -> Result<Vec<LogRecord>, String> {
    read_topic_partition(OFFSETS_TOPIC, partition).await
}

/// Every keyed record of `partition` of the internal `topic` on this shard,
/// from its start (waiting a bounded time for it to open).
pub async fn read_topic_partition(topic: &str, partition: i32) -> Result<Vec<LogRecord>, String> {
    let log = open_partition(topic, partition).await?;
    let log = &log.log;
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let mut records = Vec::new();
    while offset < end {
        let options = ReadOptions {
            max_bytes: LOAD_READ_BYTES_MAX,
            min_one_batch: true,
            upper_offset: None,
            zero_copy: false,
        };
        let read = log
            .read_with(offset, options)
            .await
            .map_err(|error| format!("{topic}-{partition} at {offset}: {error}"))?;
        let chunks = match read.data {
            ReadData::Memory(chunks) => chunks,
            ReadData::Empty => break,
            ReadData::File(_) => return Err("a zero-copy read was not asked for".into()),
        };
        let before = offset;
        for chunk in chunks {
            offset = decode_batches(&chunk, offset, &mut records, partition)?;
        }
        if offset <= before {
            return Err(format!(
                "{topic}-{partition}: no progress reading at {offset}"
            ));
        }
    }
    Ok(records)
}

/// Decodes the batches in `chunk`, keeping records at or after `from`;
/// returns the offset after the last batch.
fn decode_batches(
    chunk: &Bytes,
    mut from: Offset,
    out: &mut Vec<LogRecord>,
    partition: i32,
) -> Result<Offset, String> {
    let mut position = 0;
    while position < chunk.len() {
        let header = BatchHeader::parse(&chunk[position..])
            .map_err(|error| format!("{OFFSETS_TOPIC}-{partition}: {error:?}"))?;
        let total = header.total_bytes();
        if total == 0 || position + total > chunk.len() {
            return Err(format!("{OFFSETS_TOPIC}-{partition}: truncated batch"));
        }
        let mut bytes = chunk.slice(position..position + total);
        position += total;
        let last = header.last_offset();
        if last < from.0 {
            continue;
        }
        let set = RecordBatchDecoder::decode(&mut bytes)
            .map_err(|error| format!("{OFFSETS_TOPIC}-{partition}: {error}"))?;
        for record in set.records {
            if record.offset < from.0 || record.control {
                continue;
            }
            if let Some(key) = record.key {
                out.push(LogRecord {
                    partition,
                    key,
                    value: record.value,
                });
            }
        }
        from = Offset(last + 1);
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: Option<&str>) -> LogRecord {
        LogRecord {
            partition: 7,
            key: Bytes::from(key.to_string()),
            value: value.map(|v| Bytes::from(v.to_string())),
        }
    }

    #[test]
    fn batches_round_trip_with_tombstones() {
        let records = vec![
            record("a", Some("1")),
            record("b", None),
            record("a", Some("2")),
        ];
        let batch = encode_batch(&records, 1_700_000_000_000).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.total_bytes(), batch.len());
        let mut out = Vec::new();
        let next = decode_batches(&batch, Offset(0), &mut out, 7).unwrap();
        assert_eq!(next, Offset(3));
        assert_eq!(out, records);
        // Records below the asked offset are skipped (a read starts at the
        // batch that contains the offset).
        let mut out = Vec::new();
        decode_batches(&batch, Offset(2), &mut out, 7).unwrap();
        assert_eq!(out, vec![record("a", Some("2"))]);
    }

    #[test]
    fn damaged_batches_are_errors() {
        let batch = encode_batch(&[record("a", Some("1"))], 0).unwrap();
        for cut in [1, 20, batch.len() - 1] {
            let mut out = Vec::new();
            let chunk = batch.slice(..cut);
            assert!(
                decode_batches(&chunk, Offset(0), &mut out, 7).is_err(),
                "cut {cut}"
            );
        }
    }
}
