//! DeleteTopics (key 20): by name, or by topic ID from v6. The controller
//! shard removes the topics from the image; each owning shard then closes
//! the partitions and removes their directories before the answer.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{no_answer, str_bytes, topic_refused, ApiSupport, RequestContext};
use crate::cluster::controller::{TopicError, TopicRef};
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;
use crate::shard::{self, CONTROLLER_SHARD};

pub const API: ApiSupport = super::api(ApiKey::DeleteTopics, 1, 6);

pub async fn handle(
    context: &RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let refs: Vec<TopicRef> = if context.api_version >= 6 {
        request
            .topics
            .iter()
            .map(|topic| match &topic.name {
                Some(name) => TopicRef::Name(name.0.to_string()),
                None => TopicRef::Id(topic.topic_id),
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| TopicRef::Name(name.0.to_string()))
            .collect()
    };
    // DELETE on each topic (Kafka's rule); an id names the topic it has.
    let image = context.shard.image();
    let allowed: Vec<bool> = refs
        .iter()
        .map(|topic_ref| {
            let name = match topic_ref {
                TopicRef::Name(name) => Some(name.as_str()),
                TopicRef::Id(id) => image.topic_by_id(*id).map(|topic| topic.name.as_str()),
            };
            name.is_none_or(|name| context.authorized(Operation::Delete, Resource::topic(name)))
        })
        .collect();
    let to_send: Vec<TopicRef> = refs
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .map(|(topic_ref, _)| topic_ref.clone())
        .collect();
    let sent = to_send.len();
    let outcome = context
        .shard
        .mesh
        .submit_to(CONTROLLER_SHARD, move || async move {
            let shard = shard::current();
            let controller = shard.controller().expect("shard 0 runs the controller");
            controller.delete_topics(to_send).await
        })
        .await;
    let sent_results = outcome.unwrap_or_else(|error| {
        let failure = TopicError::new(error_codes::UNKNOWN_SERVER_ERROR, error.to_string());
        vec![Err(failure); sent]
    });
    let results = super::with_refused(&allowed, sent_results, topic_refused, no_answer);
    let responses = refs
        .into_iter()
        .zip(results)
        .map(|(topic_ref, result)| {
            let (name, topic_id) = match (&result, topic_ref) {
                (Ok(deleted), _) => (Some(deleted.name.clone()), deleted.topic_id),
                (Err(_), TopicRef::Name(name)) => (Some(name), Uuid::nil()),
                (Err(_), TopicRef::Id(id)) => (None, id),
            };
            let response = DeletableTopicResult::default()
                .with_name(name.map(|name| TopicName(str_bytes(name))))
                .with_topic_id(topic_id);
            match result {
                Ok(_) => response,
                Err(error) => response
                    .with_error_code(error.code)
                    .with_error_message(Some(str_bytes(error.message))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
