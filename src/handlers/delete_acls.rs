//! DeleteAcls (key 31): removes the ACLs each filter selects through the
//! active controller (a `RemoveAcls` metadata record) and answers, per
//! filter, the bindings it removed. Needs ALTER on CLUSTER;
//! SECURITY_DISABLED with the authorizer off.

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{ApiKey, DeleteAclsRequest, DeleteAclsResponse};

use super::describe_acls::{refusal, wire_filter};
use super::{call_controller, str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{ControllerRequest, ControllerResponse};
use crate::protocol::error_codes;
use crate::security::acl::{AclBinding, Operation};

pub const API: ApiSupport = super::api(ApiKey::DeleteAcls, 1, 3);

fn failed(code: i16, message: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
}

fn removed(bindings: Vec<AclBinding>) -> DeleteAclsFilterResult {
    let matching = bindings
        .into_iter()
        .map(|binding| {
            DeleteAclsMatchingAcl::default()
                .with_resource_type(binding.resource_type.code())
                .with_resource_name(str_bytes(binding.resource_name))
                .with_pattern_type(binding.pattern_type.code())
                .with_principal(str_bytes(binding.principal))
                .with_host(str_bytes(binding.host))
                .with_operation(binding.operation.code())
                .with_permission_type(binding.permission.code())
        })
        .collect();
    DeleteAclsFilterResult::default().with_matching_acls(matching)
}

pub async fn handle(context: &RequestContext, request: DeleteAclsRequest) -> DeleteAclsResponse {
    if let Some((code, message)) = refusal(context, Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| failed(code, message.clone()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let filters: Vec<_> = request
        .filters
        .iter()
        .map(|filter| wire_filter!(filter))
        .collect();
    let valid: Vec<_> = filters.iter().flatten().cloned().collect();
    let mut outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        let count = valid.len();
        match call_controller(context, ControllerRequest::DeleteAcls { filters: valid }).await {
            Ok(ControllerResponse::DeletedAcls(outcomes)) if outcomes.len() == count => outcomes,
            Ok(_) => vec![
                Err(crate::cluster::controller::TopicError::new(
                    error_codes::UNKNOWN_SERVER_ERROR,
                    "unexpected answer",
                ));
                count
            ],
            Err(error) => vec![Err(error); count],
        }
    }
    .into_iter();
    let results = filters
        .into_iter()
        .map(|filter| match filter {
            Err(message) => failed(error_codes::INVALID_REQUEST, message),
            Ok(_) => match outcomes.next() {
                Some(Ok(bindings)) => removed(bindings),
                Some(Err(error)) => failed(error.code, error.message),
                None => failed(error_codes::UNKNOWN_SERVER_ERROR, "no answer".into()),
            },
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
