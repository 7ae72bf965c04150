//! Metadata (key 3): brokers, cluster id, controller, and topics with their
//! IDs and partitions. Unknown topics are created here when
//! `auto.create.topics.enable` and the request allow it.
//!
//! Runs on the accepting shard from its read-only image; auto-creation hops
//! to the controller shard. Partitions that failed to open (see
//! `partition::PartitionTable::offline`) are asked of every shard and shown
//! with KAFKA_STORAGE_ERROR, no leader and this node as an offline replica.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{str_bytes, ApiSupport, RequestContext};
use crate::cluster::metadata::{MetadataImage, TopicMetadata};
use crate::protocol::error_codes;

pub const API: ApiSupport = super::api(ApiKey::Metadata, 0, 12);

/// Which topics the request names.
enum Wanted {
    All,
    Some(Vec<(Option<String>, Uuid)>),
}

pub async fn handle(context: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let config = &context.shard.config;
    let wanted = match request.topics {
        None => Wanted::All,
        // Before v1 an empty list meant every topic.
        Some(topics) if topics.is_empty() && context.api_version == 0 => Wanted::All,
        Some(topics) => Wanted::Some(
            topics
                .into_iter()
                .map(|topic| (topic.name.map(|name| name.0.to_string()), topic.topic_id))
                .collect(),
        ),
    };
    let allow_auto_create = config.auto_create_topics_enable
        && (context.api_version < 4 || request.allow_auto_topic_creation);
    let mut creation_errors = BTreeMap::new();
    if let (Wanted::Some(topics), true) = (&wanted, allow_auto_create) {
        let names = topics.iter().filter_map(|(name, _)| name.clone());
        creation_errors = super::auto_create_topics(context, names).await;
    }
    let image = context.shard.image();
    let offline = offline_partitions(context).await;
    let topics = match wanted {
        Wanted::All => image
            .topics
            .values()
            .map(|topic| topic_metadata(&image, topic, &offline))
            .collect(),
        Wanted::Some(topics) => topics
            .into_iter()
            .map(|(name, topic_id)| {
                describe_one(&image, name, topic_id, &creation_errors, &offline)
            })
            .collect(),
    };
    let node_id = config.node_id;
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node_id))
            .with_host(str_bytes(config.advertise_host.clone()))
            .with_port(i32::from(config.advertise_port))])
        .with_cluster_id(Some(str_bytes(image.cluster_id.clone())))
        .with_controller_id(BrokerId(node_id))
        .with_topics(topics)
}

fn describe_one(
    image: &MetadataImage,
    name: Option<String>,
    topic_id: Uuid,
    creation_errors: &BTreeMap<String, i16>,
    offline: &Offline,
) -> MetadataResponseTopic {
    let found = match &name {
        Some(name) => image.topic(name),
        None => image.topic_by_id(topic_id),
    };
    if let Some(topic) = found {
        return topic_metadata(image, topic, offline);
    }
    let error_code = match &name {
        Some(name) => creation_errors
            .get(name)
            .copied()
            .unwrap_or(error_codes::UNKNOWN_TOPIC_OR_PARTITION),
        None => error_codes::UNKNOWN_TOPIC_ID,
    };
    MetadataResponseTopic::default()
        .with_error_code(error_code)
        .with_name(name.map(|name| TopicName(str_bytes(name))))
        .with_topic_id(topic_id)
}

/// Offline partitions of every shard, by topic and partition.
type Offline = BTreeSet<(String, i32)>;

async fn offline_partitions(context: &RequestContext) -> Offline {
    let per_shard = context
        .shard
        .mesh
        .submit_to_all(|| async { crate::shard::current().partitions.offline() })
        .await
        .unwrap_or_default();
    per_shard
        .into_iter()
        .flatten()
        .map(|key| (key.topic, key.partition))
        .collect()
}

fn topic_metadata(
    image: &MetadataImage,
    topic: &TopicMetadata,
    offline: &Offline,
) -> MetadataResponseTopic {
    let node = BrokerId(image.node_id);
    let partitions = (0..topic.partitions)
        .map(|index| {
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node]);
            if offline.contains(&(topic.name.clone(), index)) {
                partition
                    .with_error_code(error_codes::KAFKA_STORAGE_ERROR)
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(vec![node])
            } else {
                partition.with_leader_id(node).with_isr_nodes(vec![node])
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
}
