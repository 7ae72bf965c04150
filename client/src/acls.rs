//! ACLs over a [`Cluster`]: CreateAcls, DescribeAcls and DeleteAcls, sent
//! to any broker (the controller makes the change cluster-wide). Bindings
//! and filters carry Kafka's wire codes; naming them (`Read`, `TOPIC`) is
//! the caller's business.

use anyhow::{bail, Result};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::errors::KafkaError;

/// The highest version of the ACL APIs this client speaks.
const ACL_API_VERSION_MAX: i16 = 3;

/// One ACL, with Kafka's codes for the resource type, pattern type,
/// operation and permission.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

/// What to select: `None` matches any value, and so do the ANY codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclSelector {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Creates `acls`; the first refused one is the error.
pub fn create_acls(cluster: &mut Cluster, acls: &[Acl]) -> Result<()> {
    let creations = acls
        .iter()
        .map(|acl| {
            AclCreation::default()
                .with_resource_type(acl.resource_type)
                .with_resource_name(text(&acl.resource_name))
                .with_resource_pattern_type(acl.pattern_type)
                .with_principal(text(&acl.principal))
                .with_host(text(&acl.host))
                .with_operation(acl.operation)
                .with_permission_type(acl.permission)
        })
        .collect();
    let request = CreateAclsRequest::default().with_creations(creations);
    let response = cluster.any()?.call(&request, ACL_API_VERSION_MAX)?;
    if response.results.len() != acls.len() {
        bail!(
            "CreateAcls answered {} results for {} ACLs",
            response.results.len(),
            acls.len()
        );
    }
    for result in &response.results {
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref(),
            "creating ACLs",
        )?;
    }
    Ok(())
}

/// The ACLs `selector` selects.
pub fn describe_acls(cluster: &mut Cluster, selector: &AclSelector) -> Result<Vec<Acl>> {
    let request = DescribeAclsRequest::default()
        .with_resource_type_filter(selector.resource_type)
        .with_resource_name_filter(selector.resource_name.as_deref().map(text))
        .with_pattern_type_filter(selector.pattern_type)
        .with_principal_filter(selector.principal.as_deref().map(text))
        .with_host_filter(selector.host.as_deref().map(text))
        .with_operation(selector.operation)
        .with_permission_type(selector.permission);
    let response = cluster.any()?.call(&request, ACL_API_VERSION_MAX)?;
    KafkaError::check(
        response.error_code,
        response.error_message.as_ref(),
        "describing ACLs",
    )?;
    let mut acls = Vec::new();
    for resource in response.resources {
        for acl in resource.acls {
            acls.push(Acl {
                resource_type: resource.resource_type,
                resource_name: resource.resource_name.to_string(),
                pattern_type: resource.pattern_type,
                principal: acl.principal.to_string(),
                host: acl.host.to_string(),
                operation: acl.operation,
                permission: acl.permission_type,
            });
        }
    }
    Ok(acls)
}

/// Deletes what each selector selects; returns the ACLs removed.
pub fn delete_acls(cluster: &mut Cluster, selectors: &[AclSelector]) -> Result<Vec<Acl>> {
    let filters = selectors
        .iter()
        .map(|selector| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(selector.resource_type)
                .with_resource_name_filter(selector.resource_name.as_deref().map(text))
                .with_pattern_type_filter(selector.pattern_type)
                .with_principal_filter(selector.principal.as_deref().map(text))
                .with_host_filter(selector.host.as_deref().map(text))
                .with_operation(selector.operation)
                .with_permission_type(selector.permission)
        })
        .collect();
    let request = DeleteAclsRequest::default().with_filters(filters);
    let response = cluster.any()?.call(&request, ACL_API_VERSION_MAX)?;
    let mut removed = Vec::new();
    for result in response.filter_results {
        KafkaError::check(
            result.error_code,
            result.error_message.as_ref(),
            "deleting ACLs",
        )?;
        for acl in result.matching_acls {
            removed.push(Acl {
                resource_type: acl.resource_type,
                resource_name: acl.resource_name.to_string(),
                pattern_type: acl.pattern_type,
                principal: acl.principal.to_string(),
                host: acl.host.to_string(),
                operation: acl.operation,
                permission: acl.permission_type,
            });
        }
    }
    removed.sort();
    removed.dedup();
    Ok(removed)
}
