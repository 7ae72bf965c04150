//! LeaveGroup (key 13): forwarded to the group's coordinator shard. v0 to
//! v2 name one member; v3+ a batch of members, static ones by instance id.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::coordinator::manager::LeavingMember;
use crate::coordinator::{errors, submit_to_coordinator};

pub const API: ApiSupport = super::api(ApiKey::LeaveGroup, 0, 5);

pub async fn handle(context: &RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    if let Some(code) = context.group_refusal(
        crate::security::acl::Operation::Read,
        request.group_id.as_str(),
    ) {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let batched = context.api_version >= 3;
    let leaving: Vec<LeavingMember> = if batched {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let group_id = request.group_id.to_string();
    let sent = leaving.clone();
    let target = group_id.clone();
    let codes = submit_to_coordinator(&context.shard, &target, move |coordinator| async move {
        coordinator.leave(&group_id, &sent).await
    })
    .await;
    let codes = match codes {
        Ok(codes) => codes,
        Err(code) => return LeaveGroupResponse::default().with_error_code(code),
    };
    if !batched {
        let code = codes.first().copied().unwrap_or(errors::NONE);
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = leaving
        .into_iter()
        .zip(codes)
        .map(|(member, code)| {
            MemberResponse::default()
                .with_member_id(str_bytes(member.member_id))
                .with_group_instance_id(member.group_instance_id.map(str_bytes))
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
