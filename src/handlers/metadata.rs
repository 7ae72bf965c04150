//! Metadata (key 3): the live brokers, cluster id, active controller, and
//! topics with their IDs and partitions (leader, leader epoch, replicas,
//! ISR, offline replicas). Unknown topics are created here when
//! `auto.create.topics.enable` and the request allow it.
//!
//! Runs on the accepting shard from its read-only image; auto-creation hops
//! to the controller shard. Partitions that failed to open (see
//! `partition::PartitionTable::offline`) are asked of every shard and shown
//! with KAFKA_STORAGE_ERROR, no leader and this node as an offline replica.
//!
//! Authorization (Kafka's): a request for every topic lists only those the
//! principal may DESCRIBE; a named one it may not is TOPIC_AUTHORIZATION_FAILED;
//! auto-creation also needs CREATE (on the cluster or the topic).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{str_bytes, ApiSupport, RequestContext};
use crate::cluster::metadata::{MetadataImage, TopicMetadata};
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;

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
    let describable = |name: &str| context.authorized(Operation::Describe, Resource::topic(name));
    let allow_auto_create = config.auto_create_topics_enable
        && (context.api_version < 4 || request.allow_auto_topic_creation);
    let mut creation_errors = BTreeMap::new();
    if let (Wanted::Some(topics), true) = (&wanted, allow_auto_create) {
        let image = context.shard.image();
        let (names, refused): (Vec<String>, Vec<String>) = topics
            .iter()
            .filter_map(|(name, _)| name.clone())
            .filter(|name| describable(name) && image.topic(name).is_none())
            .partition(|name| context.may_create_topic(name));
        creation_errors = super::auto_create_topics(context, names.into_iter()).await;
        // Kafka: a topic to auto-create without CREATE is refused so.
        for name in refused {
            creation_errors.insert(name, error_codes::TOPIC_AUTHORIZATION_FAILED);
        }
    }
    let image = context.shard.image();
    let listener = context.session.listener();
    let offline = offline_partitions(context).await;
    let topics = match wanted {
        Wanted::All => image
            .topics
            .values()
            .filter(|topic| describable(&topic.name))
            .map(|topic| topic_metadata(&image, topic, &offline, context.shard.config.node_id))
            .collect(),
        Wanted::Some(topics) => topics
            .into_iter()
            .map(|(name, topic_id)| {
                let named = name
                    .as_deref()
                    .or_else(|| image.topic_by_id(topic_id).map(|topic| topic.name.as_str()));
                if !named.is_some_and(describable) && (name.is_some() || named.is_some()) {
                    return MetadataResponseTopic::default()
                        .with_error_code(error_codes::TOPIC_AUTHORIZATION_FAILED)
                        .with_name(name.map(|name| TopicName(str_bytes(name))))
                        .with_topic_id(Uuid::nil());
                }
                describe_one(
                    &image,
                    name,
                    topic_id,
                    &creation_errors,
                    &offline,
                    context.shard.config.node_id,
                )
            })
            .collect(),
    };
    let brokers = image
        .live_brokers()
        .map(|broker| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.node_id))
                .with_host(str_bytes(broker.endpoint(&listener).0.to_string()))
                .with_port(i32::from(broker.endpoint(&listener).1))
                .with_rack(broker.rack.clone().map(str_bytes))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(image.cluster_id.clone())))
        .with_controller_id(BrokerId(image.controller_id.unwrap_or(-1)))
        .with_topics(topics)
}

fn describe_one(
    image: &MetadataImage,
    name: Option<String>,
    topic_id: Uuid,
    creation_errors: &BTreeMap<String, i16>,
    offline: &Offline,
    node_id: i32,
) -> MetadataResponseTopic {
    let found = match &name {
        Some(name) => image.topic(name),
        None => image.topic_by_id(topic_id),
    };
    if let Some(topic) = found {
        return topic_metadata(image, topic, offline, node_id);
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
    node_id: i32,
) -> MetadataResponseTopic {
    let ids = |ids: &[i32]| ids.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let partitions = topic
        .states
        .iter()
        .enumerate()
        .map(|(index, state)| {
            let here_offline = offline.contains(&(topic.name.clone(), index as i32));
            let offline_replicas: Vec<i32> = state
                .replicas
                .iter()
                .copied()
                .filter(|id| !image.is_live(*id) || (here_offline && *id == node_id))
                .collect();
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(ids(&state.replicas))
                .with_offline_replicas(ids(&offline_replicas));
            if here_offline && state.leader == node_id {
                // This broker leads it but could not open it.
                partition
                    .with_error_code(error_codes::KAFKA_STORAGE_ERROR)
                    .with_leader_id(BrokerId(-1))
                    .with_isr_nodes(ids(&state.isr))
            } else if !state.has_leader() {
                partition
                    .with_error_code(error_codes::LEADER_NOT_AVAILABLE)
                    .with_leader_id(BrokerId(-1))
                    .with_isr_nodes(ids(&state.isr))
            } else {
                partition
                    .with_leader_id(BrokerId(state.leader))
                    .with_isr_nodes(ids(&state.isr))
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
}
