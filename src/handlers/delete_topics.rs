//! DeleteTopics (key 20): by name, or by topic ID from v6. The controller
//! shard removes the topics from the image; each owning shard then closes
//! the partitions and removes their directories before the answer.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{TopicError, TopicRef};
use crate::protocol::error_codes;
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
    let to_send = refs.clone();
    let outcome = context
        .shard
        .mesh
        .submit_to(CONTROLLER_SHARD, move || async move {
            let shard = shard::current();
            let controller = shard.controller().expect("shard 0 runs the controller");
            controller.delete_topics(to_send).await
        })
        .await;
    let results = outcome.unwrap_or_else(|error| {
        let failure = TopicError::new(error_codes::UNKNOWN_SERVER_ERROR, error.to_string());
        vec![Err(failure); refs.len()]
    });
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
