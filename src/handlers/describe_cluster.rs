//! DescribeCluster (key 60): cluster id, the active controller and the live
//! brokers, from the accepting shard's image; v2 asked to include fenced
//! brokers lists every registered one with its `is_fenced` flag (KIP-1073).
//! (Admin clients use it instead of Metadata.)

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, ApiSupport, RequestContext};

pub const API: ApiSupport = super::api(ApiKey::DescribeCluster, 0, 2);

pub fn handle(
    context: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    if let Some(code) = context.cluster_refusal(crate::security::acl::Operation::Describe) {
        return DescribeClusterResponse::default().with_error_code(code);
    }
    let image = context.shard.image();
    let listener = context.session.listener();
    let include_fenced = context.api_version >= 2 && request.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|broker| include_fenced || !broker.fenced)
        .map(|broker| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(broker.node_id))
                .with_host(str_bytes(broker.endpoint(&listener).0.to_string()))
                .with_port(i32::from(broker.endpoint(&listener).1))
                .with_rack(broker.rack.clone().map(str_bytes))
                .with_is_fenced(broker.fenced)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        .with_controller_id(BrokerId(image.controller_id.unwrap_or(-1)))
        .with_brokers(brokers)
}
