//! Offsets: partition leaders from Metadata, log offsets from each
//! partition's current leader (ListOffsets, following a leader that moves),
//! a group's committed offsets (OffsetFetch) and committing new ones
//! (OffsetCommit) at the group's coordinator.

use std::collections::BTreeMap;

use anyhow::Result;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    BrokerId, ListOffsetsRequest, MetadataResponse, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{retrying, Cluster};
use crate::errors::{codes, KafkaError};
use crate::wire::Connection;
use crate::{group_id, topic_name};

/// A topic and partition, ordered by topic then partition.
pub type TopicPartition = (String, i32);

/// Kafka's special ListOffsets timestamps.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;

/// Partition -> leader broker id, per topic.
pub type Leaders = BTreeMap<String, BTreeMap<i32, i32>>;

/// The leaders of every partition of `topics`; an unknown topic is an
/// error naming it.
pub fn leaders(cluster: &mut Cluster, topics: &[String]) -> Result<Leaders> {
    let metadata = cluster.metadata(Some(topics))?;
    leaders_from(&metadata, topics)
}

pub fn leaders_from(metadata: &MetadataResponse, topics: &[String]) -> Result<Leaders> {
    let mut leaders = Leaders::new();
    for topic in &metadata.topics {
        let name = topic.name.as_ref().map_or("", |name| name.0.as_str());
        if !topics.iter().any(|wanted| wanted == name) {
            continue;
        }
        KafkaError::check(
            topic.error_code,
            None,
            format!("Topic '{name}' does not exist or has no leader."),
        )?;
        let partitions = leaders.entry(name.to_string()).or_default();
        for partition in &topic.partitions {
            partitions.insert(partition.partition_index, partition.leader_id.0);
        }
    }
    for topic in topics {
        if !leaders.contains_key(topic) {
            KafkaError::check(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                None,
                format!("Topic '{topic}' does not exist."),
            )?;
        }
    }
    Ok(leaders)
}

/// The offset at `timestamp` (or `LATEST_TIMESTAMP`, `EARLIEST_TIMESTAMP`)
/// of each partition, asked of its current leader (Metadata is refreshed
/// when a leader moved); `None` when no record is that recent (a
/// timestamp lookup past the end).
pub fn list_offsets(
    cluster: &mut Cluster,
    partitions: &[TopicPartition],
    timestamp: i64,
) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
    let unknown: Vec<String> = partitions
        .iter()
        .filter(|(topic, _)| cluster.partitions(topic).is_none())
        .map(|(topic, _)| topic.clone())
        .collect();
    if !unknown.is_empty() {
        cluster.refresh(&unknown)?;
    }
    retrying(cluster, |cluster| {
        list_offsets_once(cluster, partitions, timestamp)
    })
}

fn list_offsets_once(
    cluster: &mut Cluster,
    partitions: &[TopicPartition],
    timestamp: i64,
) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let exists = cluster
            .partitions(topic)
            .is_some_and(|known| known.contains_key(partition));
        if !exists {
            anyhow::bail!("partition {topic}-{partition} does not exist");
        }
        let leader = cluster
            .leader(topic, *partition)
            .ok_or_else(|| KafkaError {
                code: codes::LEADER_NOT_AVAILABLE,
                message: None,
                context: format!("{topic}-{partition} has no leader"),
            })?;
        by_leader
            .entry(leader)
            .or_default()
            .entry(topic.clone())
            .or_default()
            .push(*partition);
    }
    let mut offsets = BTreeMap::new();
    for (leader, topics) in by_leader {
        let connection = cluster.broker(leader)?;
        offsets.extend(list_offsets_at(connection, &topics, timestamp)?);
    }
    Ok(offsets)
}

