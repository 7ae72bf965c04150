//! OffsetFetch (key 9): forwarded to each group's coordinator shard. v1
//! names partitions; v2+ may ask for every committed offset (null topics)
//! and has a top-level error; v8+ asks for a batch of groups; v9 names the
//! asking member of a KIP-848 consumer group and its epoch, which must be
//! current (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH, FENCED_MEMBER_EPOCH as
//! the group's error). A partition
//! without a commit answers offset -1 with empty metadata, as Kafka does.
//! With `require_stable` (v7+), a partition with transactional offsets
//! pending answers UNSTABLE_OFFSET_COMMIT (the client retries).
//! Authorization: DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED) and on
//! each topic (see `fetch_group`).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::manager::FetchedOffsets;
use crate::coordinator::{errors, submit_to_coordinator};
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;

pub const API: ApiSupport = super::api(ApiKey::OffsetFetch, 1, 9);

type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// The partitions answered with an error instead of their offset:
/// UNSTABLE_OFFSET_COMMIT (transactional offsets pending),
/// TOPIC_AUTHORIZATION_FAILED (no DESCRIBE on the topic).
type Refusals = BTreeMap<(String, i32), i16>;

pub async fn handle(context: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if context.api_version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in &request.groups {
            let wanted: Wanted = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let member = (
                group.member_id.as_ref().map(|m| m.to_string()),
                group.member_epoch,
            );
            let (code, fetched, refusals) = fetch_group(
                context,
                group.group_id.to_string(),
                wanted,
                member,
                request.require_stable,
            )
            .await;
            let topics = fetched
                .into_iter()
                .map(|(topic, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|(partition, offset)| {
                            let refused = refusals.get(&(topic.clone(), partition)).copied();
                            let (offset, epoch, metadata) =
                                split(offset.filter(|_| refused.is_none()));
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(partition)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(str_bytes(metadata)))
                                .with_error_code(refused.unwrap_or(errors::NONE))
                        })
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(partitions)
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(str_bytes(group.group_id.to_string())))
                    .with_error_code(code)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let require_stable = context.api_version >= 7 && request.require_stable;
    let (code, fetched, refusals) = fetch_group(
        context,
        request.group_id.to_string(),
        wanted,
        (None, -1),
        require_stable,
    )
    .await;
    let topics = fetched
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, offset)| {
                    let refused = refusals.get(&(topic.clone(), partition)).copied();
                    let (offset, epoch, metadata) = split(offset.filter(|_| refused.is_none()));
                    // v1 has no top-level error: it goes on each partition.
                    let code = if context.api_version < 2 {
                        code
                    } else {
                        refused.unwrap_or(errors::NONE)
                    };
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(str_bytes(metadata)))
                        .with_error_code(code)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default()
        .with_error_code(code)
        .with_topics(topics)
}

fn split(offset: Option<crate::coordinator::group::CommittedOffset>) -> (i64, i32, String) {
    match offset {
        Some(offset) => (offset.offset, offset.leader_epoch, offset.metadata),
        None => (-1, -1, String::new()),
    }
}

/// The offsets of one group, from its coordinator shard, and (when
/// `require_stable`) the partitions with transactional offsets pending; on
/// failure, the error and the requested partitions with no offsets.
async fn fetch_group(
    context: &RequestContext,
    group_id: String,
    wanted: Wanted,
    member: (Option<String>, i32),
    require_stable: bool,
) -> (i16, FetchedOffsets, Refusals) {
    let empty = |wanted: &Wanted| -> FetchedOffsets {
        wanted
            .iter()
            .flatten()
            .map(|(topic, partitions)| {
                (
                    topic.clone(),
                    partitions.iter().map(|p| (*p, None)).collect(),
                )
            })
            .collect()
    };
    if let Some(code) = context.group_refusal(Operation::Describe, &group_id) {
        return (code, empty(&wanted), Refusals::new());
    }
    let target = group_id.clone();
    let asked = wanted.clone();
    let outcome = submit_to_coordinator(&context.shard, &target, move |coordinator| async move {
        let unstable = if require_stable {
            coordinator.unstable_offsets(&group_id)
        } else {
            BTreeSet::new()
        };
        let member = (member.0.as_deref(), member.1);
        coordinator
            .member_fetch(&group_id, member, asked.as_deref())
            .await
            .map(|fetched| (fetched, unstable))
    })
    .await;
    // Topics without DESCRIBE: left out of "every topic", refused with
    // TOPIC_AUTHORIZATION_FAILED when named (Kafka's rule).
    let describable = |topic: &str| context.authorized(Operation::Describe, Resource::topic(topic));
    match outcome {
        Ok(Ok((mut fetched, unstable))) => {
            let mut refusals: Refusals = unstable
                .into_iter()
                .map(|key| (key, crate::txn::errors::UNSTABLE_OFFSET_COMMIT))
                .collect();
            match wanted {
                None => fetched.retain(|(topic, _)| describable(topic)),
                Some(_) => {
                    for (topic, partitions) in &fetched {
                        if !describable(topic) {
                            for (partition, _) in partitions {
                                let code = error_codes::TOPIC_AUTHORIZATION_FAILED;
                                refusals.insert((topic.clone(), *partition), code);
                            }
                        }
                    }
                }
            }
            (errors::NONE, fetched, refusals)
        }
        Ok(Err(code)) | Err(code) => (code, empty(&wanted), Refusals::new()),
    }
}
