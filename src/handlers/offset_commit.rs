//! OffsetCommit (key 8): checks topics against this shard's image (unknown
//! ones are UNKNOWN_TOPIC_OR_PARTITION, as Kafka's request layer answers),
//! then forwards the rest to the group's coordinator shard, which appends
//! them to the group's `__consumer_offsets` partition before answering.
//! v2 to v4 carry a retention time; v7+ a group instance id.
//! Authorization (Kafka's): READ on the group (else GROUP_AUTHORIZATION_FAILED
//! for all), READ on each topic (else TOPIC_AUTHORIZATION_FAILED).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};

use super::{ApiSupport, RequestContext};
use crate::coordinator::manager::{CommitRequest, PartitionCommit};
use crate::coordinator::{errors, submit_to_coordinator};
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;

pub const API: ApiSupport = super::api(ApiKey::OffsetCommit, 2, 9);

pub async fn handle(
    context: &RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let whole = commit_refusal(context, request.group_id.as_str(), None);
    let refused = refuse_unknown(
        context,
        whole,
        request.topics.iter().map(|topic| {
            let indexes = topic.partitions.iter().map(|p| p.partition_index);
            (topic.name.as_str(), indexes.collect())
        }),
    );
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
        topics: accepted_commits(
            request.topics.iter().map(|topic| {
                let partitions = topic.partitions.iter().map(|p| PartitionCommit {
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
                (topic.name.to_string(), partitions.collect())
            }),
            &refused,
        ),
    };
    let group_id = commit.group_id.clone();
    let codes = if let Some(code) = whole {
        Err(code)
    } else if group_id.is_empty() {
        Err(errors::INVALID_GROUP_ID)
    } else {
        submit_to_coordinator(&context.shard, &group_id, move |coordinator| async move {
            coordinator.commit(commit).await
        })
        .await
    };
    let codes = codes_in_order(&codes, &refused);
    let topics = request
        .topics
        .iter()
        .zip(codes)
        .map(|(topic, codes)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
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

/// Kafka's checks of a commit as a whole: WRITE on the transactional id
/// (TxnOffsetCommit), then READ on the group; the code every partition
/// gets when one fails.
pub(super) fn commit_refusal(
    context: &RequestContext,
    group_id: &str,
    transactional_id: Option<&str>,
) -> Option<i16> {
    if let Some(id) = transactional_id {
        if !context.authorized(Operation::Write, Resource::transactional_id(id)) {
            return Some(error_codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
    }
    (!context.authorized(Operation::Read, Resource::group(group_id)))
        .then_some(error_codes::GROUP_AUTHORIZATION_FAILED)
}

/// Per topic, per partition of a commit: `whole` (a [`commit_refusal`])
/// for all; else TOPIC_AUTHORIZATION_FAILED without READ on the topic,
/// UNKNOWN_TOPIC_OR_PARTITION for a partition this broker's image does not
/// have, as Kafka's request layer answers; `None` for the others.
pub(super) fn refuse_unknown<'a>(
    context: &RequestContext,
    whole: Option<i16>,
    topics: impl Iterator<Item = (&'a str, Vec<i32>)>,
) -> Vec<Vec<Option<i16>>> {
    let image = context.shard.image();
    topics
        .map(|(name, indexes)| {
            let topic = image.topic(name);
            let readable =
                whole.is_none() && context.authorized(Operation::Read, Resource::topic(name));
            indexes
                .into_iter()
                .map(|index| {
                    let known = topic.is_some_and(|t| (0..t.partitions).contains(&index));
                    match (whole, readable) {
                        (Some(code), _) => Some(code),
                        (None, false) => Some(error_codes::TOPIC_AUTHORIZATION_FAILED),
                        (None, true) => (!known).then_some(errors::UNKNOWN_TOPIC_OR_PARTITION),
                    }
                })
                .collect()
        })
        .collect()
}

/// The partitions to hand the coordinator, by topic: every one not already
/// `refused` (same shape as the request), in request order.
pub(super) fn accepted_commits(
    topics: impl Iterator<Item = (String, Vec<PartitionCommit>)>,
    refused: &[Vec<Option<i16>>],
) -> Vec<(String, Vec<PartitionCommit>)> {
    topics
        .zip(refused)
        .map(|((name, partitions), refused)| {
            let accepted = partitions
                .into_iter()
                .zip(refused)
                .filter(|(_, refused)| refused.is_none())
                .map(|(partition, _)| partition)
                .collect();
            (name, accepted)
        })
        .collect()
}

/// Every partition's code, in request order: its refusal, else the
/// coordinator's error, else the coordinator's code for it (the coordinator
/// saw only the partitions not refused, in order).
pub(super) fn codes_in_order(
    codes: &Result<Vec<Vec<i16>>, i16>,
    refused: &[Vec<Option<i16>>],
) -> Vec<Vec<i16>> {
    refused
        .iter()
        .enumerate()
        .map(|(index, refused)| {
            let mut accepted = match codes {
                Ok(codes) => codes.get(index).cloned().unwrap_or_default().into_iter(),
                Err(_) => Vec::new().into_iter(),
            };
            refused
                .iter()
                .map(|refused| match (refused, codes) {
                    (Some(code), _) => *code,
                    (None, Err(code)) => *code,
                    (None, Ok(_)) => accepted.next().unwrap_or(errors::UNKNOWN_SERVER_ERROR),
                })
                .collect()
        })
        .collect()
}
