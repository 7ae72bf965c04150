//! ListPartitionReassignments (key 46, KIP-455): the reassignments in
//! progress, of the named partitions or (null topics) of every partition,
//! from the active controller's image. Named partitions that are not being
//! reassigned are left out, as Kafka does.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    TopicName,
};

use super::{call_controller, partition_pairs, str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{ControllerRequest, ControllerResponse};
use crate::cluster::reassign::Ongoing;
use crate::protocol::error_codes;

pub const API: ApiSupport = super::api(ApiKey::ListPartitionReassignments, 0, 0);

pub async fn handle(
    context: &RequestContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if let Some(code) = context.cluster_refusal(crate::security::acl::Operation::Describe) {
        return ListPartitionReassignmentsResponse::default().with_error_code(code);
    }
    let partitions = request.topics.map(|topics| {
        partition_pairs(
            topics
                .iter()
                .map(|topic| (topic.name.0.as_str(), topic.partition_indexes.as_slice())),
        )
    });
    let response = ListPartitionReassignmentsResponse::default();
    match call_controller(context, ControllerRequest::ListReassignments { partitions }).await {
        Ok(ControllerResponse::Reassignments(ongoing)) => response.with_topics(by_topic(ongoing)),
        Ok(_) => response.with_error_code(error_codes::UNKNOWN_SERVER_ERROR),
        Err(error) => response
            .with_error_code(error.code)
            .with_error_message(Some(str_bytes(error.message))),
    }
}

fn ids(list: &[i32]) -> Vec<BrokerId> {
    list.iter().copied().map(BrokerId).collect()
}

fn by_topic(ongoing: Vec<Ongoing>) -> Vec<OngoingTopicReassignment> {
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for entry in ongoing {
        let partition = OngoingPartitionReassignment::default()
            .with_partition_index(entry.partition)
            .with_replicas(ids(&entry.replicas))
            .with_adding_replicas(ids(&entry.adding))
            .with_removing_replicas(ids(&entry.removing));
        match topics.iter_mut().find(|t| t.name.0.as_str() == entry.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(entry.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    topics
}
