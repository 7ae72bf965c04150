//! ListGroups (key 16): asks every shard's coordinator for its groups (a
//! group lives on one shard only) and merges them. v4+ filter by state,
//! v5+ by type: "classic" groups (JoinGroup) and KIP-848 "consumer" groups
//! (ConsumerGroupHeartbeat).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::{errors, runtime};
use crate::security::acl::Operation;

pub const API: ApiSupport = super::api(ApiKey::ListGroups, 0, 5);

pub async fn handle(context: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_string())
        .collect();
    let types: Vec<String> = request.types_filter.iter().map(|t| t.to_string()).collect();
    let type_wanted = move |group_type: &str| {
        types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(group_type))
    };
    let outcome = context
        .shard
        .mesh
        .submit_to_all(move || {
            let states = states.clone();
            async move { Some(runtime::current().list(&states).await) }
        })
        .await;
    let per_shard = match outcome {
        Ok(per_shard) => per_shard,
        Err(_) => {
            return ListGroupsResponse::default().with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
        }
    };
    let mut listed = Vec::new();
    for shard_groups in per_shard.into_iter().flatten() {
        match shard_groups {
            Ok(groups) => listed.extend(groups),
            // A shard still loading a partition: Kafka answers so too.
            Err(code) => return ListGroupsResponse::default().with_error_code(code),
        }
    }
    let every_group = context.authorized_on_cluster(Operation::Describe);
    let groups = listed
        .into_iter()
        .filter(|group| type_wanted(group.group_type))
        // Kafka: DESCRIBE on the cluster lists every group, else those the
        // principal may DESCRIBE.
        .filter(|group| {
            every_group
                || context
                    .group_refusal(Operation::Describe, &group.group_id)
                    .is_none()
        })
        .map(|group| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(group.group_id)))
                .with_protocol_type(str_bytes(group.protocol_type))
                .with_group_state(str_bytes(group.state))
                .with_group_type(str_bytes(group.group_type))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