fn list_offsets_at(
    connection: &mut Connection,
    topics: &BTreeMap<String, Vec<i32>>,
    timestamp: i64,
) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            topics
                .iter()
                .map(|(topic, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&partition| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(partition)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let response = connection.call(&request, 9)?;
    let mut offsets = BTreeMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            let name = topic.name.0.as_str();
            let index = partition.partition_index;
            KafkaError::check(
                partition.error_code,
                None,
                format!("listing offsets of {name}-{index}"),
            )?;
            let offset = (partition.offset >= 0).then_some(partition.offset);
            offsets.insert((name.to_string(), index), offset);
        }
    }
    Ok(offsets)
}

/// The committed offsets of `group` (at its coordinator): of every topic
/// when `topics` is `None`. Partitions without a committed offset are left
/// out.
pub fn committed(
    cluster: &mut Cluster,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    retrying(cluster, |cluster| {
        committed_once(cluster.coordinator(group)?, group, topics)
    })
}

fn committed_once(
    connection: &mut Connection,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let version = connection.version::<OffsetFetchRequest>(9)?;
    let context = format!("fetching the committed offsets of group '{group}'");
    let mut committed = BTreeMap::new();
    let mut keep = |topic: &str, partition: i32, offset: i64, error_code: i16| {
        KafkaError::check(error_code, None, format!("{context} ({topic}-{partition})"))?;
        if offset >= 0 {
            committed.insert((topic.to_string(), partition), offset);
        }
        anyhow::Ok(())
    };
    if version >= 8 {
        let topics = topics.map(|topics| {
            topics
                .iter()
                .map(|(topic, partitions)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
        let request =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_member_epoch(-1)
                .with_topics(topics)]);
        let response = connection.call_at(&request, version)?;
        for answer in &response.groups {
            KafkaError::check(answer.error_code, None, context.clone())?;
            for topic in &answer.topics {
                for partition in &topic.partitions {
                    keep(
                        topic.name.0.as_str(),
                        partition.partition_index,
                        partition.committed_offset,
                        partition.error_code,
                    )?;
                }
            }
        }
    } else {
        let topics = topics.map(|topics| {
            topics
                .iter()
                .map(|(topic, partitions)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(topics);
        let response = connection.call_at(&request, version)?;
        if version >= 2 {
            KafkaError::check(response.error_code, None, context.clone())?;
        }
        for topic in &response.topics {
            for partition in &topic.partitions {
                keep(
                    topic.name.0.as_str(),
                    partition.partition_index,
                    partition.committed_offset,
                    partition.error_code,
                )?;
            }
        }
    }
    Ok(committed)
}

/// Commits `offsets` for `group` as a client outside the group
/// (generation -1, no member id), which Kafka accepts only while the group
/// has no active members.
pub fn commit(
    cluster: &mut Cluster,
    group: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    commit_as(cluster, group, -1, "", offsets)
}

/// Commits `offsets` for `group` as member `member_id` of `generation`
/// (or, with -1 and "", as a client outside the group), at the group's
/// coordinator, finding it again if it moved.
pub fn commit_as(
    cluster: &mut Cluster,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    retrying(cluster, |cluster| {
        commit_once(
            cluster.coordinator(group)?,
            group,
            generation,
            member_id,
            offsets,
        )
    })
}

fn commit_once(
    connection: &mut Connection,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), offset) in offsets {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::from_static_str(""))),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = connection.call(&request, 9)?;
    for topic in &response.topics {
        for partition in &topic.partitions {
            KafkaError::check(
                partition.error_code,
                None,
                format!(
                    "committing offsets of group '{group}' for {}-{}",
                    topic.name.0.as_str(),
                    partition.partition_index
                ),
            )?;
        }
    }
    Ok(())
}

/// Groups `partitions` by topic, as requests want them.
pub fn by_topic(
    partitions: impl IntoIterator<Item = TopicPartition>,
) -> BTreeMap<String, Vec<i32>> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let list = topics.entry(topic).or_default();
        if !list.contains(&partition) {
            list.push(partition);
        }
    }
    topics
}
