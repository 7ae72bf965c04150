//! ElectLeaders (key 43): preferred (v0+) or unclean (v1+, KIP-460) leader
//! elections, decided by the active controller (`cluster/election.rs`).
//! Null partitions mean every partition; then only partitions that needed
//! an election are reported, as Kafka does.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::{call_controller, partition_pairs, str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{ControllerRequest, ControllerResponse, TopicError};
use crate::protocol::error_codes;

pub const API: ApiSupport = super::api(ApiKey::ElectLeaders, 0, 2);

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn handle(
    context: &RequestContext,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    if let Some(code) = context.cluster_refusal(crate::security::acl::Operation::Alter) {
        return ElectLeadersResponse::default().with_error_code(code);
    }
    let election_type = if context.api_version == 0 {
        PREFERRED
    } else {
        request.election_type
    };
    let partitions = request.topic_partitions.map(|topics| {
        partition_pairs(
            topics
                .iter()
                .map(|topic| (topic.topic.0.as_str(), topic.partitions.as_slice())),
        )
    });
    if election_type != PREFERRED && election_type != UNCLEAN {
        let error = TopicError::new(
            error_codes::INVALID_REQUEST,
            format!("Unknown election type {election_type}"),
        );
        return failed(partitions, error);
    }
    let call = ControllerRequest::ElectLeaders {
        unclean: election_type == UNCLEAN,
        partitions: partitions.clone(),
    };
    match call_controller(context, call).await {
        Ok(ControllerResponse::Elected(results)) => response(results),
        Ok(_) => failed(
            partitions,
            TopicError::new(error_codes::UNKNOWN_SERVER_ERROR, "unexpected answer"),
        ),
        Err(error) => failed(partitions, error),
    }
}

/// Every named partition fails with `error`, which is also the top-level one.
fn failed(partitions: Option<Vec<(String, i32)>>, error: TopicError) -> ElectLeadersResponse {
    let results = partitions
        .unwrap_or_default()
        .into_iter()
        .map(|key| (key, Err(error.clone())))
        .collect();
    response(results).with_error_code(error.code)
}

/// Results grouped by topic, in the order topics first appear.
fn response(results: Vec<((String, i32), Result<(), TopicError>)>) -> ElectLeadersResponse {
    let mut topics: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, partition), outcome) in results {
        let (code, message) = match outcome {
            Ok(()) => (error_codes::NONE, None),
            Err(error) => (error.code, Some(str_bytes(error.message))),
        };
        let result = PartitionResult::default()
            .with_partition_id(partition)
            .with_error_code(code)
            .with_error_message(message);
        match topics
            .iter_mut()
            .find(|entry| entry.topic.0.as_str() == topic)
        {
            Some(entry) => entry.partition_result.push(result),
            None => topics.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(topics)
}
