//! Admin helpers over a [`Cluster`]: where a topic's partitions live
//! ([`TopicLayout`], waiting for leaders), CreateTopics, DeleteTopics,
//! CreatePartitions, DescribeConfigs, IncrementalAlterConfigs (or
//! AlterConfigs on brokers without it), DeleteRecords and DescribeLogDirs
//! (replica sizes). Log offsets are in [`crate::offsets`].
//!
//! Requests any broker answers go to [`Cluster::any`] (the controller
//! forwards them); DeleteRecords goes to the partition's leader.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{retrying, Cluster};
use crate::errors::{codes, KafkaError};
use crate::topic_name;

/// DescribeConfigs and the AlterConfigs APIs name a topic with this type.
pub const RESOURCE_TYPE_TOPIC: i8 = 2;
/// DescribeConfigs' source of a topic's own override.
pub const CONFIG_SOURCE_TOPIC: i8 = 1;
/// IncrementalAlterConfigs operations.
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;
/// How long the broker may take over a topic change.
pub const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// Where a topic's partitions live.
#[derive(Debug, Clone)]
pub struct TopicLayout {
    pub topic: String,
    /// Leader broker id per partition, indexed by partition (-1: none).
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

    /// Every partition has a leader Metadata names.
    pub fn is_ready(&self) -> bool {
        !self.leaders.is_empty()
            && self
                .leaders
                .iter()
                .all(|leader| *leader >= 0 && self.brokers.contains_key(leader))
    }
}

/// The layout of `topic` after a fresh Metadata; `Ok(None)` if the broker
/// does not know it (or it has no leader at all yet).
pub fn describe_topic(cluster: &mut Cluster, topic: &str) -> Result<Option<TopicLayout>> {
    cluster.metadata(Some(&[topic.to_string()]))?;
    Ok(layout(cluster, topic))
}

/// The layout of `topic` as the cluster last saw it.
pub fn layout(cluster: &Cluster, topic: &str) -> Option<TopicLayout> {
    let partitions = cluster.partitions(topic)?;
    let mut leaders = vec![-1; partitions.len()];
    for (index, view) in partitions {
        let slot = leaders.get_mut(*index as usize)?; // partitions are 0..n
        *slot = view.leader;
    }
    Some(TopicLayout {
        topic: topic.to_string(),
        leaders,
        brokers: cluster.brokers().clone(),
    })
}

/// Waits until every partition has a leader the Metadata names.
pub fn wait_for_leaders(
    cluster: &mut Cluster,
    topic: &str,
    timeout: Duration,
) -> Result<TopicLayout> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(layout) = describe_topic(cluster, topic)? {
            if layout.is_ready() {
                return Ok(layout);
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no leader for every partition after {timeout:?}");
        }
        sleep(Duration::from_millis(100));
    }
}

/// A topic to create; `None` takes the broker's default.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub configs: Vec<(String, String)>,
    pub validate_only: bool,
}

/// CreateTopics for one topic; the broker's answer, errors included.
pub fn create_topic(cluster: &mut Cluster, topic: &NewTopic) -> Result<CreatableTopicResult> {
    let configs = topic
        .configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_value(Some(StrBytes::from_string(value.clone())))
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(&topic.name))
            .with_num_partitions(topic.partitions.unwrap_or(-1))
            .with_replication_factor(topic.replication_factor.unwrap_or(-1))
            .with_configs(configs)])
        .with_timeout_ms(ADMIN_TIMEOUT_MS)
        .with_validate_only(topic.validate_only);
    let response = retrying(cluster, |cluster| cluster.any()?.call(&request, 7))?;
    response
        .topics
        .into_iter()
        .next()
        .context("the broker answered CreateTopics with no topic")
}

/// Creates `topic` unless it exists: `true` when created.
pub fn ensure_topic(cluster: &mut Cluster, topic: &NewTopic) -> Result<bool> {
    let result = create_topic(cluster, topic)?;
    if result.error_code == codes::TOPIC_ALREADY_EXISTS {
        return Ok(false);
    }
    KafkaError::check(
        result.error_code,
        result.error_message.as_ref(),
        format!("creating topic {}", topic.name),
    )?;
    Ok(true)
}

/// DeleteTopics; the broker's answer per topic, errors included.
pub fn delete_topics(
    cluster: &mut Cluster,
    topics: &[String],
) -> Result<Vec<DeletableTopicResult>> {
    let response = retrying(cluster, |cluster| {
        let connection = cluster.any()?;
        let version = connection.version::<DeleteTopicsRequest>(6)?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
        request = if version >= 6 {
            request.with_topics(
                topics
                    .iter()
                    .map(|topic| DeleteTopicState::default().with_name(Some(topic_name(topic))))
                    .collect(),
            )
        } else {
            request.with_topic_names(topics.iter().map(|topic| topic_name(topic)).collect())
        };
        connection.call_at(&request, version)
    })?;
    Ok(response.responses)
}

/// Deletes `topic`; a topic that does not exist is not an error.
pub fn delete_topic(cluster: &mut Cluster, topic: &str) -> Result<()> {
    for result in delete_topics(cluster, &[topic.to_string()])? {
        if result.error_code != codes::UNKNOWN_TOPIC_OR_PARTITION {
            KafkaError::check(
                result.error_code,
                result.error_message.as_ref(),
                format!("deleting topic {topic}"),
            )?;
        }
    }
    Ok(())
}

/// A topic's configs from DescribeConfigs: name -> (value, source).
pub type TopicConfigs = BTreeMap<String, (Option<String>, i8)>;

