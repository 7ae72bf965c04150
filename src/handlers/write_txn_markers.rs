//! WriteTxnMarkers (key 27): a transaction coordinator on another broker
//! asks this partition leader to write COMMIT/ABORT markers (and, for
//! `__consumer_offsets` partitions, to commit or drop the transaction's
//! offsets). Each partition is written on its owning shard
//! (`txn::markers::write_local`); one not written answers
//! NOT_LEADER_OR_FOLLOWER, or UNKNOWN_TOPIC_OR_PARTITION if unknown, and
//! the coordinator retries it. v1 (the only version `kafka-protocol` has).

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ApiKey, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::txn::markers::{write_local, TxnMarker};

pub const API: ApiSupport = super::api(ApiKey::WriteTxnMarkers, 1, 1);

pub async fn handle(
    context: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let image = context.shard.image();
    // Only brokers write markers: CLUSTER_ACTION (Kafka's rule).
    let refused = context.cluster_refusal(crate::security::acl::Operation::ClusterAction);
    let mut results = Vec::with_capacity(request.markers.len());
    for marker in request.markers {
        let txn_marker = TxnMarker {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let partitions: Vec<(String, i32)> = marker
            .topics
            .iter()
            .flat_map(|topic| {
                let name = topic.name.to_string();
                topic
                    .partition_indexes
                    .iter()
                    .map(move |p| (name.clone(), *p))
            })
            .filter(|(topic, partition)| {
                refused.is_none()
                    && image
                        .topic(topic)
                        .is_some_and(|t| (0..t.partitions).contains(partition))
            })
            .collect();
        let failed = write_local(&context.shard, partitions.clone(), txn_marker).await;
        let topics = marker
            .topics
            .iter()
            .map(|topic| {
                let name = topic.name.to_string();
                let results = topic
                    .partition_indexes
                    .iter()
                    .map(|&index| {
                        let key = (name.clone(), index);
                        let code = if let Some(code) = refused {
                            code
                        } else if !partitions.contains(&key) {
                            error_codes::UNKNOWN_TOPIC_OR_PARTITION
                        } else if failed.contains(&key) {
                            error_codes::NOT_LEADER_OR_FOLLOWER
                        } else {
                            error_codes::NONE
                        };
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(index)
                            .with_error_code(code)
                    })
                    .collect();
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_partitions(results)
            })
            .collect();
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
