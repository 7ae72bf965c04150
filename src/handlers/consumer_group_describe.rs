//! ConsumerGroupDescribe (key 69, KIP-848): each group from its
//! coordinator shard: state, group and assignment epochs, assignor, and
//! every member with its epoch, subscription, current and target
//! assignment. A classic or unknown group is GROUP_ID_NOT_FOUND, as Kafka
//! answers (clients then describe it with DescribeGroups).

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::manager::DescribedPartitions;
use crate::coordinator::submit_to_coordinator;
use crate::security::acl::Operation;

pub const API: ApiSupport = super::api(ApiKey::ConsumerGroupDescribe, 0, 1);

/// Kafka's "no authorized operations requested" value.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// DescribeGroup v1's MemberType of a consumer-protocol member.
const MEMBER_TYPE_CONSUMER: i8 = 1;

pub async fn handle(
    context: &RequestContext,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in &request.group_ids {
        let id = group_id.to_string();
        let target = id.clone();
        let described = match context.group_refusal(Operation::Describe, &id) {
            Some(code) => Err(code),
            None => {
                submit_to_coordinator(&context.shard, &target, move |coordinator| async move {
                    coordinator.consumer_describe(&id).await
                })
                .await
            }
        };
        let entry = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        let described = match described {
            Err(code) => {
                groups.push(entry.with_error_code(code));
                continue;
            }
            Ok(Err(error)) => {
                groups.push(
                    entry
                        .with_error_code(error.code)
                        .with_error_message(Some(str_bytes(error.message))),
                );
                continue;
            }
            Ok(Ok(described)) => described,
        };
        let members = described
            .members
            .into_iter()
            .map(|m| {
                Member::default()
                    .with_member_id(str_bytes(m.member_id))
                    .with_instance_id(m.instance_id.map(str_bytes))
                    .with_rack_id(m.rack_id.map(str_bytes))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(str_bytes(m.client_id))
                    .with_client_host(str_bytes(m.client_host))
                    .with_subscribed_topic_names(
                        m.subscribed_topic_names
                            .into_iter()
                            .map(|t| TopicName(str_bytes(t)))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(m.subscribed_topic_regex.map(str_bytes))
                    .with_assignment(assignment(m.assignment))
                    .with_target_assignment(assignment(m.target_assignment))
                    .with_member_type(MEMBER_TYPE_CONSUMER)
            })
            .collect();
        groups.push(
            entry
                .with_group_state(str_bytes(described.state))
                .with_group_epoch(described.group_epoch)
                .with_assignment_epoch(described.assignment_epoch)
                .with_assignor_name(str_bytes(described.assignor))
                .with_members(members),
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn assignment(partitions: Vec<DescribedPartitions>) -> Assignment {
    Assignment::default().with_topic_partitions(
        partitions
            .into_iter()
            .map(|p| {
                TopicPartitions::default()
                    .with_topic_id(p.topic_id)
                    .with_topic_name(TopicName(str_bytes(p.topic_name)))
                    .with_partitions(p.partitions)
            })
            .collect(),
    )
}
