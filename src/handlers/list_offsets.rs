//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3, v7)
//! and by timestamp, per partition, answered by the owning shards (one hop
//! per shard). With one replica and no transactions, read_committed and
//! read_uncommitted see the same end: the high watermark.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use sluice_shards::ShardId;

use super::{owners, str_bytes, ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::shard;
use crate::storage::Offset;

pub const API: ApiSupport = super::api(ApiKey::ListOffsets, 1, 7);

pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;

#[derive(Clone, Copy, Debug)]
struct Answer {
    error_code: i16,
    timestamp: i64,
    offset: i64,
}

impl Answer {
    fn error(error_code: i16) -> Answer {
        Answer {
            error_code,
            timestamp: -1,
            offset: -1,
        }
    }
}

/// Why a partition was not sent to its owner.
fn refusal(
    image: &crate::cluster::metadata::MetadataImage,
    context: &RequestContext,
    topic: &str,
    partition: i32,
) -> i16 {
    context
        .topic_leader_check(image, Operation::Describe, topic, partition)
        .err()
        .unwrap_or(error_codes::UNKNOWN_TOPIC_OR_PARTITION)
}

pub async fn handle(context: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let image = context.shard.image();
    // read_committed (isolation level 1) answers "latest" with the last
    // stable offset.
    let read_committed = request.isolation_level == 1;
    let mut jobs: BTreeMap<ShardId, Vec<Query>> = BTreeMap::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        for partition in &topic.partitions {
            if context
                .topic_leader_check(
                    &image,
                    Operation::Describe,
                    &name,
                    partition.partition_index,
                )
                .is_ok()
            {
                let owner = context
                    .shard
                    .partition_owner(&name, partition.partition_index);
                jobs.entry(owner).or_default().push((
                    name.clone(),
                    partition.partition_index,
                    partition.timestamp,
                    read_committed,
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
    // The leader epoch exists from v4; earlier versions must leave it unset.
    let leader_epoch = if context.api_version >= 4 { 0 } else { -1 };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let index = partition.partition_index;
                    let answer = answers
                        .get(&(name.clone(), index))
                        .copied()
                        .unwrap_or_else(|| Answer::error(refusal(&image, context, &name, index)));
                    let leader_epoch = image
                        .partition(&name, index)
                        .filter(|_| leader_epoch >= 0)
                        .map_or(leader_epoch, |state| state.leader_epoch);
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(index)
                        .with_error_code(answer.error_code)
                        .with_timestamp(answer.timestamp)
                        .with_offset(answer.offset)
                        .with_leader_epoch(leader_epoch)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Topic, partition, timestamp asked, read_committed.
type Query = (String, i32, i64, bool);

async fn answer_on_owner(queries: Vec<Query>) -> Vec<Answer> {
    let shard = shard::current();
    let mut answers = Vec::with_capacity(queries.len());
    for (topic, index, timestamp, read_committed) in queries {
        let Some(partition) = shard.partitions.get(&topic, index) else {
            answers.push(Answer::error(shard.partitions.absent_error(&topic, index)));
            continue;
        };
        let answer = match timestamp {
            LATEST_TIMESTAMP => Answer {
                error_code: error_codes::NONE,
                timestamp: -1,
                offset: if read_committed {
                    partition.last_stable_offset()
                } else {
                    partition.high_watermark()
                },
            },
            EARLIEST_TIMESTAMP => Answer {
                error_code: error_codes::NONE,
                timestamp: -1,
                offset: partition.log_start_offset(),
            },
            MAX_TIMESTAMP => match partition.offset_of_max_timestamp().await {
                Ok(Some((offset, timestamp))) => Answer {
                    error_code: error_codes::NONE,
                    timestamp,
                    offset,
                },
                Ok(None) => Answer {
                    error_code: error_codes::NONE,
                    timestamp: -1,
                    offset: -1,
                },
                Err(_) => Answer::error(error_codes::KAFKA_STORAGE_ERROR),
            },
            timestamp if timestamp >= 0 => {
                match partition.log.offset_for_timestamp(timestamp).await {
                    Ok(Some((Offset(offset), found))) => Answer {
                        error_code: error_codes::NONE,
                        timestamp: found,
                        offset,
                    },
                    // No record at or after the timestamp: Kafka answers -1.
                    Ok(None) => Answer {
                        error_code: error_codes::NONE,
                        timestamp: -1,
                        offset: -1,
                    },
                    Err(_) => Answer::error(error_codes::KAFKA_STORAGE_ERROR),
                }
            }
            _ => Answer::error(error_codes::UNSUPPORTED_VERSION),
        };
        answers.push(answer);
    }
    answers
}
