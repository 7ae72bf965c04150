//! DeleteGroups (key 42): each group on its coordinator shard; only an
//! empty group can be deleted, and its offsets go with it (tombstones in
//! `__consumer_offsets`).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse};

use super::{ApiSupport, RequestContext};
use crate::coordinator::{errors, submit_to_coordinator};
use crate::security::acl::Operation;

pub const API: ApiSupport = super::api(ApiKey::DeleteGroups, 0, 2);

pub async fn handle(
    context: &RequestContext,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in &request.groups_names {
        let id = group_id.to_string();
        let code = if id.is_empty() {
            errors::INVALID_GROUP_ID
        } else if let Some(code) = context.group_refusal(Operation::Delete, &id) {
            code
        } else {
            let target = id.clone();
            submit_to_coordinator(&context.shard, &target, move |coordinator| async move {
                coordinator.delete_groups(&[id]).await
            })
            .await
            .map(|codes| {
                codes
                    .first()
                    .copied()
                    .unwrap_or(errors::UNKNOWN_SERVER_ERROR)
            })
            .unwrap_or_else(|code| code)
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id.clone())
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
