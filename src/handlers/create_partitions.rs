//! CreatePartitions (key 37): raises a topic's partition count. The
//! controller shard changes the image; the shards that own the new
//! partitions create them before the answer.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};

use super::{no_answer, str_bytes, topic_refused, ApiSupport, RequestContext};
use crate::cluster::controller::TopicError;
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;
use crate::shard::{self, CONTROLLER_SHARD};

pub const API: ApiSupport = super::api(ApiKey::CreatePartitions, 0, 3);

pub async fn handle(
    context: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let changes: Vec<(String, i32)> = request
        .topics
        .iter()
        .map(|topic| (topic.name.0.to_string(), topic.count))
        .collect();
    // ALTER on each topic (Kafka's rule).
    let allowed: Vec<bool> = changes
        .iter()
        .map(|(name, _)| context.authorized(Operation::Alter, Resource::topic(name)))
        .collect();
    let to_send: Vec<(String, i32)> = changes
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .map(|(change, _)| change.clone())
        .collect();
    let sent = to_send.len();
    let validate_only = request.validate_only;
    let outcome = context
        .shard
        .mesh
        .submit_to(CONTROLLER_SHARD, move || async move {
            let shard = shard::current();
            let controller = shard.controller().expect("shard 0 runs the controller");
            controller.create_partitions(to_send, validate_only).await
        })
        .await;
    let results = outcome.unwrap_or_else(|error| {
        let failure = TopicError::new(error_codes::UNKNOWN_SERVER_ERROR, error.to_string());
        vec![Err(failure); sent]
    });
    let results = super::with_refused(&allowed, results, topic_refused, no_answer);
    let results = request
        .topics
        .into_iter()
        .zip(results)
        .map(|(topic, result)| {
            let explicit = topic.assignments.as_ref().is_some_and(|a| !a.is_empty());
            let response = CreatePartitionsTopicResult::default().with_name(topic.name);
            match result {
                Ok(()) if !explicit => response,
                Ok(()) => response
                    .with_error_code(error_codes::INVALID_REPLICA_ASSIGNMENT)
                    .with_error_message(Some(str_bytes(
                        "Manual replica assignment is not supported by Sluice yet",
                    ))),
                Err(error) => response
                    .with_error_code(error.code)
                    .with_error_message(Some(str_bytes(error.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
