//! Topic setup and lookups over a [`Connection`]: Metadata (leaders and
//! broker addresses), CreateTopics, DeleteTopics and ListOffsets.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, ListOffsetsRequest, MetadataRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::wire::Connection;

const TOPIC_ALREADY_EXISTS: i16 = 36;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;

/// Where a topic's partitions live.
#[derive(Debug, Clone)]
pub struct TopicLayout {
    pub topic: String,
    /// Leader broker id per partition, indexed by partition.
    pub leaders: Vec<i32>,
    /// Broker id to `host:port`.
    pub brokers: BTreeMap<i32, String>,
}

impl TopicLayout {
    pub fn partitions(&self) -> usize {
        self.leaders.len()
    }

    pub fn address(&self, broker: i32) -> Result<&str> {
        self.brokers
            .get(&broker)
            .map(String::as_str)
            .with_context(|| format!("broker {broker} leads a partition but is not in Metadata"))
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Metadata for one topic; `Ok(None)` if the broker does not know it.
pub fn describe_topic(connection: &mut Connection, topic: &str) -> Result<Option<TopicLayout>> {
    let version = connection.versions.pick::<MetadataRequest>(12)?;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let response = connection.call(&request, version)?;
    let brokers = response
        .brokers
        .iter()
        .map(|broker| {
            (
                broker.node_id.0,
                format!("{}:{}", broker.host.as_str(), broker.port),
            )
        })
        .collect();
    let Some(found) = response.topics.first() else {
        return Ok(None);
    };
    match found.error_code {
        0 => {}
        UNKNOWN_TOPIC_OR_PARTITION => return Ok(None),
        LEADER_NOT_AVAILABLE => return Ok(None),
        code => bail!("Metadata for topic {topic} failed with error code {code}"),
    }
    let mut leaders = vec![-1; found.partitions.len()];
    for partition in &found.partitions {
        let index = partition.partition_index as usize;
        if index >= leaders.len() {
            bail!("Metadata lists partition {index} of {}", leaders.len());
        }
        leaders[index] = if partition.error_code == 0 {
            partition.leader_id.0
        } else {
            -1
        };
    }
    Ok(Some(TopicLayout {
        topic: topic.to_string(),
        leaders,
        brokers,
    }))
}

/// Waits until every partition has a leader the Metadata names.
pub fn wait_for_leaders(
    connection: &mut Connection,
    topic: &str,
    timeout: Duration,
) -> Result<TopicLayout> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(layout) = describe_topic(connection, topic)? {
            let ready = !layout.leaders.is_empty()
                && layout
                    .leaders
                    .iter()
                    .all(|leader| *leader >= 0 && layout.brokers.contains_key(leader));
            if ready {
                return Ok(layout);
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no leader for every partition after {timeout:?}");
        }
        sleep(Duration::from_millis(100));
    }
}

pub fn create_topic(
    connection: &mut Connection,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> Result<bool> {
    let version = connection.versions.pick::<CreateTopicsRequest>(7)?;
    let configs = configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_value(Some(StrBytes::from_string(value.clone())))
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(configs)])
        .with_timeout_ms(30_000);
    let response = connection.call(&request, version)?;
    let result = response
        .topics
        .first()
        .context("CreateTopics answered no topic")?;
    match result.error_code {
        0 => Ok(true),
        TOPIC_ALREADY_EXISTS => Ok(false),
        code => bail!(
            "creating topic {topic} failed with error code {code}: {}",
            result.error_message.as_ref().map_or("", |m| m.as_str())
        ),
    }
}

pub fn delete_topic(connection: &mut Connection, topic: &str) -> Result<()> {
    let version = connection.versions.pick::<DeleteTopicsRequest>(5)?;
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name(topic)])
        .with_timeout_ms(30_000);
    let response = connection.call(&request, version)?;
    for result in &response.responses {
        if result.error_code != 0 && result.error_code != UNKNOWN_TOPIC_OR_PARTITION {
            bail!(
                "deleting topic {topic} failed with error code {}",
                result.error_code
            );
        }
    }
    Ok(())
}

/// Kafka's special ListOffsets timestamps.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// Offsets of `partitions` at `timestamp` (`LATEST` or `EARLIEST`), asked of
/// the connection given (which must lead them).
pub fn list_offsets(
    connection: &mut Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>> {
    let version = connection.versions.pick::<ListOffsetsRequest>(8)?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
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
            )]);
    let response = connection.call(&request, version)?;
    let mut offsets = BTreeMap::new();
    for topic_response in &response.topics {
        for partition in &topic_response.partitions {
            if partition.error_code != 0 {
                bail!(
                    "ListOffsets for {topic}-{} failed with error code {}",
                    partition.partition_index,
                    partition.error_code
                );
            }
            offsets.insert(partition.partition_index, partition.offset);
        }
    }
    for partition in partitions {
        if !offsets.contains_key(partition) {
            bail!("ListOffsets did not answer for {topic}-{partition}");
        }
    }
    Ok(offsets)
}

/// Offsets of every partition, asking each partition's leader.
pub fn list_all_offsets(
    layout: &TopicLayout,
    client_id: &str,
    timestamp: i64,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (partition, leader) in layout.leaders.iter().enumerate() {
        by_leader.entry(*leader).or_default().push(partition as i32);
    }
    let mut offsets = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let mut connection = Connection::connect(layout.address(leader)?, client_id, timeout)?;
        offsets.extend(list_offsets(
            &mut connection,
            &layout.topic,
            &partitions,
            timestamp,
        )?);
    }
    Ok(offsets)
}

/// Asks the leader of `partition` to delete its records below `offset`
/// (DeleteRecords); returns the new log start offset.
pub fn delete_records(
    layout: &TopicLayout,
    client_id: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<i64> {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::DeleteRecordsRequest;
    let leader = *layout
        .leaders
        .get(partition as usize)
        .with_context(|| format!("no partition {partition}"))?;
    let mut connection = Connection::connect(layout.address(leader)?, client_id, timeout)?;
    let version = connection.versions.pick::<DeleteRecordsRequest>(2)?;
    let request = DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(&layout.topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])])
        .with_timeout_ms(timeout.as_millis() as i32);
    let response = connection.call(&request, version)?;
    for topic in &response.topics {
        for result in &topic.partitions {
            if result.partition_index == partition {
                if result.error_code != 0 {
                    bail!(
                        "DeleteRecords on {}-{partition} failed with error code {}",
                        layout.topic,
                        result.error_code
                    );
                }
                return Ok(result.low_watermark);
            }
        }
    }
    bail!(
        "DeleteRecords did not answer for {}-{partition}",
        layout.topic
    )
}
