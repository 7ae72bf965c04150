//! JoinGroup (key 11): forwarded to the group's coordinator shard, where it
//! may wait (parked) until the rebalance's join phase ends. v0 has no
//! rebalance timeout (the session timeout stands in, as in Kafka); v4+
//! take part in KIP-394's member-id handshake; v5+ carry static membership.

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::group::Protocol;
use crate::coordinator::manager::{JoinRequest, JoinResponse};
use crate::coordinator::submit_to_coordinator;

pub const API: ApiSupport = super::api(ApiKey::JoinGroup, 0, 9);

pub async fn handle(context: &RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    if let Some(code) = context.group_refusal(
        crate::security::acl::Operation::Read,
        request.group_id.as_str(),
    ) {
        return JoinGroupResponse::default().with_error_code(code);
    }
    let version = context.api_version;
    let join = JoinRequest {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client_id(context),
        client_host: client_host(context),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: Bytes::copy_from_slice(&p.metadata),
            })
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    let group_id = join.group_id.clone();
    let response =
        submit_to_coordinator(&context.shard, &group_id, move |coordinator| async move {
            coordinator.join(join).await
        })
        .await
        .unwrap_or_else(|code| JoinResponse::error(&member_id, code));
    let members = response
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(str_bytes))
                .with_metadata(m.metadata)
        })
        .collect();
    // Nullable from v7; before that an absent protocol is the empty string.
    let protocol_name = match (response.protocol_name, version >= 7) {
        (Some(name), _) => Some(str_bytes(name)),
        (None, true) => None,
        (None, false) => Some(str_bytes("")),
    };
    JoinGroupResponse::default()
        .with_error_code(response.error_code)
        .with_generation_id(response.generation_id)
        .with_protocol_type(response.protocol_type.map(str_bytes))
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(response.leader))
        .with_member_id(str_bytes(response.member_id))
        .with_members(members)
}

/// The client id of the request header, as DescribeGroups shows it.
pub(crate) fn client_id(context: &RequestContext) -> String {
    context
        .header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// The client's host as Kafka shows it (`/127.0.0.1`).
pub(crate) fn client_host(context: &RequestContext) -> String {
    context.client_address.map_or_else(
        || "/unknown".to_string(),
        |address| format!("/{}", address.ip()),
    )
}
