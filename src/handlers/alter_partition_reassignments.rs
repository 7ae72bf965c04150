//! AlterPartitionReassignments (key 45, KIP-455): starts, changes or (with
//! null replicas) cancels partition reassignments through the active
//! controller (`cluster/reassign.rs`). v1 (KIP-860) may forbid changing a
//! partition's replication factor.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey,
};

use super::{call_controller, str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{ControllerRequest, ControllerResponse, TopicError};
use crate::cluster::reassign::Reassignment;
use crate::protocol::error_codes;

pub const API: ApiSupport = super::api(ApiKey::AlterPartitionReassignments, 0, 1);

pub async fn handle(
    context: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if let Some(code) = context.cluster_refusal(crate::security::acl::Operation::Alter) {
        return AlterPartitionReassignmentsResponse::default().with_error_code(code);
    }
    let allow_replication_factor_change =
        context.api_version < 1 || request.allow_replication_factor_change;
    let reassignments: Vec<Reassignment> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| Reassignment {
                topic: topic.name.0.to_string(),
                partition: partition.partition_index,
                target: partition
                    .replicas
                    .as_ref()
                    .map(|ids| ids.iter().map(|id| id.0).collect()),
            })
        })
        .collect();
    let count = reassignments.len();
    let call = ControllerRequest::AlterReassignments {
        reassignments,
        allow_replication_factor_change,
    };
    let (results, top) = match call_controller(context, call).await {
        Ok(ControllerResponse::Outcomes(results)) if results.len() == count => (results, None),
        Ok(_) => {
            let error = TopicError::new(error_codes::UNKNOWN_SERVER_ERROR, "unexpected answer");
            (vec![Err(error.clone()); count], Some(error))
        }
        Err(error) => (vec![Err(error.clone()); count], Some(error)),
    };
    let mut results = results.into_iter();
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let outcome = results.next().unwrap_or(Ok(()));
                    let (code, message) = match outcome {
                        Ok(()) => (error_codes::NONE, None),
                        Err(error) => (error.code, Some(str_bytes(error.message))),
                    };
                    ReassignablePartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let mut response = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_replication_factor_change)
        .with_responses(responses);
    if let Some(error) = top {
        response = response
            .with_error_code(error.code)
            .with_error_message(Some(str_bytes(error.message)));
    }
    response
}
