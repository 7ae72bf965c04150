//! Heartbeat (key 12): forwarded to the group's coordinator shard; keeps
//! the member's session alive and tells it when to rejoin.

use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};

use super::{ApiSupport, RequestContext};
use crate::coordinator::submit_to_coordinator;

pub const API: ApiSupport = super::api(ApiKey::Heartbeat, 0, 4);

pub async fn handle(context: &RequestContext, request: HeartbeatRequest) -> HeartbeatResponse {
    if let Some(code) = context.group_refusal(
        crate::security::acl::Operation::Read,
        request.group_id.as_str(),
    ) {
        return HeartbeatResponse::default().with_error_code(code);
    }
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let instance = request.group_instance_id.as_ref().map(|i| i.to_string());
    let generation_id = request.generation_id;
    let target = group_id.clone();
    let code = submit_to_coordinator(&context.shard, &target, move |coordinator| async move {
        coordinator
            .heartbeat(&group_id, &member_id, instance.as_deref(), generation_id)
            .await
    })
    .await
    .unwrap_or_else(|code| code);
    HeartbeatResponse::default().with_error_code(code)
}
