//! TxnOffsetCommit (key 28): a transaction's consumed offsets, sent to the
//! group's coordinator, where they wait for the transaction's marker (see
//! `coordinator::manager::txn_offsets`). v3+ carries the group's
//! generation and member (KIP-447), checked as OffsetCommit's are.
//! v0 to v4 (v5 is KIP-890's transaction version 2).

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::offset_commit::{accepted_commits, codes_in_order, commit_refusal, refuse_unknown};
use super::{ApiSupport, RequestContext};
use crate::coordinator::manager::{CommitRequest, PartitionCommit};
use crate::coordinator::{errors, submit_to_coordinator};

pub const API: ApiSupport = super::api(ApiKey::TxnOffsetCommit, 0, 4);

pub async fn handle(
    context: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let whole = commit_refusal(
        context,
        request.group_id.as_str(),
        Some(request.transactional_id.as_str()),
    );
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
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        // TxnOffsetCommit v3+ carries the group's member and generation (a
        // consumer-protocol member's epoch), as OffsetCommit v9 does.
        api_version: if context.api_version >= 3 { 9 } else { 8 },
        retention_time_ms: -1,
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
    let producer = (request.producer_id.0, request.producer_epoch);
    let group_id = commit.group_id.clone();
    let codes = if let Some(code) = whole {
        Err(code)
    } else if group_id.is_empty() {
        Err(errors::INVALID_GROUP_ID)
    } else {
        submit_to_coordinator(&context.shard, &group_id, move |coordinator| async move {
            coordinator.txn_commit(commit, producer).await
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
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
