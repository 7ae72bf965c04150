//! Writes a transaction's COMMIT or ABORT control markers: one hop to
//! each shard that owns partitions of the transaction, where every
//! partition gets its control batch (`Partition::write_marker`), and each
//! `__consumer_offsets` partition's group coordinator makes the
//! transaction's offsets visible (commit) or drops them (abort).
//!
//! Runs on the transaction coordinator's shard; the per-partition work runs
//! on the owners. Partitions led by another broker get their markers with
//! WriteTxnMarkers (one call per leader); what fails is returned to be
//! retried.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH,
};

use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use sluice_shards::ShardId;

use super::state::MarkerJob;
use crate::coordinator::OFFSETS_TOPIC;
use crate::replication::client::LeaderConnection;
use crate::shard::{self, Shard};

/// Kafka's `ControlRecordType`: ABORT 0, COMMIT 1.
pub const CONTROL_TYPE_ABORT: i16 = 0;
pub const CONTROL_TYPE_COMMIT: i16 = 1;

/// One marker to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// The control batch of `marker`: one record whose key is Kafka's
/// `ControlRecordKey` (version 0, type) and whose value is
/// `EndTransactionMarker` (version 0, coordinator epoch).
pub fn control_batch(marker: &TxnMarker, now_ms: i64) -> Result<Bytes, String> {
    let mut key = BytesMut::new();
    key.put_i16(0);
    key.put_i16(if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    });
    let mut value = BytesMut::new();
    value.put_i16(0);
    value.put_i32(marker.coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &[record], &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Writes `job`'s markers; returns the partitions that could not be
/// written now (to retry). Partitions this broker leads are written here,
/// one hop per owning shard; the others are sent to their leaders with
/// WriteTxnMarkers.
pub async fn write_all(
    shard: &Shard,
    job: &MarkerJob,
    coordinator_epoch: i32,
) -> Vec<(String, i32)> {
    let marker = TxnMarker {
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
        commit: job.commit,
        coordinator_epoch,
    };
    let image = shard.image();
    let node_id = shard.config.node_id;
    let mut local = Vec::new();
    let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, partition) in &job.partitions {
        match image.leader_of(topic, *partition) {
            Some(leader) if leader != node_id => remote
                .entry(leader)
                .or_default()
                .push((topic.clone(), *partition)),
            // Led here, or without a leader (the owner decides: a deleted
            // topic is skipped, an offline partition retried).
            _ => local.push((topic.clone(), *partition)),
        }
    }
    let mut failed = write_local(shard, local, marker).await;
    for (leader, partitions) in remote {
        failed.extend(write_remote(shard, leader, partitions, marker).await);
    }
    failed
}

/// Writes `marker` to `partitions` on their owning shards of this broker;
/// returns those not written.
pub async fn write_local(
    shard: &Shard,
    partitions: Vec<(String, i32)>,
    marker: TxnMarker,
) -> Vec<(String, i32)> {
    let mut by_owner: BTreeMap<ShardId, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let owner = shard.partition_owner(&topic, partition);
        by_owner.entry(owner).or_default().push((topic, partition));
    }
    let mut failed = Vec::new();
    for (owner, partitions) in by_owner {
        let asked = partitions.clone();
        let outcome = shard
            .mesh
            .submit_to(owner, move || write_on_owner(partitions, marker))
            .await;
        match outcome {
            Ok(not_written) => failed.extend(not_written),
            Err(error) => {
                tracing::warn!(%error, "could not reach a shard to write transaction markers");
                failed.extend(asked);
            }
        }
    }
    failed
}

/// How long a WriteTxnMarkers call to another broker may take.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `marker` for `partitions` to their leader `leader` (WriteTxnMarkers
/// v1); returns those not written.
async fn write_remote(
    shard: &Shard,
    leader: i32,
    partitions: Vec<(String, i32)>,
    marker: TxnMarker,
) -> Vec<(String, i32)> {
    let Some(address) = crate::replication::fetcher::leader_address(shard, leader) else {
        return partitions;
    };
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &partitions {
        topics.entry(topic.clone()).or_default().push(*partition);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.producer_epoch)
            .with_transaction_result(marker.commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            )]);
    let answer = async {
        let mut connection =
            LeaderConnection::connect(address, REMOTE_TIMEOUT, &shard.config).await?;
        connection.call(&request, 1, REMOTE_TIMEOUT).await
    };
    let response = match answer.await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(leader, %error, "WriteTxnMarkers failed");
            return partitions;
        }
    };
    let written: Vec<(String, i32)> = response
        .markers
        .iter()
        .flat_map(|result| &result.topics)
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .filter(|p| p.error_code == crate::protocol::error_codes::NONE)
                .map(|p| (topic.name.to_string(), p.partition_index))
        })
        .collect();
    partitions
        .into_iter()
        .filter(|partition| !written.contains(partition))
        .collect()
}

/// On the owning shard: writes the marker to each partition; returns those
/// not written.
async fn write_on_owner(partitions: Vec<(String, i32)>, marker: TxnMarker) -> Vec<(String, i32)> {
    let shard = shard::current();
    let image = shard.image();
    let now_ms = crate::storage::now_ms();
    let mut failed = Vec::new();
    for (topic, index) in partitions {
        if topic == OFFSETS_TOPIC {
            // The marker goes into the log first (a load then replays the
            // transaction's offsets as the coordinator applies them now).
            let marked = match shard.partitions.get(&topic, index) {
                Some(partition) if partition.is_leader() => {
                    partition.write_marker(&marker, now_ms).await.is_ok()
                }
                _ => false,
            };
            if !marked {
                failed.push((topic, index));
                continue;
            }
            let coordinator = crate::coordinator::runtime::current();
            if let Err(error) = coordinator
                .complete_txn_offsets(index, marker.producer_id, marker.commit)
                .await
            {
                tracing::warn!(%error, partition = index, "could not complete transactional offsets");
                failed.push((topic, index));
            }
            continue;
        }
        let exists = image
            .topic(&topic)
            .is_some_and(|t| (0..t.partitions).contains(&index));
        if !exists {
            // Deleted meanwhile: nothing to mark, as Kafka drops it.
            continue;
        }
        let Some(partition) = shard.partitions.get(&topic, index) else {
            failed.push((topic, index));
            continue;
        };
        if !partition.is_leader() {
            failed.push((topic, index));
            continue;
        }
        if let Err(error) = partition.write_marker(&marker, now_ms).await {
            tracing::warn!(?error, %topic, partition = index, "could not write a transaction marker");
            failed.push((topic, index));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::BatchHeader;

    #[test]
    fn control_batches_carry_the_attributes_and_kafkas_key() {
        let marker = TxnMarker {
            producer_id: 42,
            producer_epoch: 3,
            commit: true,
            coordinator_epoch: 7,
        };
        let batch = control_batch(&marker, 1_700_000_000_000).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(header.is_control() && header.is_transactional());
        assert_eq!(header.producer_id, 42);
        assert_eq!(
            crate::partition::txn_index::control_type(&batch),
            Some(CONTROL_TYPE_COMMIT)
        );
    }
}
