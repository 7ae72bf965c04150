//! DescribeAcls (key 29): the ACLs of this shard's image that a filter
//! selects, grouped by resource pattern. Needs DESCRIBE on CLUSTER; with
//! the authorizer off it answers SECURITY_DISABLED, as Kafka does. Also the
//! conversions DeleteAcls shares (filter from the wire, checks).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{ApiKey, DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, ApiSupport, RequestContext};
use crate::protocol::error_codes;
use crate::security::acl::{AclFilter, Operation, PatternType, Permission, ResourceType};

pub const API: ApiSupport = super::api(ApiKey::DescribeAcls, 1, 3);

/// The error every ACL API answers before looking at its body: the
/// authorizer is off, or the principal lacks `operation` on CLUSTER.
pub(super) fn refusal(context: &RequestContext, operation: Operation) -> Option<(i16, String)> {
    if !context.shard.config.authorizer.enabled {
        let message = "No authorizer is configured on the broker (authorizer.class.name).";
        return Some((error_codes::SECURITY_DISABLED, message.into()));
    }
    if !context.authorized_on_cluster(operation) {
        let message = format!("{operation} on the cluster is needed to manage ACLs.");
        return Some((error_codes::CLUSTER_AUTHORIZATION_FAILED, message));
    }
    None
}

/// A filter from a request's wire fields (DescribeAcls' request and
/// DeleteAcls' filters name them alike).
macro_rules! wire_filter {
    ($wire:expr) => {
        $crate::handlers::describe_acls::filter_from_wire(
            $wire.resource_type_filter,
            $wire.resource_name_filter.as_ref(),
            $wire.pattern_type_filter,
            $wire.principal_filter.as_ref(),
            $wire.host_filter.as_ref(),
            $wire.operation,
            $wire.permission_type,
        )
    };
}
pub(super) use wire_filter;

/// A filter from its wire fields; an unknown code is INVALID_REQUEST.
pub(super) fn filter_from_wire(
    resource_type: i8,
    resource_name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let unknown = |what: &str, code: i8| format!("unknown {what} code {code}");
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| unknown("resource type", resource_type))?,
        resource_name: resource_name.map(|name| name.to_string()),
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| unknown("pattern type", pattern_type))?,
        principal: principal.map(|principal| principal.to_string()),
        host: host.map(|host| host.to_string()),
        operation: Operation::from_code(operation)
            .ok_or_else(|| unknown("operation", operation))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| unknown("permission", permission))?,
    })
}

pub fn handle(context: &RequestContext, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let fail = |code, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    if let Some((code, message)) = refusal(context, Operation::Describe) {
        return fail(code, message);
    }
    let filter = match wire_filter!(request) {
        Ok(filter) => filter,
        Err(message) => return fail(error_codes::INVALID_REQUEST, message),
    };
    let image = context.shard.image();
    let mut resources: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for binding in image.acls.iter().filter(|binding| filter.matches(binding)) {
        let key = (
            binding.resource_type.code(),
            binding.resource_name.as_str(),
            binding.pattern_type.code(),
        );
        resources.entry(key).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(binding.principal.clone()))
                .with_host(str_bytes(binding.host.clone()))
                .with_operation(binding.operation.code())
                .with_permission_type(binding.permission.code()),
        );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern_type)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}
