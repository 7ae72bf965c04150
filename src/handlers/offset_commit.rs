//! OffsetCommit (key 8): checks topics against this shard's image (unknown
//! ones are UNKNOWN_TOPIC_OR_PARTITION, as Kafka's request layer answers),
//! then forwards the rest to the group's coordinator shard, which appends
//! them to the group's `__consumer_offsets` partition before answering.
//! v2 to v4 carry a retention time; v7+ a group instance id.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};

use super::{ApiSupport, RequestContext};
use crate::coordinator::manager::{CommitRequest, PartitionCommit};
use crate::coordinator::{errors, submit_to_coordinator};

pub const API: ApiSupport = super::api(ApiKey::OffsetCommit, 2, 9);

pub async fn handle(
    context: &RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let image = context.shard.image();
    let exists = |topic: &str, partition: i32| {
        image
            .topic(topic)
            .is_some_and(|t| (0..t.partitions).contains(&partition))
    };
    // Per topic, per partition: Some(code) when refused here.
    let refused: Vec<Vec<Option<i16>>> = request
        .topics
        .iter()
        .map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| {
                    (!exists(&topic.name, p.partition_index))
                        .then_some(errors::UNKNOWN_TOPIC_OR_PARTITION)
                })
                .collect()
        })
        .collect();
    let commit = CommitRequest {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        api_version: context.api_version,
        retention_time_ms: if context.api_version <= 4 {
            request.retention_time_ms
        } else {
            -1
        },
        topics: request
            .topics
            .iter()
            .zip(&refused)
            .map(|(topic, refused)| {
                let partitions = topic
                    .partitions
                    .iter()
                    .zip(refused)
                    .filter(|(_, refused)| refused.is_none())
                    .map(|(p, _)| PartitionCommit {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    })
                    .collect();
                (topic.name.to_string(), partitions)
            })
            .collect(),
    };
    let group_id = commit.group_id.clone();
    let codes = if group_id.is_empty() {
        Err(errors::INVALID_GROUP_ID)
    } else {
        submit_to_coordinator(&context.shard, &group_id, move |coordinator| async move {
            coordinator.commit(commit).await
        })
        .await
    };
    let topics = request
        .topics
        .iter()
        .zip(refused)
        .enumerate()
        .map(|(index, (topic, refused))| {
            let mut accepted = match &codes {
                Ok(codes) => codes.get(index).cloned().unwrap_or_default().into_iter(),
                Err(_) => Vec::new().into_iter(),
            };
            let partitions = topic
                .partitions
                .iter()
                .zip(refused)
                .map(|(p, refused)| {
                    let code = match (refused, &codes) {
                        (Some(code), _) => code,
                        (None, Err(code)) => *code,
                        (None, Ok(_)) => accepted.next().unwrap_or(errors::UNKNOWN_SERVER_ERROR),
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
