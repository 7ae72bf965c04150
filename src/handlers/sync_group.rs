//! SyncGroup (key 14): forwarded to the group's coordinator shard. The
//! leader brings the assignment; every member waits (parked) for its part.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::manager::{SyncRequest, SyncResponse};
use crate::coordinator::submit_to_coordinator;

pub const API: ApiSupport = super::api(ApiKey::SyncGroup, 0, 5);

pub async fn handle(context: &RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    if let Some(code) = context.group_refusal(
        crate::security::acl::Operation::Read,
        request.group_id.as_str(),
    ) {
        return SyncGroupResponse::default().with_error_code(code);
    }
    let sync = SyncRequest {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        protocol_type: request.protocol_type.as_ref().map(|t| t.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|n| n.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| {
                (
                    a.member_id.to_string(),
                    Bytes::copy_from_slice(&a.assignment),
                )
            })
            .collect(),
    };
    let group_id = sync.group_id.clone();
    let response =
        submit_to_coordinator(&context.shard, &group_id, move |coordinator| async move {
            coordinator.sync(sync).await
        })
        .await
        .unwrap_or_else(SyncResponse::error);
    SyncGroupResponse::default()
        .with_error_code(response.error_code)
        .with_protocol_type(response.protocol_type.map(str_bytes))
        .with_protocol_name(response.protocol_name.map(str_bytes))
        .with_assignment(response.assignment)
}
