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
use super::store::{AppendError, LocalFuture, OffsetsLog, ReadRecords};
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

    fn append_transactional(
        &self,
        records: Vec<LogRecord>,
        producer: (i64, i16),
    ) -> LocalFuture<'_, Result<(), AppendError>> {
        Box::pin(async move {
            let Some(partition) = records.first().map(|record| record.partition) else {
                return Ok(());
            };
            let batch = encode_batch(&records, crate::storage::now_ms(), Some(producer))
                .map_err(AppendError::Storage)?;
            append_batch(OFFSETS_TOPIC, partition, batch).await
        })
    }

    fn read(&self, partition: i32) -> LocalFuture<'_, Result<ReadRecords, String>> {
        Box::pin(read_partition(partition))
    }
}

/// One batch of `records`; transactional for `producer` (id, epoch).
fn encode_batch(
    records: &[LogRecord],
    now_ms: i64,
    producer: Option<(i64, i16)>,
) -> Result<Bytes, String> {
    let (producer_id, producer_epoch) = producer.unwrap_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id,
            producer_epoch,
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
    let batch =
        encode_batch(&records, crate::storage::now_ms(), None).map_err(AppendError::Storage)?;
    append_batch(topic, partition, batch).await
}

/// Appends one encoded batch and waits until it is committed.
async fn append_batch(
    topic: &'static str,
    partition: i32,
    batch: Bytes,
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

async fn read_partition(partition: i32) -> Result<ReadRecords, String> {
    read_topic_partition(OFFSETS_TOPIC, partition).await
}

/// Every keyed record of `partition` of the internal `topic` on this shard,
/// from its start (waiting a bounded time for it to open); transactional
/// records count at their COMMIT marker, are dropped at an ABORT, and are
/// returned apart while their transaction is open.
pub async fn read_topic_partition(topic: &str, partition: i32) -> Result<ReadRecords, String> {
    let log = open_partition(topic, partition).await?;
    let log = &log.log;
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let mut records = ReadRecords::default();
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
    out: &mut ReadRecords,
    partition: i32,
) -> Result<Offset, String> {
    let mut position = 0;
    while position < chunk.len() {
        let header = BatchHeader::parse(&chunk[position..])
            .map_err(|error| format!("partition {partition}: {error:?}"))?;
        let total = header.total_bytes();
        if total == 0 || position + total > chunk.len() {
            return Err(format!("partition {partition}: truncated batch"));
        }
        let mut bytes = chunk.slice(position..position + total);
        position += total;
        let last = header.last_offset();
        if last < from.0 {
            continue;
        }
        let start = from.0;
        from = Offset(last + 1);
        if header.is_control() {
            let pending = out.pending.remove(&header.producer_id);
            let commit = crate::partition::txn_index::control_type(&bytes)
                == Some(crate::txn::markers::CONTROL_TYPE_COMMIT);
            if commit {
                out.records.extend(pending.unwrap_or_default());
            }
            continue;
        }
        let set = RecordBatchDecoder::decode(&mut bytes)
            .map_err(|error| format!("partition {partition}: {error}"))?;
        let target = if header.is_transactional() {
            out.pending.entry(header.producer_id).or_default()
        } else {
            &mut out.records
        };
        for record in set.records {
            if record.offset < start || record.control {
                continue;
            }
            if let Some(key) = record.key {
                target.push(LogRecord {
                    partition,
                    key,
                    value: record.value,
                });
            }
        }
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
        let batch = encode_batch(&records, 1_700_000_000_000, None).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.total_bytes(), batch.len());
        let mut out = ReadRecords::default();
        let next = decode_batches(&batch, Offset(0), &mut out, 7).unwrap();
        assert_eq!(next, Offset(3));
        assert_eq!(out.records, records);
        // Records below the asked offset are skipped (a read starts at the
        // batch that contains the offset).
        let mut out = ReadRecords::default();
        decode_batches(&batch, Offset(2), &mut out, 7).unwrap();
        assert_eq!(out.records, vec![record("a", Some("2"))]);
    }

    /// `batch` placed at `base_offset` in a log.
    fn at(batch: Bytes, base_offset: i64) -> Vec<u8> {
        let mut batch = batch.to_vec();
        crate::storage::batch::set_base_offset(&mut batch, base_offset);
        batch
    }

    #[test]
    fn transactional_records_count_at_their_commit_marker() {
        use crate::txn::markers::{control_batch, TxnMarker};
        let marker = |producer_id, commit| TxnMarker {
            producer_id,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 0,
        };
        let mut log = Vec::new();
        log.extend(at(
            encode_batch(&[record("a", Some("1"))], 0, Some((5, 0))).unwrap(),
            0,
        ));
        log.extend(at(
            encode_batch(&[record("b", Some("1"))], 0, Some((6, 0))).unwrap(),
            1,
        ));
        log.extend(at(
            encode_batch(&[record("c", Some("1"))], 0, Some((7, 0))).unwrap(),
            2,
        ));
        log.extend(at(
            encode_batch(&[record("d", Some("1"))], 0, None).unwrap(),
            3,
        ));
        log.extend(at(control_batch(&marker(6, false), 0).unwrap(), 4));
        log.extend(at(control_batch(&marker(5, true), 0).unwrap(), 5));
        let mut out = ReadRecords::default();
        let next = decode_batches(&Bytes::from(log), Offset(0), &mut out, 7).unwrap();
        assert_eq!(next, Offset(6));
        // "d" was not transactional; "a" counts at its commit; "b" was
        // aborted; "c" is still open.
        assert_eq!(
            out.records,
            vec![record("d", Some("1")), record("a", Some("1"))]
        );
        assert_eq!(
            out.pending,
            BTreeMap::from([(7, vec![record("c", Some("1"))])])
        );
    }

    #[test]
    fn damaged_batches_are_errors() {
        let batch = encode_batch(&[record("a", Some("1"))], 0, None).unwrap();
        for cut in [1, 20, batch.len() - 1] {
            let mut out = ReadRecords::default();
            let chunk = batch.slice(..cut);
            assert!(
                decode_batches(&chunk, Offset(0), &mut out, 7).is_err(),
                "cut {cut}"
            );
        }
    }
}
