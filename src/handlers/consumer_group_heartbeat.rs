//! ConsumerGroupHeartbeat (key 68, KIP-848): the consumer protocol's one
//! request for joining (epoch 0), heartbeating, acknowledging revocations
//! and leaving (epoch -1; -2 for static members). Forwarded to the group's
//! coordinator shard; the broker computes the assignment. v0 lets the
//! broker make the member id; v1 wants the client's own id. Topics by
//! name or by a regex (an empty regex is none, as librdkafka sends it).

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};

use super::join_group::{client_host, client_id};
use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::consumer_group::Assignment as Partitions;
use crate::coordinator::manager::ConsumerHeartbeat;
use crate::coordinator::submit_to_coordinator;

pub const API: ApiSupport = super::api(ApiKey::ConsumerGroupHeartbeat, 0, 1);

pub async fn handle(
    context: &RequestContext,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    if let Some(code) = context.group_refusal(
        crate::security::acl::Operation::Read,
        request.group_id.as_str(),
    ) {
        return ConsumerGroupHeartbeatResponse::default().with_error_code(code);
    }
    let owned = request.topic_partitions.as_ref().map(|topics| {
        let mut owned = Partitions::new();
        for topic in topics {
            let partitions: BTreeSet<i32> = topic.partitions.iter().copied().collect();
            if !partitions.is_empty() {
                owned.entry(topic.topic_id).or_default().extend(partitions);
            }
        }
        owned
    });
    let heartbeat = ConsumerHeartbeat {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|i| i.to_string()),
        rack_id: request.rack_id.as_ref().map(|r| r.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: request
            .subscribed_topic_regex
            .as_ref()
            .map(|r| r.to_string()),
        server_assignor: request.server_assignor.as_ref().map(|a| a.to_string()),
        owned,
        client_id: client_id(context),
        client_host: client_host(context),
    };
    let member_id_required = context.api_version >= 1;
    let target = heartbeat.group_id.clone();
    let outcome = submit_to_coordinator(&context.shard, &target, move |coordinator| async move {
        coordinator
            .consumer_heartbeat(heartbeat, member_id_required)
            .await
    })
    .await;
    let response = ConsumerGroupHeartbeatResponse::default();
    match outcome {
        Err(code) => response.with_error_code(code),
        Ok(Err(error)) => response
            .with_error_code(error.code)
            .with_error_message(Some(str_bytes(error.message))),
        Ok(Ok(answer)) => {
            let assignment = answer.assignment.map(|assigned| {
                Assignment::default().with_topic_partitions(
                    assigned
                        .into_iter()
                        .map(|(topic_id, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(partitions.into_iter().collect())
                        })
                        .collect(),
                )
            });
            response
                .with_member_id(Some(str_bytes(answer.member_id)))
                .with_member_epoch(answer.member_epoch)
                .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
                .with_assignment(assignment)
        }
    }
}
