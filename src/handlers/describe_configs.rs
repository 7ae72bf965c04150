//! DescribeConfigs (key 32): every config of a topic or of this broker, with
//! value, source, read-only and sensitive flags, synonyms and documentation,
//! as Kafka reports them. Answered from the accepting shard's image.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::config::ConfigEntry;
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::security::authorizer::Resource;

pub const API: ApiSupport = super::api(ApiKey::DescribeConfigs, 1, 4);

/// Kafka's resource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub fn handle(
    context: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match entries(context, resource.resource_type, &name) {
                Ok(entries) => {
                    let keys = resource.configuration_keys;
                    let configs = entries
                        .into_iter()
                        .filter(|entry| {
                            keys.as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| **k == *entry.name))
                        })
                        .map(|entry| {
                            to_wire(
                                entry,
                                request.include_synonyms,
                                request.include_documentation,
                            )
                        })
                        .collect();
                    result.with_configs(configs)
                }
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Kafka's check for `operation` (DESCRIBE_CONFIGS, ALTER_CONFIGS) on a
/// config resource: the topic (TOPIC_AUTHORIZATION_FAILED) or, for a
/// broker, the cluster (CLUSTER_AUTHORIZATION_FAILED).
pub(super) fn config_refusal(
    context: &RequestContext,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Result<(), (i16, String)> {
    let (allowed, code) = match resource_type {
        RESOURCE_TOPIC => (
            context.authorized(operation, Resource::topic(name)),
            error_codes::TOPIC_AUTHORIZATION_FAILED,
        ),
        RESOURCE_BROKER => (
            context.authorized_on_cluster(operation),
            error_codes::CLUSTER_AUTHORIZATION_FAILED,
        ),
        _ => (true, error_codes::NONE),
    };
    match allowed {
        true => Ok(()),
        false => Err((code, "Authorization failed.".to_string())),
    }
}

fn entries(
    context: &RequestContext,
    resource_type: i8,
    name: &str,
) -> Result<Vec<ConfigEntry>, (i16, String)> {
    config_refusal(context, Operation::DescribeConfigs, resource_type, name)?;
    let config = &context.shard.effective_config();
    match resource_type {
        RESOURCE_TOPIC => {
            let image = context.shard.image();
            let topic = image.topic(name).ok_or_else(|| {
                (
                    error_codes::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Topic '{name}' does not exist."),
                )
            })?;
            Ok(crate::config::describe_topic(config, &topic.configs))
        }
        RESOURCE_BROKER => {
            // An empty name is the cluster-wide default resource.
            if !name.is_empty() && name != config.node_id.to_string() {
                return Err((
                    error_codes::INVALID_REQUEST,
                    format!(
                        "Unexpected broker id, expected {} but received {name}",
                        config.node_id
                    ),
                ));
            }
            Ok(config.describe())
        }
        other => Err((
            error_codes::INVALID_REQUEST,
            format!("Sluice does not describe configs of resource type {other}"),
        )),
    }
}

fn to_wire(
    entry: ConfigEntry,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        entry
            .synonyms
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(name))
                    .with_value(value.map(str_bytes))
                    .with_source(source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(entry.name))
        .with_value(entry.value.map(str_bytes))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source as i8)
        .with_is_sensitive(entry.sensitive)
        .with_synonyms(synonyms)
        .with_config_type(entry.config_type as i8)
        .with_documentation(include_documentation.then(|| str_bytes(entry.documentation)))
}
