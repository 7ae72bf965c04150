//! CreateTopics (key 19): validates on the accepting shard what needs no
//! state, then hands the topics to the controller shard, which checks names
//! against the image, persists, and has every shard open its partitions
//! before answering.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{NewTopic, TopicError};
use crate::protocol::error_codes;
use crate::shard::{self, CONTROLLER_SHARD};

pub const API: ApiSupport = super::api(ApiKey::CreateTopics, 2, 7);

pub async fn handle(
    context: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let config = context.shard.config.clone();
    let mut seen = BTreeMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.0.to_string()).or_insert(0) += 1;
    }
    let new_topics: Vec<NewTopic> = request
        .topics
        .iter()
        .map(|topic| NewTopic {
            name: topic.name.0.to_string(),
            partitions: match topic.num_partitions {
                -1 => config.num_partitions,
                count => count,
            },
            replication_factor: match topic.replication_factor {
                -1 => config.default_replication_factor,
                factor => factor,
            },
            configs: topic
                .configs
                .iter()
                .filter_map(|entry| {
                    let value = entry.value.as_ref()?;
                    Some((entry.name.to_string(), value.to_string()))
                })
                .collect(),
            assignments: (!topic.assignments.is_empty()).then(|| {
                let mut given: Vec<_> = topic.assignments.iter().collect();
                given.sort_by_key(|assignment| assignment.partition_index);
                given
                    .into_iter()
                    .map(|assignment| assignment.broker_ids.iter().map(|id| id.0).collect())
                    .collect()
            }),
        })
        .collect();
    let validate_only = request.validate_only;
    // A name given twice is refused whole, as Kafka does: neither is sent.
    let to_send: Vec<NewTopic> = new_topics
        .iter()
        .filter(|topic| seen[&topic.name] == 1 && context.may_create_topic(&topic.name))
        .cloned()
        .collect();
    let outcome = context
        .shard
        .mesh
        .submit_to(CONTROLLER_SHARD, move || async move {
            let shard = shard::current();
            let controller = shard.controller().expect("shard 0 runs the controller");
            controller.create_topics(to_send, validate_only).await
        })
        .await;
    let mut results = match outcome {
        Ok(results) => results,
        Err(error) => {
            let failure = TopicError::new(error_codes::UNKNOWN_SERVER_ERROR, error.to_string());
            vec![Err(failure); new_topics.len()]
        }
    }
    .into_iter();
    let topics = new_topics
        .into_iter()
        .map(|topic| {
            let result = if seen[&topic.name] > 1 {
                Err(TopicError::new(
                    error_codes::INVALID_REQUEST,
                    format!(
                        "Create topics request from client contains duplicate topic '{}'",
                        topic.name
                    ),
                ))
            } else if !context.may_create_topic(&topic.name) {
                Err(TopicError::new(
                    error_codes::TOPIC_AUTHORIZATION_FAILED,
                    "Authorization failed.",
                ))
            } else {
                results.next().unwrap_or_else(|| {
                    Err(TopicError::new(
                        error_codes::UNKNOWN_SERVER_ERROR,
                        "no answer",
                    ))
                })
            };
            topic_result(context, topic, result)
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn topic_result(
    context: &RequestContext,
    topic: NewTopic,
    result: Result<crate::cluster::metadata::TopicMetadata, TopicError>,
) -> CreatableTopicResult {
    let name = TopicName(str_bytes(topic.name.clone()));
    match result {
        Ok(created) => {
            let configs =
                crate::config::describe_topic(&context.shard.effective_config(), &created.configs)
                    .into_iter()
                    .map(|entry| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(entry.name))
                            .with_value(entry.value.map(str_bytes))
                            .with_read_only(entry.read_only)
                            .with_config_source(entry.source as i8)
                            .with_is_sensitive(entry.sensitive)
                    })
                    .collect();
            CreatableTopicResult::default()
                .with_name(name)
                .with_topic_id(created.topic_id)
                .with_num_partitions(created.partitions)
                .with_replication_factor(created.replication_factor)
                .with_configs(Some(configs))
        }
        Err(error) => CreatableTopicResult::default()
            .with_name(name)
            .with_error_code(error.code)
            .with_error_message(Some(str_bytes(error.message)))
            .with_num_partitions(-1)
            .with_replication_factor(-1),
    }
}
