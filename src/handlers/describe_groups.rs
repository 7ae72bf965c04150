//! DescribeGroups (key 15): each group from its coordinator shard: state,
//! protocol, members with client ids, hosts, and (when Stable) their
//! metadata and assignments. An unknown group is described as Dead.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::submit_to_coordinator;
use crate::security::acl::Operation;

pub const API: ApiSupport = super::api(ApiKey::DescribeGroups, 0, 5);

/// Kafka's "no authorized operations requested" value.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(
    context: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in &request.groups {
        let id = group_id.to_string();
        let target = id.clone();
        let described = match context.group_refusal(Operation::Describe, &id) {
            Some(code) => Err(code),
            None => {
                submit_to_coordinator(&context.shard, &target, move |coordinator| async move {
                    coordinator.describe(&id).await
                })
                .await
            }
        };
        let entry = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        let described = match described {
            Ok(described) => described,
            Err(code) => {
                groups.push(entry.with_error_code(code));
                continue;
            }
        };
        let members = described
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(m.member_id))
                    .with_group_instance_id(m.group_instance_id.map(str_bytes))
                    .with_client_id(str_bytes(m.client_id))
                    .with_client_host(str_bytes(m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect();
        groups.push(
            entry
                .with_group_state(str_bytes(described.state))
                .with_protocol_type(str_bytes(described.protocol_type))
                .with_protocol_data(str_bytes(described.protocol_data))
                .with_members(members),
        );
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
