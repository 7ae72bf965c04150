//! OffsetForLeaderEpoch (key 23): where a leader epoch ends in this
//! leader's log, so that a follower (or a consumer after a leader change,
//! KIP-320) cuts what the leader does not have. Answered by the owning
//! shards from the log's epoch cache (one hop per shard).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use sluice_shards::ShardId;

use super::{owners, ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::shard;

pub const API: ApiSupport = super::api(ApiKey::OffsetForLeaderEpoch, 2, 4);

/// Kafka's "no such epoch" answer.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;

#[derive(Clone, Copy, Debug)]
struct Answer {
    error_code: i16,
    leader_epoch: i32,
    end_offset: i64,
}

impl Answer {
    fn error(error_code: i16) -> Answer {
        Answer {
            error_code,
            leader_epoch: UNDEFINED_EPOCH,
            end_offset: UNDEFINED_OFFSET,
        }
    }
}

/// (topic, partition, current leader epoch, requested epoch)
type Query = (String, i32, i32, i32);

pub async fn handle(
    context: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = context.shard.image();
    let node_id = context.shard.config.node_id;
    // A follower (replica_id >= 0) needs CLUSTER_ACTION; a client DESCRIBE
    // on the topic (Kafka's rule).
    let follower_allowed =
        request.replica_id.0 >= 0 && context.authorized_on_cluster(Operation::ClusterAction);
    let check = |name: &str, partition: i32| match request.replica_id.0 {
        replica if replica >= 0 && !follower_allowed => {
            Err(error_codes::TOPIC_AUTHORIZATION_FAILED)
        }
        replica if replica >= 0 => image.leader_check(name, partition, node_id),
        _ => context.topic_leader_check(&image, Operation::Describe, name, partition),
    };
    let mut jobs: BTreeMap<ShardId, Vec<Query>> = BTreeMap::new();
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        for partition in &topic.partitions {
            if check(&name, partition.partition).is_ok() {
                let owner = context.shard.partition_owner(&name, partition.partition);
                jobs.entry(owner).or_default().push((
                    name.clone(),
                    partition.partition,
                    partition.current_leader_epoch,
                    partition.leader_epoch,
                ));
            }
        }
    }
    let answers = owners::gather(
        context,
        jobs,
        |(topic, partition, _, _)| (topic.clone(), *partition),
        answer_on_owner,
        Answer::error(error_codes::NOT_LEADER_OR_FOLLOWER),
    )
    .await;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let index = partition.partition;
                    let answer =
                        answers
                            .get(&(name.clone(), index))
                            .copied()
                            .unwrap_or_else(|| {
                                let refused = check(&name, index)
                                    .err()
                                    .unwrap_or(error_codes::UNKNOWN_TOPIC_OR_PARTITION);
                                Answer::error(refused)
                            });
                    EpochEndOffset::default()
                        .with_partition(index)
                        .with_error_code(answer.error_code)
                        .with_leader_epoch(answer.leader_epoch)
                        .with_end_offset(answer.end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

async fn answer_on_owner(queries: Vec<Query>) -> Vec<Answer> {
    let shard = shard::current();
    queries
        .into_iter()
        .map(|(topic, index, current_epoch, epoch)| {
            let Some(partition) = shard.partitions.get(&topic, index) else {
                return Answer::error(shard.partitions.absent_error(&topic, index));
            };
            if !partition.is_leader() {
                return Answer::error(error_codes::NOT_LEADER_OR_FOLLOWER);
            }
            let ours = partition.leader_epoch();
            if current_epoch >= 0 && current_epoch < ours {
                return Answer::error(error_codes::FENCED_LEADER_EPOCH);
            }
            if current_epoch > ours {
                return Answer::error(error_codes::UNKNOWN_LEADER_EPOCH);
            }
            match partition.log.end_offset_for_epoch(epoch) {
                Some((found, end)) => Answer {
                    error_code: error_codes::NONE,
                    leader_epoch: found,
                    end_offset: end.0,
                },
                None => Answer {
                    error_code: error_codes::NONE,
                    leader_epoch: UNDEFINED_EPOCH,
                    end_offset: UNDEFINED_OFFSET,
                },
            }
        })
        .collect()
}
