//! AddPartitionsToTxn (key 24): adds partitions to a producer's open
//! transaction on its transaction coordinator. v0 to v3 (the client's
//! request); v4+ (batches from brokers, KIP-890 verification) is not served.
//! Unknown partitions fail the request: they answer
//! UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as
//! Kafka does.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey};

use super::{ApiSupport, RequestContext};
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;
use crate::txn::{errors, submit_to_txn_coordinator};

pub const API: ApiSupport = super::api(ApiKey::AddPartitionsToTxn, 0, 3);

pub async fn handle(
    context: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let image = context.shard.image();
    let id = request.v3_and_below_transactional_id.to_string();
    let producer_id = request.v3_and_below_producer_id.0;
    let epoch = request.v3_and_below_producer_epoch;
    let mut partitions = Vec::new();
    let mut unknown = Vec::new();
    // Kafka: WRITE on the transactional id (all partitions refused), then
    // WRITE on each topic (TOPIC_AUTHORIZATION_FAILED, the rest
    // OPERATION_NOT_ATTEMPTED).
    let id_refused = context.transactional_id_refusal(Operation::Write, &id);
    let mut denied = Vec::new();
    for topic in &request.v3_and_below_topics {
        for &index in &topic.partitions {
            let pair = (topic.name.to_string(), index);
            if !context.authorized(Operation::Write, Resource::topic(&topic.name)) {
                denied.push(pair);
                continue;
            }
            let known = image
                .topic(&topic.name)
                .is_some_and(|t| (0..t.partitions).contains(&index));
            if known {
                partitions.push(pair);
            } else {
                unknown.push(pair);
            }
        }
    }
    let outcome = if let Some(code) = id_refused {
        Err(code)
    } else if !denied.is_empty() || !unknown.is_empty() {
        Err(errors::OPERATION_NOT_ATTEMPTED)
    } else {
        let asked = partitions.clone();
        submit_to_txn_coordinator(&context.shard, &id.clone(), move |txn| async move {
            txn.add_partitions(&id, producer_id, epoch, &asked).await
        })
        .await
        .and_then(|answer| answer)
        .map_err(|code| crate::txn::fenced_for_version(code, context.api_version, 2))
    };
    let code_of = |pair: &(String, i32)| match &outcome {
        Err(code) if id_refused.is_some() => *code,
        _ if denied.contains(pair) => crate::protocol::error_codes::TOPIC_AUTHORIZATION_FAILED,
        _ if unknown.contains(pair) => errors::UNKNOWN_TOPIC_OR_PARTITION,
        Ok(()) => errors::NONE,
        Err(code) => *code,
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|&index| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(index)
                        .with_partition_error_code(code_of(&(topic.name.to_string(), index)))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
