//! The error codes a response carries, wherever its schema puts them: what
//! the metrics count per API and error, as Kafka's `ErrorsPerSec` does.
//!
//! Every error code field of the 26 responses Sluice answers is visited;
//! fields a version does not carry are 0 and so not counted.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ResponseKind;

/// Calls `visit` with every non-zero error code in `body`.
pub fn visit_error_codes(body: &ResponseKind, visit: &mut dyn FnMut(i16)) {
    let mut code = |error_code: i16| {
        if error_code != 0 {
            visit(error_code);
        }
    };
    match body {
        ResponseKind::Produce(response) => {
            for partition in response
                .responses
                .iter()
                .flat_map(|topic| &topic.partition_responses)
            {
                code(partition.error_code);
            }
        }
        ResponseKind::Fetch(response) => {
            code(response.error_code);
            for partition in response.responses.iter().flat_map(|t| &t.partitions) {
                code(partition.error_code);
            }
        }
        ResponseKind::ListOffsets(response) => {
            for partition in response.topics.iter().flat_map(|t| &t.partitions) {
                code(partition.error_code);
            }
        }
        ResponseKind::Metadata(response) => {
            for topic in &response.topics {
                code(topic.error_code);
                for partition in &topic.partitions {
                    code(partition.error_code);
                }
            }
        }
        ResponseKind::OffsetCommit(response) => {
            for partition in response.topics.iter().flat_map(|t| &t.partitions) {
                code(partition.error_code);
            }
        }
        ResponseKind::OffsetFetch(response) => {
            code(response.error_code);
            for partition in response.topics.iter().flat_map(|t| &t.partitions) {
                code(partition.error_code);
            }
            for group in &response.groups {
                code(group.error_code);
                for partition in group.topics.iter().flat_map(|t| &t.partitions) {
                    code(partition.error_code);
                }
            }
        }
        ResponseKind::FindCoordinator(response) => {
            code(response.error_code);
            for coordinator in &response.coordinators {
                code(coordinator.error_code);
            }
        }
        ResponseKind::JoinGroup(response) => code(response.error_code),
        ResponseKind::Heartbeat(response) => code(response.error_code),
        ResponseKind::SyncGroup(response) => code(response.error_code),
        ResponseKind::LeaveGroup(response) => {
            code(response.error_code);
            for member in &response.members {
                code(member.error_code);
            }
        }
        ResponseKind::DescribeGroups(response) => {
            for group in &response.groups {
                code(group.error_code);
            }
        }
        ResponseKind::ListGroups(response) => code(response.error_code),
        ResponseKind::ApiVersions(response) => code(response.error_code),
        ResponseKind::CreateTopics(response) => {
            for topic in &response.topics {
                code(topic.error_code);
            }
        }
        ResponseKind::DeleteTopics(response) => {
            for topic in &response.responses {
                code(topic.error_code);
            }
        }
        ResponseKind::DeleteRecords(response) => {
            for partition in response.topics.iter().flat_map(|t| &t.partitions) {
                code(partition.error_code);
            }
        }
        ResponseKind::InitProducerId(response) => code(response.error_code),
        ResponseKind::DescribeConfigs(response) => {
            for result in &response.results {
                code(result.error_code);
            }
        }
        ResponseKind::AlterConfigs(response) => {
            for resource in &response.responses {
                code(resource.error_code);
            }
        }
        ResponseKind::IncrementalAlterConfigs(response) => {
            for resource in &response.responses {
                code(resource.error_code);
            }
        }
        ResponseKind::DescribeLogDirs(response) => {
            code(response.error_code);
            for result in &response.results {
                code(result.error_code);
            }
        }
        ResponseKind::CreatePartitions(response) => {
            for result in &response.results {
                code(result.error_code);
            }
        }
        ResponseKind::DeleteGroups(response) => {
            for result in &response.results {
                code(result.error_code);
            }
        }
        ResponseKind::OffsetDelete(response) => {
            code(response.error_code);
            for partition in response.topics.iter().flat_map(|t| &t.partitions) {
                code(partition.error_code);
            }
        }
        ResponseKind::DescribeCluster(response) => code(response.error_code),
        ResponseKind::AddPartitionsToTxn(response) => {
            let topics = &response.results_by_topic_v3_and_below;
            for partition in topics.iter().flat_map(|t| &t.results_by_partition) {
                code(partition.partition_error_code);
            }
        }
        ResponseKind::AddOffsetsToTxn(response) => code(response.error_code),
        ResponseKind::EndTxn(response) => code(response.error_code),
        ResponseKind::TxnOffsetCommit(response) => {
            for partition in response.topics.iter().flat_map(|t| &t.partitions) {
                code(partition.error_code);
            }
        }
        ResponseKind::WriteTxnMarkers(response) => {
            let topics = response.markers.iter().flat_map(|m| &m.topics);
            for partition in topics.flat_map(|t| &t.partitions) {
                code(partition.error_code);
            }
        }
        ResponseKind::DescribeTransactions(response) => {
            for state in &response.transaction_states {
                code(state.error_code);
            }
        }
        ResponseKind::ListTransactions(response) => code(response.error_code),
        // Responses to APIs Sluice does not advertise are never built.
        _ => {}
    }
}

/// Kafka's name of an error code, as clients print it
/// (`UNKNOWN_TOPIC_OR_PARTITION`); unknown codes by number.
pub fn error_name(error_code: i16) -> String {
    match ResponseError::try_from_code(error_code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => code.to_string(),
        Some(error) => {
            let camel = error.to_string();
            let mut name = String::with_capacity(camel.len() + 8);
            for (index, character) in camel.char_indices() {
                if character.is_ascii_uppercase() && index > 0 {
                    name.push('_');
                }
                name.push(character.to_ascii_uppercase());
            }
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::HeartbeatResponse;

    fn codes(body: &ResponseKind) -> Vec<i16> {
        let mut seen = Vec::new();
        visit_error_codes(body, &mut |code| seen.push(code));
        seen
    }

    #[test]
    fn nested_partition_errors_are_found_and_zero_is_skipped() {
        let partition =
            |error_code| PartitionProduceResponse::default().with_error_code(error_code);
        let response = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_partition_responses(vec![partition(0), partition(3)]),
            TopicProduceResponse::default().with_partition_responses(vec![partition(10)]),
        ]);
        assert_eq!(codes(&ResponseKind::Produce(response)), vec![3, 10]);
        let heartbeat = HeartbeatResponse::default().with_error_code(27);
        assert_eq!(codes(&ResponseKind::Heartbeat(heartbeat)), vec![27]);
    }

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "9999");
    }
}
