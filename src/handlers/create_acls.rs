//! CreateAcls (key 30): adds ACLs through the active controller (a
//! `CreateAcls` metadata record), so every broker of the cluster has them
//! and they survive restarts. Needs ALTER on CLUSTER; SECURITY_DISABLED
//! with the authorizer off. Each creation is answered on its own (an
//! invalid one is INVALID_REQUEST and does not stop the others).

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, CreateAclsResponse};

use super::describe_acls::refusal;
use super::{call_controller, str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{ControllerRequest, ControllerResponse};
use crate::protocol::error_codes;
use crate::security::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};

pub const API: ApiSupport = super::api(ApiKey::CreateAcls, 1, 3);

fn result(code: i16, message: Option<String>) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(code)
        .with_error_message(message.map(str_bytes))
}

pub async fn handle(context: &RequestContext, request: CreateAclsRequest) -> CreateAclsResponse {
    if let Some((code, message)) = refusal(context, Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| result(code, Some(message.clone())))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    // Wire codes that name nothing are refused here; the rest is checked
    // by the controller (`AclBinding::validate`).
    let bindings: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|creation| {
            Ok(AclBinding {
                resource_type: ResourceType::from_code(creation.resource_type)
                    .ok_or("unknown resource type")?,
                resource_name: creation.resource_name.to_string(),
                pattern_type: PatternType::from_code(creation.resource_pattern_type)
                    .ok_or("unknown pattern type")?,
                principal: creation.principal.to_string(),
                host: creation.host.to_string(),
                operation: Operation::from_code(creation.operation).ok_or("unknown operation")?,
                permission: Permission::from_code(creation.permission_type)
                    .ok_or("unknown permission")?,
            })
        })
        .collect();
    let valid: Vec<AclBinding> = bindings.iter().flatten().cloned().collect();
    let mut outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        match call_controller(
            context,
            ControllerRequest::CreateAcls {
                acls: valid.clone(),
            },
        )
        .await
        {
            Ok(ControllerResponse::Outcomes(outcomes)) if outcomes.len() == valid.len() => {
                outcomes.into_iter().map(|outcome| outcome.err()).collect()
            }
            Ok(_) => vec![
                Some(crate::cluster::controller::TopicError::new(
                    error_codes::UNKNOWN_SERVER_ERROR,
                    "unexpected answer",
                ));
                valid.len()
            ],
            Err(error) => vec![Some(error); valid.len()],
        }
    }
    .into_iter();
    let results = bindings
        .into_iter()
        .map(|binding| match binding {
            Err(message) => result(error_codes::INVALID_REQUEST, Some(message)),
            Ok(_) => match outcomes.next().flatten() {
                None => result(error_codes::NONE, None),
                Some(error) => result(error.code, Some(error.message)),
            },
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
