//! DescribeQuorum (key 55): the metadata quorum (`__cluster_metadata`
//! partition 0) as the active controller sees it: leader, leader epoch (the
//! Raft term), high watermark (the commit index) and each voter's log end
//! offset (the last Raft index it is known to hold; -1 when unknown).
//! Offsets are Raft log indexes. There are no observers: every node votes.

use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};

use super::{call_controller, str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{ControllerRequest, ControllerResponse};
use crate::cluster::quorum::QuorumStatus;
use crate::protocol::error_codes;

pub const API: ApiSupport = super::api(ApiKey::DescribeQuorum, 0, 2);

/// The metadata log's name, as Kafka reports it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The controller listener's name in v2's node list.
const LISTENER_NAME: &str = "CONTROLLER";

pub async fn handle(
    context: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    if let Some(code) = context.cluster_refusal(crate::security::acl::Operation::Describe) {
        return DescribeQuorumResponse::default().with_error_code(code);
    }
    let asks_metadata_log = request.topics.len() == 1
        && request.topics[0].topic_name.0.as_str() == METADATA_TOPIC
        && request.topics[0].partitions.len() == 1
        && request.topics[0].partitions[0].partition_index == 0;
    if !asks_metadata_log {
        return DescribeQuorumResponse::default()
            .with_error_code(error_codes::UNKNOWN_TOPIC_OR_PARTITION)
            .with_error_message(Some(str_bytes(format!(
                "DescribeQuorum describes only {METADATA_TOPIC}-0"
            ))));
    }
    let (partition, nodes) = match call_controller(context, ControllerRequest::DescribeQuorum).await
    {
        Ok(ControllerResponse::Quorum { status, voters }) => {
            let nodes = voters
                .into_iter()
                .map(|(id, address)| {
                    Node::default()
                        .with_node_id(BrokerId(id))
                        .with_listeners(vec![Listener::default()
                            .with_name(str_bytes(LISTENER_NAME))
                            .with_host(str_bytes(address.ip().to_string()))
                            .with_port(address.port())])
                })
                .collect();
            (partition_data(&status, now_ms()), nodes)
        }
        Ok(_) => (
            PartitionData::default().with_error_code(error_codes::UNKNOWN_SERVER_ERROR),
            Vec::new(),
        ),
        Err(error) => (
            PartitionData::default()
                .with_error_code(error_codes::NOT_LEADER_OR_FOLLOWER)
                .with_error_message(Some(str_bytes(error.message)))
                .with_leader_id(BrokerId(-1))
                .with_leader_epoch(-1)
                .with_high_watermark(-1),
            Vec::new(),
        ),
    };
    DescribeQuorumResponse::default()
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
            .with_partitions(vec![partition])])
        .with_nodes(nodes)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// The partition's description; the leader's own log end is its last index.
fn partition_data(status: &QuorumStatus, now_ms: i64) -> PartitionData {
    let leader = status.leader.unwrap_or(-1);
    let voters = status
        .voters
        .iter()
        .map(|(id, matched)| {
            let (end, caught_up) = if *id == leader {
                (status.last_index as i64, now_ms)
            } else {
                (matched.map_or(-1, |index| index as i64), -1)
            };
            ReplicaState::default()
                .with_replica_id(BrokerId(*id))
                .with_log_end_offset(end)
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(caught_up)
        })
        .collect();
    PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
        .with_high_watermark(status.high_watermark as i64)
        .with_current_voters(voters)
        .with_observers(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_reports_its_own_log_end_and_unknown_voters_minus_one() {
        let status = QuorumStatus {
            leader: Some(2),
            term: 7,
            high_watermark: 40,
            last_index: 42,
            voters: vec![(1, Some(40)), (2, Some(41)), (3, None)],
        };
        let data = partition_data(&status, 1000);
        assert_eq!(
            (data.leader_id.0, data.leader_epoch, data.high_watermark),
            (2, 7, 40)
        );
        let ends: Vec<(i32, i64, i64)> = data
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset, v.last_caught_up_timestamp))
            .collect();
        assert_eq!(ends, vec![(1, 40, -1), (2, 42, 1000), (3, -1, -1)]);
    }
}
