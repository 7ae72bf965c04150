//! DescribeCluster (key 60): cluster id, controller and brokers, from the
//! accepting shard's image. (Admin clients use it instead of Metadata.)

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, ApiSupport, RequestContext};

pub const API: ApiSupport = super::api(ApiKey::DescribeCluster, 0, 2);

pub fn handle(
    context: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let config = &context.shard.config;
    let image = context.shard.image();
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(config.node_id))
        .with_host(str_bytes(config.advertise_host.clone()))
        .with_port(i32::from(config.advertise_port));
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        .with_controller_id(BrokerId(config.node_id))
        .with_brokers(vec![broker])
}
