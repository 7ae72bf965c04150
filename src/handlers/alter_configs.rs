//! AlterConfigs (key 33) and IncrementalAlterConfigs (key 44): change topic
//! and broker configs at runtime. The controller shard validates, persists
//! and applies them on every shard before answering; DescribeConfigs then
//! reports them with source TOPIC_CONFIG or DYNAMIC_BROKER_CONFIG.

use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{str_bytes, ApiSupport, RequestContext};
use crate::cluster::controller::{ConfigChange, ConfigOp, ConfigTarget, TopicError};
use crate::protocol::error_codes;
use crate::security::acl::Operation;
use crate::shard::{self, CONTROLLER_SHARD};

pub const API: ApiSupport = super::api(ApiKey::AlterConfigs, 0, 2);
pub const INCREMENTAL_API: ApiSupport = super::api(ApiKey::IncrementalAlterConfigs, 0, 1);

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// A resource of the request, as this broker understands it.
fn target(
    context: &RequestContext,
    resource_type: i8,
    name: &str,
) -> Result<ConfigTarget, TopicError> {
    super::describe_configs::config_refusal(context, Operation::AlterConfigs, resource_type, name)
        .map_err(|(code, message)| TopicError::new(code, message))?;
    match resource_type {
        RESOURCE_TOPIC => Ok(ConfigTarget::Topic(name.to_string())),
        RESOURCE_BROKER if name.is_empty() || name == context.shard.config.node_id.to_string() => {
            Ok(ConfigTarget::Broker)
        }
        RESOURCE_BROKER => Err(TopicError::new(
            error_codes::INVALID_REQUEST,
            format!(
                "Unexpected broker id, expected {} but received {name}",
                context.shard.config.node_id
            ),
        )),
        other => Err(TopicError::new(
            error_codes::INVALID_REQUEST,
            format!("Sluice does not alter configs of resource type {other}"),
        )),
    }
}

/// Sends the valid changes to the controller; answers per resource in
/// request order.
async fn apply(
    context: &RequestContext,
    changes: Vec<Result<ConfigChange, TopicError>>,
    validate_only: bool,
) -> Vec<Result<(), TopicError>> {
    let valid: Vec<ConfigChange> = changes
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let outcome = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        context
            .shard
            .mesh
            .submit_to(CONTROLLER_SHARD, move || async move {
                let shard = shard::current();
                let controller = shard.controller().expect("shard 0 runs the controller");
                controller.alter_configs(valid, validate_only).await
            })
            .await
    };
    let mut answers = match outcome {
        Ok(answers) => answers.into_iter(),
        Err(error) => {
            let failure = TopicError::new(error_codes::UNKNOWN_SERVER_ERROR, error.to_string());
            let count = changes.iter().filter(|c| c.is_ok()).count();
            vec![Err(failure); count].into_iter()
        }
    };
    changes
        .into_iter()
        .map(|change| match change {
            Ok(_) => answers.next().unwrap_or(Ok(())),
            Err(error) => Err(error),
        })
        .collect()
}

fn text(value: &Option<StrBytes>) -> String {
    value.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

pub async fn handle(
    context: &RequestContext,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let changes = request
        .resources
        .iter()
        .map(|resource| {
            let target = target(context, resource.resource_type, &resource.resource_name)?;
            let ops = resource
                .configs
                .iter()
                .map(|config| match &config.value {
                    Some(value) => ConfigOp::Set(config.name.to_string(), value.to_string()),
                    None => ConfigOp::Delete(config.name.to_string()),
                })
                .collect();
            Ok(ConfigChange {
                target,
                replace: true,
                ops,
            })
        })
        .collect();
    let results = apply(context, changes, request.validate_only).await;
    let responses = request
        .resources
        .into_iter()
        .zip(results)
        .map(|(resource, result)| {
            let (code, message) = split(result);
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn handle_incremental(
    context: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let changes = request
        .resources
        .iter()
        .map(|resource| {
            let target = target(context, resource.resource_type, &resource.resource_name)?;
            let ops = resource
                .configs
                .iter()
                .map(|config| {
                    let name = config.name.to_string();
                    match config.config_operation {
                        OP_SET => Ok(ConfigOp::Set(name, text(&config.value))),
                        OP_DELETE => Ok(ConfigOp::Delete(name)),
                        OP_APPEND => Ok(ConfigOp::Append(name, text(&config.value))),
                        OP_SUBTRACT => Ok(ConfigOp::Subtract(name, text(&config.value))),
                        other => Err(TopicError::new(
                            error_codes::INVALID_REQUEST,
                            format!("Unknown config operation {other} for {name}"),
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ConfigChange {
                target,
                replace: false,
                ops,
            })
        })
        .collect();
    let results = apply(context, changes, request.validate_only).await;
    let responses = request
        .resources
        .into_iter()
        .zip(results)
        .map(|(resource, result)| {
            let (code, message) = split(result);
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn split(result: Result<(), TopicError>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(()) => (error_codes::NONE, None),
        Err(error) => (error.code, Some(str_bytes(error.message))),
    }
}
