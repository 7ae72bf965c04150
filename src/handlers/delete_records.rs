//! DeleteRecords (key 21): advances partitions' log start offsets, on their
//! owning shards (one hop per shard). Offset -1 means the high watermark.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};
use sluice_shards::ShardId;

use super::{owners, ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::shard;
use crate::storage::Offset;

pub const API: ApiSupport = super::api(ApiKey::DeleteRecords, 0, 2);

/// Kafka's "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(
    context: &RequestContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let image = context.shard.image();
    let mut jobs: BTreeMap<ShardId, Vec<(String, i32, i64)>> = BTreeMap::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        for partition in topic.partitions.iter().filter(|p| {
            context
                .topic_leader_check(&image, Operation::Delete, &name, p.partition_index)
                .is_ok()
        }) {
            let owner = context
                .shard
                .partition_owner(&name, partition.partition_index);
            jobs.entry(owner).or_default().push((
                name.clone(),
                partition.partition_index,
                partition.offset,
            ));
        }
    }
    let results = owners::gather(
        context,
        jobs,
        |(topic, partition, _)| (topic.clone(), *partition),
        delete_on_owner,
        (error_codes::NOT_LEADER_OR_FOLLOWER, -1),
    )
    .await;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let (code, low_watermark) = results
                        .get(&(name.clone(), partition.partition_index))
                        .copied()
                        .unwrap_or_else(|| {
                            let refused = context
                                .topic_leader_check(
                                    &image,
                                    Operation::Delete,
                                    &name,
                                    partition.partition_index,
                                )
                                .err()
                                .unwrap_or(error_codes::UNKNOWN_TOPIC_OR_PARTITION);
                            (refused, -1)
                        });
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code)
                        .with_low_watermark(low_watermark)
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

async fn delete_on_owner(deletions: Vec<(String, i32, i64)>) -> Vec<(i16, i64)> {
    let shard = shard::current();
    let mut answers = Vec::with_capacity(deletions.len());
    for (topic, index, offset) in deletions {
        let Some(partition) = shard.partitions.get(&topic, index) else {
            answers.push((shard.partitions.absent_error(&topic, index), -1));
            continue;
        };
        let high_watermark = partition.high_watermark();
        let target = if offset == HIGH_WATERMARK {
            high_watermark
        } else {
            offset
        };
        if target < 0 || target > high_watermark {
            answers.push((
                error_codes::OFFSET_OUT_OF_RANGE,
                partition.log_start_offset(),
            ));
            continue;
        }
        match partition.log.delete_records_before(Offset(target)).await {
            Ok(start) => {
                tracing::info!(%topic, partition = index, log_start_offset = start.0, "records deleted");
                answers.push((error_codes::NONE, start.0));
            }
            Err(error) => {
                tracing::warn!(%topic, partition = index, %error, "delete records failed");
                answers.push((error_codes::KAFKA_STORAGE_ERROR, -1));
            }
        }
    }
    answers
}