pub fn describe_configs(
    cluster: &mut Cluster,
    topics: &[String],
) -> Result<BTreeMap<String, TopicConfigs>> {
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    let request = DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|topic| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TYPE_TOPIC)
                    .with_resource_name(StrBytes::from_string(topic.clone()))
                    .with_configuration_keys(None)
            })
            .collect(),
    );
    let response = retrying(cluster, |cluster| cluster.any()?.call(&request, 4))?;
    let mut configs = BTreeMap::new();
    for result in &response.results {
        let topic = result.resource_name.to_string();
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref(),
            format!("describing the configs of topic '{topic}'"),
        )?;
        let entries = result
            .configs
            .iter()
            .map(|entry| {
                (
                    entry.name.to_string(),
                    (
                        entry.value.as_ref().map(|v| v.to_string()),
                        entry.config_source,
                    ),
                )
            })
            .collect();
        configs.insert(topic, entries);
    }
    Ok(configs)
}

/// CreatePartitions: raises `topic`'s partition count to `count`.
pub fn add_partitions(cluster: &mut Cluster, topic: &str, count: i32) -> Result<()> {
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(count)
            .with_assignments(None)])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let response = retrying(cluster, |cluster| cluster.any()?.call(&request, 3))?;
    for result in &response.results {
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref(),
            format!("raising the partition count of topic '{topic}' to {count}"),
        )?;
    }
    Ok(())
}

/// Sets and removes topic config overrides: IncrementalAlterConfigs when
/// the broker serves it; otherwise AlterConfigs with the topic's current
/// overrides merged in (AlterConfigs replaces the whole set).
pub fn alter_configs(
    cluster: &mut Cluster,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    let context = format!("altering the configs of topic '{topic}'");
    let connection = cluster.any()?;
    if connection.supports::<IncrementalAlterConfigsRequest>() {
        use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let set = set.iter().map(|(name, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_config_operation(OPERATION_SET)
                .with_value(Some(StrBytes::from_string(value.clone())))
        });
        let delete = delete.iter().map(|name| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_config_operation(OPERATION_DELETE)
                .with_value(None)
        });
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(set.chain(delete).collect()),
        ]);
        let response = connection.call(&request, 1)?;
        for result in &response.responses {
            KafkaError::check(
                result.error_code,
                result.error_message.as_ref(),
                context.clone(),
            )?;
        }
        return Ok(());
    }
    if !connection.supports::<AlterConfigsRequest>() {
        bail!(KafkaError {
            code: codes::UNSUPPORTED_VERSION,
            message: None,
            context: format!(
                "the broker at {} supports neither IncrementalAlterConfigs nor AlterConfigs, \
                 so topic configs cannot be changed",
                connection.address
            ),
        });
    }
    let current = describe_configs(cluster, &[topic.to_string()])?;
    let mut overrides: BTreeMap<String, Option<String>> = current
        .get(topic)
        .into_iter()
        .flatten()
        .filter(|(_, (_, source))| *source == CONFIG_SOURCE_TOPIC)
        .map(|(name, (value, _))| (name.clone(), value.clone()))
        .collect();
    for (name, value) in set {
        overrides.insert(name.clone(), Some(value.clone()));
    }
    for name in delete {
        overrides.remove(name);
    }
    use alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let request =
        AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TYPE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                overrides
                    .into_iter()
                    .map(|(name, value)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(name))
                            .with_value(value.map(StrBytes::from_string))
                    })
                    .collect(),
            )]);
    let response = cluster.any()?.call(&request, 2)?;
    for result in &response.responses {
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref(),
            context.clone(),
        )?;
    }
    Ok(())
}

/// Asks the leader of `topic`-`partition` to delete its records below
/// `offset` (DeleteRecords); returns the new log start offset.
pub fn delete_records(
    cluster: &mut Cluster,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64> {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::DeleteRecordsRequest;
    if cluster.partitions(topic).is_none() {
        cluster.refresh(&[topic.to_string()])?;
    }
    let timeout_ms = cluster.timeout().as_millis().min(i32::MAX as u128) as i32;
    retrying(cluster, |cluster| {
        let connection = cluster.leader_connection(topic, partition)?;
        let request = DeleteRecordsRequest::default()
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset)])])
            .with_timeout_ms(timeout_ms);
        let response = connection.call(&request, 2)?;
        for answer in &response.topics {
            for result in &answer.partitions {
                if result.partition_index == partition {
                    KafkaError::check(
                        result.error_code,
                        None,
                        format!("DeleteRecords on {topic}-{partition}"),
                    )?;
                    return Ok(result.low_watermark);
                }
            }
        }
        bail!("DeleteRecords did not answer for {topic}-{partition}")
    })
}

/// The size in bytes of each partition replica, per broker, from
/// DescribeLogDirs asked of every broker (all topics). A broker that does
/// not answer DescribeLogDirs fails the call; one log dir in error is
/// skipped (its partitions are then missing from the map).
pub fn replica_sizes(cluster: &mut Cluster) -> Result<BTreeMap<(String, i32), BTreeMap<i32, i64>>> {
    use kafka_protocol::messages::DescribeLogDirsRequest;
    let request = DescribeLogDirsRequest::default().with_topics(None);
    let mut sizes: BTreeMap<(String, i32), BTreeMap<i32, i64>> = BTreeMap::new();
    for broker in cluster.broker_ids() {
        let response = cluster.broker(broker)?.call(&request, 4)?;
        KafkaError::check(response.error_code, None, "describing log dirs")?;
        for dir in response.results.iter().filter(|dir| dir.error_code == 0) {
            for topic in &dir.topics {
                for partition in &topic.partitions {
                    let key = (topic.name.0.to_string(), partition.partition_index);
                    *sizes.entry(key).or_default().entry(broker).or_default() +=
                        partition.partition_size;
                }
            }
        }
    }
    Ok(sizes)
}
